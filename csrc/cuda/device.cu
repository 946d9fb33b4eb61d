#include <string>

#include "cuda/check.cuh"
#include "device.h"

namespace pyfastent {

int device_count() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    // No driver or no device is a normal state on CPU machines; clear the
    // sticky error so later calls are not poisoned by it.
    cudaGetLastError();
    return 0;
  }
  return count;
}

int runtime_version() {
  int version = 0;
  PYFASTENT_CHECK(cudaRuntimeGetVersion(&version), "cudaRuntimeGetVersion");
  return version;
}

int driver_version() {
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess) return 0;
  return version;
}

std::string device_name(int index) {
  cudaDeviceProp prop;
  PYFASTENT_CHECK(cudaGetDeviceProperties(&prop, index), "device_name");
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ")";
}

void set_device(int index, const char* op) {
  PYFASTENT_CHECK(cudaSetDevice(index), op);
}

}  // namespace pyfastent
