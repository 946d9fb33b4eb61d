// Device queries and the checked-error helper shared by every CUDA op.
//
// Plain C++ (no pybind11, no torch) so both nvcc and the host compiler
// include it. Errors are C++ exceptions carrying the op name; pybind11 turns
// them into Python RuntimeError.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pyfastent {

// Largest batch of one launch (gridDim.y); the Python wrappers split larger
// batches into several launches.
constexpr std::int64_t kMaxGridY = 65535;

// Raised for any failed CUDA runtime call; what() starts with the op name.
class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& op, const std::string& detail)
      : std::runtime_error(op + ": " + detail) {}
};

// Number of usable CUDA devices; 0 (never an error) when there is no driver
// or no device, so a CPU-only machine can import and query the extension.
int device_count();

// Version of the CUDA runtime linked in, as CUDA encodes it (13000 = 13.0).
int runtime_version();

// Version the driver supports, 0 when no driver is installed.
int driver_version();

// Name and compute capability "NAME (sm_XY)" of device `index`;
// throws CudaError for an invalid index.
std::string device_name(int index);

// Makes `index` the current device; throws CudaError naming `op` on failure.
void set_device(int index, const char* op);

}  // namespace pyfastent
