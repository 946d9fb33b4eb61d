#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/check.cuh"
#include "cuda/gram_tile.cuh"
#include "gram.h"

namespace pyfastent {
namespace {

using tile::kMicro;
using tile::kThreads;
using tile::kTile;

template <typename T>
tile::View<T> view_of(const GramInput& in) {
  return tile::View<T>{reinterpret_cast<const T*>(in.x), in.rows, in.depth, in.stride_b, in.stride_r, in.stride_k,
                       reinterpret_cast<const T*>(in.row_offset), reinterpret_cast<const T*>(in.k_offset),
                       reinterpret_cast<const T*>(in.k_scale), reinterpret_cast<const T*>(in.row_scale)};
}

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

void check_input(const GramInput& in, const char* op) {
  if (!in.x) throw CudaError(op, "no input data");
  if (in.batch < 1 || in.rows < 1 || in.depth < 1)
    throw CudaError(op, "empty input");
  // gridDim.y; the Python wrappers split larger batches into several launches.
  if (in.batch > kMaxGridY) throw CudaError(op, "batch above 65535 in one launch");
}

void require(std::uintptr_t pointer, const char* op, const char* what) {
  if (!pointer) throw CudaError(op, std::string(what) + " is required");
}

std::int64_t upper_tiles(std::int64_t rows) {
  const std::int64_t t = (rows + kTile - 1) / kTile;
  return t * (t + 1) / 2;
}

// ---- row norms: one warp per (batch, row) ---------------------------------

template <typename T>
__global__ void row_norms_kernel(tile::View<T> v, std::int64_t batch, T* norms) {
  const std::int64_t warp = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= batch * v.rows) return;
  const std::int64_t b = warp / v.rows, r = warp % v.rows;
  T sum = 0;
  for (std::int64_t k = lane; k < v.depth; k += 32) {
    const T value = tile::load(v, b, r, k);
    sum = fma(value, value, sum);
  }
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  if (lane == 0) norms[warp] = sum;
}

// ---- Gram tiles with fused epilogue and mirrored, coalesced stores -------

template <typename T>
__device__ __forceinline__ T epilogue(int mode, T dot, T ni, T nj, bool diagonal, T param, T scale) {
  switch (mode) {
    case kSqDist:
      return diagonal ? T(0) : fmax(ni + nj - T(2) * dot, T(0));
    case kRbf:
      return diagonal ? scale : exp(param * fmax(ni + nj - T(2) * dot, T(0))) * scale;
    case kLinear:  // two rsqrt: ni·nj overflows float32 once the norms pass ~1.8e19
      return dot * rsqrt(ni) * rsqrt(nj) * scale;
    default:
      return param * dot;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) gram_kernel(tile::View<T> v, const T* norms, int mode, const T* param,
                                                        T scale, T* out) {
  // The k slabs and the staged output tile (64·65) share memory.
  static_assert(tile::kSlabElems<T> <= kTile * (kTile + 1), "the slabs must fit in the output staging tile");
  __shared__ T smem[kTile * (kTile + 1)];
  int ti, tj;
  tile::upper_tile(blockIdx.x, &ti, &tj);
  const std::int64_t b = blockIdx.y, n = v.rows;
  const std::int64_t row0 = static_cast<std::int64_t>(ti) * kTile, col0 = static_cast<std::int64_t>(tj) * kTile;
  T acc[kMicro][kMicro] = {};
  tile::accumulate(v, b, row0, col0, smem, acc);

  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const T p = param ? param[b] : T(0);
  const T* nb = norms ? norms + b * n : nullptr;
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int lr = ty + 16 * i, lc = tx + 16 * j;
      const std::int64_t r = row0 + lr, c = col0 + lc;
      T value = 0;
      if (r < n && c < n) value = epilogue(mode, acc[i][j], nb ? nb[r] : T(0), nb ? nb[c] : T(0), r == c, p, scale);
      smem[lr * (kTile + 1) + lc] = value;
    }
  }
  __syncthreads();
  T* ob = out + b * n * n;
  for (int e = threadIdx.x; e < kTile * kTile; e += kThreads) {
    const int lr = e / kTile, lc = e % kTile;
    if (row0 + lr < n && col0 + lc < n) ob[(row0 + lr) * n + col0 + lc] = smem[lr * (kTile + 1) + lc];
  }
  if (ti != tj) {  // the mirror tile, also written along rows of `out`
    for (int e = threadIdx.x; e < kTile * kTile; e += kThreads) {
      const int lc = e / kTile, lr = e % kTile;
      if (row0 + lr < n && col0 + lc < n) ob[(col0 + lc) * n + row0 + lr] = smem[lr * (kTile + 1) + lc];
    }
  }
}

// ---- Hadamard product of 2 or 3 matrices, normalized by its trace -------

template <typename T>
__global__ void hadamard_kernel(const T* a, const T* b, const T* c, std::int64_t n, T inv, T* out) {
  const std::int64_t total = n * n;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[e] = a[e] * b[e] * (c ? c[e] : T(1)) * inv;
  }
}

// ---- matrix-free α = 2 sums ----------------------------------------------

template <typename T, bool kDeltaB>
__global__ void __launch_bounds__(kThreads) alpha2_kernel(tile::View<T> va, const T* norms_a, T coef_a,
                                                          tile::View<T> vb, const T* norms_b, T coef_b,
                                                          const std::int64_t* codes, double* sums) {
  __shared__ T slab[tile::kSlabElems<T>];
  __shared__ double partial[3][kThreads / 32];
  int ti, tj;
  tile::upper_tile(blockIdx.x, &ti, &tj);
  const std::int64_t n = va.rows;
  const std::int64_t row0 = static_cast<std::int64_t>(ti) * kTile, col0 = static_cast<std::int64_t>(tj) * kTile;
  T dot_a[kMicro][kMicro] = {};
  tile::accumulate(va, 0, row0, col0, slab, dot_a);
  T dot_b[kMicro][kMicro] = {};
  if (!kDeltaB) tile::accumulate(vb, 0, row0, col0, slab, dot_b);

  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  // An off-diagonal tile stands for itself and its mirror image.
  const double weight = ti == tj ? 1.0 : 2.0;
  double s[3] = {0, 0, 0};
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const std::int64_t r = row0 + ty + 16 * i, c = col0 + tx + 16 * j;
      if (r >= n || c >= n) continue;
      const bool diagonal = r == c;
      const T ka = diagonal ? T(1) : exp(coef_a * fmax(norms_a[r] + norms_a[c] - T(2) * dot_a[i][j], T(0)));
      T kb;
      if (kDeltaB) {
        kb = codes[r] == codes[c] ? T(1) : T(0);
      } else {
        kb = diagonal ? T(1) : exp(coef_b * fmax(norms_b[r] + norms_b[c] - T(2) * dot_b[i][j], T(0)));
      }
      const double a2 = static_cast<double>(ka) * ka, b2 = static_cast<double>(kb) * kb;
      s[0] += a2;
      s[1] += b2;
      s[2] += a2 * b2;
    }
  }
#pragma unroll
  for (int q = 0; q < 3; ++q) {
    double value = s[q] * weight;
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (threadIdx.x % 32 == 0) partial[q][threadIdx.x / 32] = value;
  }
  __syncthreads();
  if (threadIdx.x < 3) {
    double total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += partial[threadIdx.x][w];
    atomicAdd(sums + threadIdx.x, total);
  }
}

int blocks_for(std::int64_t threads, const char* op) {
  const std::int64_t blocks = (threads + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) throw CudaError(op, "input too large for one launch");
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

}  // namespace

void gram_row_norms(const GramInput& in, std::uintptr_t norms, std::uintptr_t stream) {
  check_input(in, "gram_row_norms");
  const int blocks = blocks_for(in.batch * in.rows * 32, "gram_row_norms");
  if (in.is_double) {
    row_norms_kernel<double><<<blocks, kThreads, 0, as_stream(stream)>>>(view_of<double>(in), in.batch,
                                                                          reinterpret_cast<double*>(norms));
  } else {
    row_norms_kernel<float><<<blocks, kThreads, 0, as_stream(stream)>>>(view_of<float>(in), in.batch,
                                                                        reinterpret_cast<float*>(norms));
  }
  PYFASTENT_CHECK_LAUNCH("gram_row_norms");
}

void gram(const GramInput& in, std::uintptr_t norms, int mode, std::uintptr_t param, double scale,
          std::uintptr_t out, std::uintptr_t stream) {
  check_input(in, "gram");
  if (mode < kSqDist || mode > kScaled) throw CudaError("gram", "unknown mode");
  if (mode != kScaled) require(norms, "gram", "norms (the squared row norms)");
  if (mode == kRbf || mode == kScaled) require(param, "gram", "param (one value per batch entry)");
  require(out, "gram", "out");
  const dim3 grid(static_cast<unsigned>(upper_tiles(in.rows)), static_cast<unsigned>(in.batch));
  if (in.is_double) {
    gram_kernel<double><<<grid, kThreads, 0, as_stream(stream)>>>(
        view_of<double>(in), reinterpret_cast<const double*>(norms), mode, reinterpret_cast<const double*>(param),
        scale, reinterpret_cast<double*>(out));
  } else {
    gram_kernel<float><<<grid, kThreads, 0, as_stream(stream)>>>(
        view_of<float>(in), reinterpret_cast<const float*>(norms), mode, reinterpret_cast<const float*>(param),
        static_cast<float>(scale), reinterpret_cast<float*>(out));
  }
  PYFASTENT_CHECK_LAUNCH("gram");
}

void hadamard_normalized(std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, std::int64_t n, double inv_trace,
                         bool is_double, std::uintptr_t out, std::uintptr_t stream) {
  if (n < 1) throw CudaError("hadamard_normalized", "empty input");
  require(a, "hadamard_normalized", "a");
  require(b, "hadamard_normalized", "b");
  require(out, "hadamard_normalized", "out");
  if (!(inv_trace > 0) || !std::isfinite(inv_trace))
    throw CudaError("hadamard_normalized", "1/trace must be positive and finite (the product has zero trace)");
  int device = 0, sms = 0;
  PYFASTENT_CHECK(cudaGetDevice(&device), "hadamard_normalized");
  PYFASTENT_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "hadamard_normalized");
  const std::int64_t wanted = (n * n + kThreads * 8 - 1) / (kThreads * 8);
  const int blocks = static_cast<int>(wanted < 4 * sms ? (wanted < 1 ? 1 : wanted) : 4 * sms);
  if (is_double) {
    hadamard_kernel<double><<<blocks, kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const double*>(a), reinterpret_cast<const double*>(b), reinterpret_cast<const double*>(c),
        n, inv_trace, reinterpret_cast<double*>(out));
  } else {
    hadamard_kernel<float><<<blocks, kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const float*>(a), reinterpret_cast<const float*>(b), reinterpret_cast<const float*>(c), n,
        static_cast<float>(inv_trace), reinterpret_cast<float*>(out));
  }
  PYFASTENT_CHECK_LAUNCH("hadamard_normalized");
}

void rbf_alpha2_sums(const GramInput& a, std::uintptr_t norms_a, double neg_half_inv_var_a, const GramInput& b,
                     std::uintptr_t norms_b, double neg_half_inv_var_b, std::uintptr_t b_codes, std::uintptr_t sums,
                     std::uintptr_t stream) {
  check_input(a, "rbf_alpha2_sums");
  if (a.batch != 1) throw CudaError("rbf_alpha2_sums", "batch must be 1");
  require(norms_a, "rbf_alpha2_sums", "norms_a");
  require(sums, "rbf_alpha2_sums", "sums");
  if (!b_codes) {
    check_input(b, "rbf_alpha2_sums");
    require(norms_b, "rbf_alpha2_sums", "norms_b");
    if (b.rows != a.rows || a.is_double != b.is_double)
      throw CudaError("rbf_alpha2_sums", "operands differ in rows or dtype");
  }
  const dim3 grid(static_cast<unsigned>(upper_tiles(a.rows)));
  auto* out = reinterpret_cast<double*>(sums);
  auto* codes = reinterpret_cast<const std::int64_t*>(b_codes);
  // With delta codes the second view is never read; pass the first one.
  const GramInput& vb = b_codes ? a : b;
  if (a.is_double) {
    auto na = reinterpret_cast<const double*>(norms_a), nb = reinterpret_cast<const double*>(norms_b);
    if (b_codes)
      alpha2_kernel<double, true><<<grid, kThreads, 0, as_stream(stream)>>>(
          view_of<double>(a), na, neg_half_inv_var_a, view_of<double>(vb), na, 0.0, codes, out);
    else
      alpha2_kernel<double, false><<<grid, kThreads, 0, as_stream(stream)>>>(
          view_of<double>(a), na, neg_half_inv_var_a, view_of<double>(vb), nb, neg_half_inv_var_b, codes, out);
  } else {
    auto na = reinterpret_cast<const float*>(norms_a), nb = reinterpret_cast<const float*>(norms_b);
    if (b_codes)
      alpha2_kernel<float, true><<<grid, kThreads, 0, as_stream(stream)>>>(
          view_of<float>(a), na, static_cast<float>(neg_half_inv_var_a), view_of<float>(vb), na, 0.0f, codes, out);
    else
      alpha2_kernel<float, false><<<grid, kThreads, 0, as_stream(stream)>>>(
          view_of<float>(a), na, static_cast<float>(neg_half_inv_var_a), view_of<float>(vb), nb,
          static_cast<float>(neg_half_inv_var_b), codes, out);
  }
  PYFASTENT_CHECK_LAUNCH("rbf_alpha2_sums");
}

}  // namespace pyfastent
