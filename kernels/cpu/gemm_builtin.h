/* The built-in GEMM and a column-sum helper shared by several kernels. */
#ifndef DN_GEMM_BUILTIN_H
#define DN_GEMM_BUILTIN_H
#include <stdint.h>
#include "../include/denotron.h"

/* C(M,N) = alpha * op(A) @ op(B) + beta * C, row-major, like cblas_sgemm. */
void dn_gemm_builtin(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc);

/* The same with A and B of dtype ab (widened while packing) and C of dtype ct. */
void dn_gemm_builtin_ex(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        dn_dtype ab, const void *A, int64_t lda, const void *B, int64_t ldb,
                        float beta, dn_dtype ct, void *C, int64_t ldc);

/* out(N) (dtype ot) += sum over rows of x(M,N) (dtype xt), in fp32. Each column is
 * summed in row order by one thread, so the result does not depend on the thread count. */
void dn_column_sums(dn_dtype ot, void *out, dn_dtype xt, const void *x, int64_t M, int64_t N);
#endif
