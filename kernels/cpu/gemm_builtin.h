/* The built-in GEMM and a column-sum helper shared by several kernels. */
#ifndef DN_GEMM_BUILTIN_H
#define DN_GEMM_BUILTIN_H
#include <stdint.h>

/* C(M,N) = alpha * op(A) @ op(B) + beta * C, row-major, like cblas_sgemm. */
void dn_gemm_builtin(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc);

/* out(N) += sum over rows of x(M,N). Each column is summed in row order by one
 * thread, so the result does not depend on the thread count. */
void dn_column_sums(float *out, const float *x, int64_t M, int64_t N);
#endif
