/* defines: dn_matmul, dn_bias_backward.
 * GEMM goes to OpenBLAS's cblas_sgemm when the library was built with it
 * (DN_USE_OPENBLAS), else to the built-in blocked GEMM of gemm_builtin.c. */
#include <string.h>
#include "common.h"
#include "gemm_builtin.h"

#ifdef DN_USE_OPENBLAS
#include <cblas.h>
#endif

static void sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
#ifdef DN_USE_OPENBLAS
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta,
              C, (blasint)ldc);
#else
  dn_gemm_builtin(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

dn_status dn_matmul(dn_dtype dtype, int32_t trans_a, int32_t trans_b, int64_t M, int64_t N,
                    int64_t K, float alpha, const void *A, int64_t lda, int64_t stride_a,
                    const void *B, int64_t ldb, int64_t stride_b, float beta, void *C,
                    int64_t ldc, int64_t stride_c, const void *bias, int64_t batch) {
  const char *op = "dn_matmul";
  DN_CHECK_F32(dtype, op);
  DN_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, DN_ERR_INVALID,
           "dn_matmul: negative size (M=%lld N=%lld K=%lld batch=%lld)", (long long)M,
           (long long)N, (long long)K, (long long)batch);
  if (M == 0 || N == 0 || batch == 0) return DN_OK;
  DN_CHECK(A && B && C, DN_ERR_INVALID, "dn_matmul: NULL matrix pointer");
  DN_CHECK(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N, DN_ERR_INVALID,
           "dn_matmul: leading dimensions lda=%lld ldb=%lld ldc=%lld too small for "
           "M=%lld N=%lld K=%lld",
           (long long)lda, (long long)ldb, (long long)ldc, (long long)M, (long long)N,
           (long long)K);
  DN_CHECK(M < ((int64_t)1 << 31) && N < ((int64_t)1 << 31) && K < ((int64_t)1 << 31),
           DN_ERR_INVALID, "dn_matmul: a dimension exceeds 2^31");
  for (int64_t b = 0; b < batch; b++) {
    const float *a = (const float *)A + b * stride_a;
    const float *bb = (const float *)B + b * stride_b;
    float *c = (float *)C + b * stride_c;
    float beta_b = beta;
    if (bias) {
      /* Fold the bias into C first, so the GEMM adds onto it with beta = 1. */
      const float *bi = bias;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (M * N > 65536)
      for (int64_t i = 0; i < M; i++) {
        float *row = c + i * ldc;
        if (beta == 0.0f) {
          memcpy(row, bi, (size_t)N * sizeof(float));
        } else {
          for (int64_t j = 0; j < N; j++) row[j] = beta * row[j] + bi[j];
        }
      }
      beta_b = 1.0f;
    }
    if (K == 0) {
      if (!bias && beta_b != 1.0f) {
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++)
            c[i * ldc + j] = beta_b == 0.0f ? 0.0f : beta_b * c[i * ldc + j];
      }
      continue;
    }
    sgemm(trans_a, trans_b, M, N, K, alpha, a, lda, bb, ldb, beta_b, c, ldc);
  }
  return DN_OK;
}

dn_status dn_bias_backward(dn_dtype dtype, void *dbias, const void *dout, int64_t M, int64_t N) {
  DN_CHECK_F32(dtype, "dn_bias_backward");
  DN_CHECK(M >= 0 && N >= 0, DN_ERR_INVALID, "dn_bias_backward: negative size");
  if (M == 0 || N == 0) return DN_OK;
  DN_CHECK(dbias && dout, DN_ERR_INVALID, "dn_bias_backward: NULL pointer");
  dn_column_sums(dbias, dout, M, N);
  return DN_OK;
}
