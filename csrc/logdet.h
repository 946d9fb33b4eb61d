// LogDet ops: batched Cholesky log-determinants of SPD matrices.
#pragma once

#include <cstdint>

namespace pyfastent {

// Largest n factored by one thread block in shared memory; larger matrices
// use the blocked right-looking factorization.
constexpr int kSmallCholesky = 64;

// logdet[b] = log det M_b for SPD M_b = matrices[b] ([batch, n, n] with
// element strides; only the lower triangle is read). info[b] = 0, or j + 1
// when the leading minor of order j + 1 is not positive definite (then
// logdet[b] is undefined). logdet is float64 [batch], info int32 [batch].
// For n > kSmallCholesky the factorization overwrites `matrices`, which must
// then be contiguous.
void cholesky_logdet(std::uintptr_t matrices, std::int64_t batch, std::int64_t n, std::int64_t stride_b,
                     std::int64_t stride_r, std::int64_t stride_c, bool is_double, std::uintptr_t logdet,
                     std::uintptr_t info, std::uintptr_t stream);

// Many small joints at once: for joint j, M_j = I + coef · C[idx_j][:, idx_j]
// with idx_j = index[j, 0 : size[j]] (int32 [joints, width], width ≤
// kSmallCholesky) gathered from one [d, d] contiguous matrix C, so no
// concatenation is ever formed. Outputs as in cholesky_logdet.
void joint_logdets(std::uintptr_t c, std::int64_t d, bool is_double, double coef, std::uintptr_t index,
                   std::uintptr_t size, std::int64_t joints, std::int64_t width, std::uintptr_t logdet,
                   std::uintptr_t info, std::uintptr_t stream);

}  // namespace pyfastent
