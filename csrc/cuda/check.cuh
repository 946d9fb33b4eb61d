// PYFASTENT_CHECK(call, op): every CUDA runtime call and every kernel launch
// goes through this, so a failure is a CudaError naming the op, never a
// silently wrong result.
#pragma once

#include <cuda_runtime.h>

#include "device.h"

#define PYFASTENT_CHECK(call, op)                                          \
  do {                                                                     \
    cudaError_t pyfastent_status_ = (call);                                \
    if (pyfastent_status_ != cudaSuccess) {                                \
      throw ::pyfastent::CudaError(                                        \
          (op), std::string(cudaGetErrorName(pyfastent_status_)) + " (" +  \
                    cudaGetErrorString(pyfastent_status_) + ")");          \
    }                                                                      \
  } while (0)

// After a <<<...>>> launch: launch-configuration errors surface here.
#define PYFASTENT_CHECK_LAUNCH(op) PYFASTENT_CHECK(cudaGetLastError(), op)
