// The tiled X̃·X̃ᵀ core shared by the Gram and matrix-free kernels: 64×64
// output tiles, 16-deep k slices in shared memory, a 4×4 register micro-tile
// per thread (256 threads). Plain FMA in the input precision: no tensor
// cores, so no TF32.
#pragma once

#include <cstdint>

namespace pyfastent {
namespace tile {

constexpr int kTile = 64;
constexpr int kDepth = 16;
constexpr int kThreads = 256;
constexpr int kMicro = 4;  // kTile / 16 rows and columns per thread

// Worst shared-memory bank conflict (ways) when the lanes of a warp store
// slab element (k = lane % kDepth, r = lane / kDepth), the order used for
// inputs contiguous along k, into k-major rows of `stride` words of `bytes`
// bytes. 32 banks of 4 bytes; 8-byte words are served per half-warp.
constexpr int store_conflict_ways(int stride, int bytes) {
  const int lanes = bytes == 8 ? 16 : 32;
  const int period = bytes == 8 ? 16 : 32;  // words between two hits of one bank
  int worst = 1;
  for (int a = 0; a < lanes; ++a) {
    int ways = 1;
    const int word_a = (a % kDepth) * stride + a / kDepth;
    for (int b = 0; b < lanes; ++b) {
      const int word_b = (b % kDepth) * stride + b / kDepth;
      if (b != a && word_b != word_a && (word_b - word_a) % period == 0) ++ways;
    }
    worst = ways > worst ? ways : worst;
  }
  return worst;
}

// Row stride of the k-major slabs: kTile words would put the 16 lanes that
// store consecutive k of one row on a single bank; +2 (float32) and +1
// (float64) spread them over distinct banks.
template <typename T>
constexpr int kSlabStride = kTile + (sizeof(T) == 4 ? 2 : 1);
template <typename T>
constexpr int kSlabElems = 2 * kDepth * kSlabStride<T>;  // the A and B slabs

static_assert(store_conflict_ways(kTile, 4) == 16, "the unpadded layout is the 16-way conflict it is padded against");
static_assert(store_conflict_ways(kSlabStride<float>, 4) == 1, "float32 slab stores must be conflict-free");
static_assert(store_conflict_ways(kSlabStride<double>, 8) == 1, "float64 slab stores must be conflict-free");

template <typename T>
struct View {
  const T* x;
  std::int64_t rows, depth, stride_b, stride_r, stride_k;
  const T* row_offset;
  const T* k_offset;
  const T* k_scale;
  const T* row_scale;
};

template <typename T>
__device__ __forceinline__ T load(const View<T>& v, std::int64_t b, std::int64_t r, std::int64_t k) {
  if (r >= v.rows || k >= v.depth) return T(0);
  T value = v.x[b * v.stride_b + r * v.stride_r + k * v.stride_k];
  if (v.row_offset) value -= v.row_offset[b * v.rows + r];
  if (v.k_offset) value -= v.k_offset[b * v.depth + k];
  if (v.k_scale) value *= v.k_scale[b * v.depth + k];
  if (v.row_scale) value *= v.row_scale[b * v.rows + r];
  return value;
}

// Tile (ti, tj) with ti ≤ tj from the linear index of the upper triangle.
__device__ __forceinline__ void upper_tile(std::int64_t index, int* ti, int* tj) {
  std::int64_t j = static_cast<std::int64_t>((sqrt(8.0 * static_cast<double>(index) + 1.0) - 1.0) / 2.0);
  while ((j + 1) * (j + 2) / 2 <= index) ++j;
  while (j * (j + 1) / 2 > index) --j;
  *tj = static_cast<int>(j);
  *ti = static_cast<int>(index - j * (j + 1) / 2);
}

// acc[i][j] += Σ_k x̃[row0 + ty + 16 i, k] · x̃[col0 + tx + 16 j, k].
// `slab` holds kSlabElems<T> elements of shared memory.
template <typename T>
__device__ __forceinline__ void accumulate(const View<T>& v, std::int64_t b, std::int64_t row0, std::int64_t col0,
                                           T* slab, T (&acc)[kMicro][kMicro]) {
  constexpr int ld = kSlabStride<T>;
  T* as = slab;                 // [kDepth][ld]
  T* bs = slab + kDepth * ld;   // [kDepth][ld]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  // Walk the faster-varying index of memory across consecutive threads.
  const bool rows_contiguous = v.stride_r == 1 && v.stride_k != 1;
  for (std::int64_t k0 = 0; k0 < v.depth; k0 += kDepth) {
    for (int e = threadIdx.x; e < kDepth * kTile; e += kThreads) {
      const int r = rows_contiguous ? e % kTile : e / kDepth;
      const int k = rows_contiguous ? e / kTile : e % kDepth;
      as[k * ld + r] = load(v, b, row0 + r, k0 + k);
      bs[k * ld + r] = load(v, b, col0 + r, k0 + k);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kDepth; ++k) {
      T a[kMicro], c[kMicro];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) a[i] = as[k * ld + ty + 16 * i];
#pragma unroll
      for (int j = 0; j < kMicro; ++j) c[j] = bs[k * ld + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < kMicro; ++i)
#pragma unroll
        for (int j = 0; j < kMicro; ++j) acc[i][j] = fma(a[i], c[j], acc[i][j]);
    }
    __syncthreads();
  }
}

}  // namespace tile
}  // namespace pyfastent
