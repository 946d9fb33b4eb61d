// Gram-family ops: batched fused Gram matrices, Hadamard joints and the
// matrix-free α = 2 sums. Plain C++ interface: Python passes device pointers
// (as integers), shapes and strides it has checked, and the CUDA stream.
#pragma once

#include <cstdint>

namespace pyfastent {

// What the Gram kernel writes for entry (i, j), from dot = <x̃_i, x̃_j> and
// the squared norms n_i = <x̃_i, x̃_i> of the transformed rows x̃:
enum GramMode : int {
  kSqDist = 0,  // max(n_i + n_j − 2 dot, 0), 0 on the diagonal
  kRbf = 1,     // exp(param_b · max(n_i + n_j − 2 dot, 0)) · scale, scale on the diagonal
  kLinear = 2,  // dot / sqrt(n_i n_j) · scale
  kScaled = 3,  // param_b · dot
};

// X viewed as [batch, rows, depth] with element strides; each element is
// transformed on load as (x − row_offset[b, r] − k_offset[b, k]) ·
// k_scale[b, k] · row_scale[b, r] (null pointers skip a step).
struct GramInput {
  std::uintptr_t x = 0;
  std::int64_t batch = 0, rows = 0, depth = 0;
  std::int64_t stride_b = 0, stride_r = 0, stride_k = 0;
  std::uintptr_t row_offset = 0;  // [batch, rows] or 0
  std::uintptr_t k_offset = 0;    // [batch, depth] or 0
  std::uintptr_t k_scale = 0;     // [batch, depth] or 0
  std::uintptr_t row_scale = 0;   // [batch, rows] or 0
  bool is_double = false;
};

// norms[b, r] = Σ_k x̃[b, r, k]² ; norms is [batch, rows] contiguous.
void gram_row_norms(const GramInput& in, std::uintptr_t norms, std::uintptr_t stream);

// out[b] = f(X̃_b X̃_bᵀ) as above; out is [batch, rows, rows] contiguous,
// param is [batch] (required by kRbf and kScaled), norms [batch, rows]
// (required by every mode but kScaled); a missing one throws. Only tiles on
// or above the diagonal are computed; their mirror images are written from them.
void gram(const GramInput& in, std::uintptr_t norms, int mode, std::uintptr_t param, double scale,
          std::uintptr_t out, std::uintptr_t stream);

// out = a ∘ b (∘ c) · inv_trace for [n, n] contiguous matrices; c may be 0.
// The caller computes inv_trace = 1 / tr(a ∘ b (∘ c)) from the diagonals
// (O(n)) and rejects a zero trace; a non-positive or non-finite value throws.
void hadamard_normalized(std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, std::int64_t n, double inv_trace,
                         bool is_double, std::uintptr_t out, std::uintptr_t stream);

// Matrix-free α = 2 sums for the RBF Gram matrices K_a, K_b of two variables
// with the same rows: sums[0] += Σ K_a², sums[1] += Σ K_b², sums[2] += Σ (K_a K_b)²
// over all i, j (float64 [3], zeroed by the caller). neg_half_inv_var_* are
// −1/(2σ²). When b_codes is nonzero, K_b is the delta kernel of the int64
// codes [rows] and `b` is ignored.
void rbf_alpha2_sums(const GramInput& a, std::uintptr_t norms_a, double neg_half_inv_var_a, const GramInput& b,
                     std::uintptr_t norms_b, double neg_half_inv_var_b, std::uintptr_t b_codes, std::uintptr_t sums,
                     std::uintptr_t stream);

}  // namespace pyfastent
