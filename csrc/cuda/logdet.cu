#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cuda/check.cuh"
#include "logdet.h"

namespace pyfastent {
namespace {

constexpr int kThreads = 128;
constexpr int kPanel = kSmallCholesky;  // panel width of the blocked factorization
constexpr int kSyrkTile = 32;

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Unblocked right-looking Cholesky of the m×m matrix in shared memory
// (leading dimension ld), lower triangle. Returns, in every thread, 0 or
// j + 1 for the first non-positive pivot; thread 0 gets Σ log L_jj.
template <typename T>
__device__ int factor_in_shared(T* s, int m, int ld, double* log_diag) {
  double sum = 0;
  for (int j = 0; j < m; ++j) {
    __syncthreads();
    const T pivot = s[j * ld + j];
    if (!(pivot > T(0)) || !isfinite(static_cast<double>(pivot))) {
      *log_diag = sum;
      return j + 1;  // every thread read the same pivot: a uniform exit
    }
    const T l_jj = sqrt(pivot);
    sum += log(static_cast<double>(l_jj));
    __syncthreads();
    for (int i = j + 1 + threadIdx.x; i < m; i += blockDim.x) s[i * ld + j] /= l_jj;
    if (threadIdx.x == 0) s[j * ld + j] = l_jj;
    __syncthreads();
    const int rest = m - j - 1;
    for (int e = threadIdx.x; e < rest * rest; e += blockDim.x) {
      const int i = j + 1 + e / rest, k = j + 1 + e % rest;
      if (k <= i) s[i * ld + k] -= s[i * ld + j] * s[k * ld + j];
    }
  }
  __syncthreads();
  *log_diag = sum;
  return 0;
}

// One block per matrix, n ≤ kSmallCholesky.
template <typename T>
__global__ void small_kernel(const T* m, std::int64_t n, std::int64_t sb, std::int64_t sr, std::int64_t sc,
                             double* logdet, int* info) {
  __shared__ T s[kSmallCholesky * (kSmallCholesky + 1)];
  const int ld = kSmallCholesky + 1;
  const T* mb = m + blockIdx.x * sb;
  for (int e = threadIdx.x; e < n * n; e += blockDim.x) {
    const int i = e / n, k = e % n;
    if (k <= i) s[i * ld + k] = mb[i * sr + k * sc];
  }
  double log_diag;
  const int status = factor_in_shared(s, static_cast<int>(n), ld, &log_diag);
  if (threadIdx.x == 0) {
    info[blockIdx.x] = status;
    logdet[blockIdx.x] = 2.0 * log_diag;
  }
}

// One block per joint: M = I + coef · C[idx][:, idx] gathered on load.
template <typename T>
__global__ void joint_kernel(const T* c, std::int64_t d, T coef, const int* index, const int* size,
                             std::int64_t width, double* logdet, int* info) {
  __shared__ T s[kSmallCholesky * (kSmallCholesky + 1)];
  const int ld = kSmallCholesky + 1;
  const int* idx = index + blockIdx.x * width;
  const int m = size[blockIdx.x];
  for (int e = threadIdx.x; e < m * m; e += blockDim.x) {
    const int i = e / m, k = e % m;
    if (k <= i) s[i * ld + k] = (i == k ? T(1) : T(0)) + coef * c[static_cast<std::int64_t>(idx[i]) * d + idx[k]];
  }
  double log_diag;
  const int status = factor_in_shared(s, m, ld, &log_diag);
  if (threadIdx.x == 0) {
    info[blockIdx.x] = status;
    logdet[blockIdx.x] = 2.0 * log_diag;
  }
}

// Blocked factorization, step 1: factor the diagonal block at j0 in place.
template <typename T>
__global__ void panel_potf2(T* a, std::int64_t n, std::int64_t j0, double* logdet, int* info) {
  __shared__ T s[kPanel * (kPanel + 1)];
  const int ld = kPanel + 1;
  const std::int64_t b = blockIdx.x;
  if (info[b] != 0) return;  // an earlier panel already failed
  T* ab = a + b * n * n;
  const int m = static_cast<int>(n - j0 < kPanel ? n - j0 : kPanel);
  for (int e = threadIdx.x; e < m * m; e += blockDim.x) {
    const int i = e / m, k = e % m;
    if (k <= i) s[i * ld + k] = ab[(j0 + i) * n + j0 + k];
  }
  double log_diag;
  const int status = factor_in_shared(s, m, ld, &log_diag);
  for (int e = threadIdx.x; e < m * m; e += blockDim.x) {
    const int i = e / m, k = e % m;
    if (k <= i) ab[(j0 + i) * n + j0 + k] = s[i * ld + k];
  }
  if (threadIdx.x == 0) {
    if (status) info[b] = static_cast<int>(j0) + status;
    logdet[b] += 2.0 * log_diag;
  }
}

// Step 2: L21 = A21 · L11⁻ᵀ, one row per thread, staged through shared memory.
// Dynamic shared memory: L11 and kThreads staged rows exceed the 48 KB
// static limit in float64.
template <typename T>
constexpr std::size_t trsm_shared_bytes() {
  return static_cast<std::size_t>(kPanel + kThreads) * (kPanel + 1) * sizeof(T);
}

template <typename T>
__global__ void panel_trsm(T* a, std::int64_t n, std::int64_t j0, const int* info) {
  extern __shared__ __align__(16) unsigned char trsm_shared[];
  T* l11 = reinterpret_cast<T*>(trsm_shared);
  T* rows = l11 + kPanel * (kPanel + 1);
  const std::int64_t b = blockIdx.y;
  if (info[b] != 0) return;
  T* ab = a + b * n * n;
  const int ld = kPanel + 1;
  const std::int64_t first = j0 + kPanel + static_cast<std::int64_t>(blockIdx.x) * kThreads;
  const int count = static_cast<int>(n - first < kThreads ? n - first : kThreads);
  for (int e = threadIdx.x; e < kPanel * kPanel; e += blockDim.x) {
    const int i = e / kPanel, k = e % kPanel;
    l11[i * ld + k] = k <= i ? ab[(j0 + i) * n + j0 + k] : T(0);
  }
  for (int e = threadIdx.x; e < count * kPanel; e += blockDim.x) {
    const int r = e / kPanel, k = e % kPanel;
    rows[r * ld + k] = ab[(first + r) * n + j0 + k];
  }
  __syncthreads();
  if (threadIdx.x < count) {
    T* x = rows + threadIdx.x * ld;
    for (int k = 0; k < kPanel; ++k) {
      T value = x[k];
      for (int m = 0; m < k; ++m) value -= x[m] * l11[k * ld + m];
      x[k] = value / l11[k * ld + k];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < count * kPanel; e += blockDim.x) {
    const int r = e / kPanel, k = e % kPanel;
    ab[(first + r) * n + j0 + k] = rows[r * ld + k];
  }
}

// Step 3: A22 −= L21 L21ᵀ on the tiles on or below the diagonal.
template <typename T>
__global__ void panel_syrk(T* a, std::int64_t n, std::int64_t j0, const int* info) {
  __shared__ T li[kSyrkTile * (kPanel + 1)];
  __shared__ T lk[kSyrkTile * (kPanel + 1)];
  const std::int64_t b = blockIdx.y;
  if (info[b] != 0) return;
  // Lower-triangle tile (ti ≥ tk) from the linear block index.
  const std::int64_t t = blockIdx.x;
  std::int64_t ti = static_cast<std::int64_t>((sqrt(8.0 * static_cast<double>(t) + 1.0) - 1.0) / 2.0);
  while ((ti + 1) * (ti + 2) / 2 <= t) ++ti;
  while (ti * (ti + 1) / 2 > t) --ti;
  const std::int64_t tk = t - ti * (ti + 1) / 2;
  const std::int64_t start = j0 + kPanel;
  const std::int64_t row0 = start + ti * kSyrkTile, col0 = start + tk * kSyrkTile;
  T* ab = a + b * n * n;
  const int ld = kPanel + 1;
  for (int e = threadIdx.x; e < kSyrkTile * kPanel; e += blockDim.x) {
    const int r = e / kPanel, m = e % kPanel;
    li[r * ld + m] = row0 + r < n ? ab[(row0 + r) * n + j0 + m] : T(0);
    lk[r * ld + m] = col0 + r < n ? ab[(col0 + r) * n + j0 + m] : T(0);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kSyrkTile * kSyrkTile; e += blockDim.x) {
    const int r = e / kSyrkTile, c = e % kSyrkTile;
    if (row0 + r >= n || col0 + c >= n) continue;
    T sum = 0;
#pragma unroll 8
    for (int m = 0; m < kPanel; ++m) sum = fma(li[r * ld + m], lk[c * ld + m], sum);
    ab[(row0 + r) * n + col0 + c] -= sum;
  }
}

template <typename T>
void blocked(T* a, std::int64_t batch, std::int64_t n, double* logdet, int* info, cudaStream_t stream) {
  PYFASTENT_CHECK(cudaMemsetAsync(logdet, 0, batch * sizeof(double), stream), "cholesky_logdet");
  PYFASTENT_CHECK(cudaMemsetAsync(info, 0, batch * sizeof(int), stream), "cholesky_logdet");
  PYFASTENT_CHECK(cudaFuncSetAttribute(panel_trsm<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(trsm_shared_bytes<T>())),
                  "cholesky_logdet");
  for (std::int64_t j0 = 0; j0 < n; j0 += kPanel) {
    panel_potf2<T><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(a, n, j0, logdet, info);
    PYFASTENT_CHECK_LAUNCH("cholesky_logdet");
    const std::int64_t below = n - j0 - kPanel;
    if (below <= 0) break;
    const dim3 rows_grid(static_cast<unsigned>((below + kThreads - 1) / kThreads), static_cast<unsigned>(batch));
    panel_trsm<T><<<rows_grid, kThreads, trsm_shared_bytes<T>(), stream>>>(a, n, j0, info);
    PYFASTENT_CHECK_LAUNCH("cholesky_logdet");
    const std::int64_t tiles = (below + kSyrkTile - 1) / kSyrkTile;
    const dim3 syrk_grid(static_cast<unsigned>(tiles * (tiles + 1) / 2), static_cast<unsigned>(batch));
    panel_syrk<T><<<syrk_grid, 256, 0, stream>>>(a, n, j0, info);
    PYFASTENT_CHECK_LAUNCH("cholesky_logdet");
  }
}

}  // namespace

void cholesky_logdet(std::uintptr_t matrices, std::int64_t batch, std::int64_t n, std::int64_t stride_b,
                     std::int64_t stride_r, std::int64_t stride_c, bool is_double, std::uintptr_t logdet,
                     std::uintptr_t info, std::uintptr_t stream) {
  if (batch < 1 || n < 1) throw CudaError("cholesky_logdet", "empty input");
  if (!matrices || !logdet || !info) throw CudaError("cholesky_logdet", "matrices, logdet and info are required");
  if (batch > kMaxGridY) throw CudaError("cholesky_logdet", "batch above 65535 in one launch");
  auto* ld = reinterpret_cast<double*>(logdet);
  auto* inf = reinterpret_cast<int*>(info);
  const cudaStream_t s = as_stream(stream);
  if (n <= kSmallCholesky) {
    if (is_double)
      small_kernel<double><<<static_cast<unsigned>(batch), kThreads, 0, s>>>(
          reinterpret_cast<const double*>(matrices), n, stride_b, stride_r, stride_c, ld, inf);
    else
      small_kernel<float><<<static_cast<unsigned>(batch), kThreads, 0, s>>>(
          reinterpret_cast<const float*>(matrices), n, stride_b, stride_r, stride_c, ld, inf);
    PYFASTENT_CHECK_LAUNCH("cholesky_logdet");
    return;
  }
  if (stride_c != 1 || stride_r != n || stride_b != n * n)
    throw CudaError("cholesky_logdet", "matrices above the small size must be contiguous");
  if (is_double)
    blocked(reinterpret_cast<double*>(matrices), batch, n, ld, inf, s);
  else
    blocked(reinterpret_cast<float*>(matrices), batch, n, ld, inf, s);
}

void joint_logdets(std::uintptr_t c, std::int64_t d, bool is_double, double coef, std::uintptr_t index,
                   std::uintptr_t size, std::int64_t joints, std::int64_t width, std::uintptr_t logdet,
                   std::uintptr_t info, std::uintptr_t stream) {
  if (joints < 1 || d < 1) throw CudaError("joint_logdets", "empty input");
  if (!c || !index || !size || !logdet || !info)
    throw CudaError("joint_logdets", "c, index, size, logdet and info are required");
  if (width > kSmallCholesky) throw CudaError("joint_logdets", "a joint has more than 64 columns");
  if (joints > 0x7fffffff) throw CudaError("joint_logdets", "too many joints for one launch");
  auto* ld = reinterpret_cast<double*>(logdet);
  auto* inf = reinterpret_cast<int*>(info);
  const auto* idx = reinterpret_cast<const int*>(index);
  const auto* sz = reinterpret_cast<const int*>(size);
  if (is_double)
    joint_kernel<double><<<static_cast<unsigned>(joints), kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const double*>(c), d, coef, idx, sz, width, ld, inf);
  else
    joint_kernel<float><<<static_cast<unsigned>(joints), kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const float*>(c), d, static_cast<float>(coef), idx, sz, width, ld, inf);
  PYFASTENT_CHECK_LAUNCH("joint_logdets");
}

}  // namespace pyfastent
