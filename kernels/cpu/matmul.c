/* defines: dn_matmul, dn_bias_backward.
 * fp32 GEMM goes to OpenBLAS's cblas_sgemm when the library was built with it
 * (DN_USE_OPENBLAS), else to the built-in blocked GEMM of gemm_builtin.c, which widens
 * 16-bit A and B panel by panel while packing. On the OpenBLAS build a GEMM with a
 * 16-bit operand or result is cut into K-panels: each panel of op(A) and op(B) is
 * widened into fp32 scratch and handed to cblas_sgemm, accumulating (beta = 1) into an
 * fp32 C (a scratch C when C is 16-bit, rounded once at the end), so only panels are
 * ever converted. (Debian's OpenBLAS 0.3.21 declares cblas_sbgemm in cblas.h but is
 * built without BUILD_BFLOAT16, so the library does not export it.) */
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "gemm_builtin.h"

#ifdef DN_USE_OPENBLAS
#include <cblas.h>
#endif

#ifdef DN_USE_OPENBLAS
/* Columns of op(A) (rows of op(B)) widened per cblas_sgemm call: large enough that
 * OpenBLAS runs at full speed, small enough that the scratch stays in L2/L3. */
#define DN_GEMM_K_PANEL 384

/* dst(rows, cols) fp32, packed = src[r0 + i][c0 + j] of a (., ld) matrix of dtype dt. */
static void widen_block(dn_dtype dt, float *dst, const void *src, int64_t ld, int64_t r0,
                        int64_t c0, int64_t rows, int64_t cols) {
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (rows * cols > 32768)
  for (int64_t i = 0; i < rows; i++) dn_load_row(dt, dst + i * cols, src, (r0 + i) * ld + c0, cols);
}

/* C(M,N) = alpha * op(A) @ op(B) + beta * C with 16-bit A/B and/or C, through
 * cblas_sgemm on fp32 K-panels. Returns 0 when scratch memory is not available (the
 * caller then takes the built-in GEMM). */
static int gemm_panels(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                       dn_dtype ab, const void *A, int64_t lda, const void *B, int64_t ldb,
                       float beta, dn_dtype ct, void *C, int64_t ldc) {
  const int64_t kp_max = K < DN_GEMM_K_PANEL ? K : DN_GEMM_K_PANEL;
  float *ap = malloc((size_t)(M * kp_max) * sizeof(float)); /* (M, kp) or (kp, M) */
  float *bp = malloc((size_t)(kp_max * N) * sizeof(float)); /* (kp, N) or (N, kp) */
  float *cf = ct == DN_F32 ? (float *)C : malloc((size_t)(M * N) * sizeof(float)); /* (M, N) */
  int64_t ldcf = ct == DN_F32 ? ldc : N;
  if (!ap || !bp || !cf) {
    free(ap);
    free(bp);
    if (cf != C) free(cf);
    return 0;
  }
  if (ct != DN_F32 && beta != 0.0f) widen_block(ct, cf, C, ldc, 0, 0, M, N);
  for (int64_t k0 = 0; k0 < K; k0 += kp_max) {
    const int64_t kp = K - k0 < kp_max ? K - k0 : kp_max;
    /* Keep each operand's stored orientation, so a panel is a block of whole rows. */
    if (ta) widen_block(ab, ap, A, lda, k0, 0, kp, M); /* A stored (K, M) */
    else widen_block(ab, ap, A, lda, 0, k0, M, kp);    /* A stored (M, K) */
    if (tb) widen_block(ab, bp, B, ldb, 0, k0, N, kp); /* B stored (N, K) */
    else widen_block(ab, bp, B, ldb, k0, 0, kp, N);    /* B stored (K, N) */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)kp, alpha, ap, (blasint)(ta ? M : kp), bp,
                (blasint)(tb ? kp : N), k0 == 0 ? beta : 1.0f, cf, (blasint)ldcf);
  }
  if (ct != DN_F32) {
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (M * N > 32768)
    for (int64_t i = 0; i < M; i++) dn_store_row(ct, C, i * ldc, cf + i * N, N);
    free(cf);
  }
  free(ap);
  free(bp);
  return 1;
}
#endif

static void gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, dn_dtype ab,
                 const void *A, int64_t lda, const void *B, int64_t ldb, float beta, dn_dtype ct,
                 void *C, int64_t ldc) {
#ifdef DN_USE_OPENBLAS
  if (ab == DN_F32 && ct == DN_F32) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb,
                beta, C, (blasint)ldc);
    return;
  }
  if (gemm_panels(ta, tb, M, N, K, alpha, ab, A, lda, B, ldb, beta, ct, C, ldc)) return;
#endif
  dn_gemm_builtin_ex(ta, tb, M, N, K, alpha, ab, A, lda, B, ldb, beta, ct, C, ldc);
}

dn_status dn_matmul(dn_dtype dtype, int32_t trans_a, int32_t trans_b, int64_t M, int64_t N,
                    int64_t K, float alpha, const void *A, int64_t lda, int64_t stride_a,
                    const void *B, int64_t ldb, int64_t stride_b, float beta, void *C,
                    int64_t ldc, int64_t stride_c, const void *bias, int64_t batch) {
  const char *op = "dn_matmul";
  DN_CHECK_FLOAT(dtype, op);
  /* A and B have the base dtype; C and bias the second one (DN_DTYPE_WITH_GRAD). */
  dn_dtype ab = dn_base_dtype(dtype), ct = dn_grad_dtype(dtype);
  size_t as = ab == DN_F32 ? 4 : 2, cs = ct == DN_F32 ? 4 : 2;
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
  DN_CHECK_EXTENT(op, trans_a ? K : M, lda);
  DN_CHECK_EXTENT(op, trans_b ? N : K, ldb);
  DN_CHECK_EXTENT(op, M, ldc);
  DN_CHECK_EXTENT(op, batch, stride_a);
  DN_CHECK_EXTENT(op, batch, stride_b);
  DN_CHECK_EXTENT(op, batch, stride_c);
  DN_CHECK(M < ((int64_t)1 << 31) && N < ((int64_t)1 << 31) && K < ((int64_t)1 << 31),
           DN_ERR_INVALID, "dn_matmul: a dimension exceeds 2^31");
  for (int64_t b = 0; b < batch; b++) {
    const char *a = (const char *)A + (size_t)(b * stride_a) * as;
    const char *bb = (const char *)B + (size_t)(b * stride_b) * as;
    char *c = (char *)C + (size_t)(b * stride_c) * cs;
    float beta_b = beta;
    if (bias) {
      /* Fold the bias into C first, so the GEMM adds onto it with beta = 1. */
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (M * N > 65536)
      for (int64_t i = 0; i < M; i++) {
        if (beta == 0.0f) {
          memcpy(c + (size_t)(i * ldc) * cs, bias, (size_t)N * cs);
        } else {
          for (int64_t j = 0; j < N; j++)
            dn_st(ct, c, i * ldc + j, beta * dn_ld(ct, c, i * ldc + j) + dn_ld(ct, bias, j));
        }
      }
      beta_b = 1.0f;
    }
    if (K == 0) {
      if (!bias && beta_b != 1.0f) {
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++)
            dn_st(ct, c, i * ldc + j, beta_b == 0.0f ? 0.0f : beta_b * dn_ld(ct, c, i * ldc + j));
      }
      continue;
    }
    gemm(trans_a, trans_b, M, N, K, alpha, ab, a, lda, bb, ldb, beta_b, ct, c, ldc);
  }
  return DN_OK;
}

dn_status dn_bias_backward(dn_dtype dtype, void *dbias, const void *dout, int64_t M, int64_t N) {
  DN_CHECK_FLOAT(dtype, "dn_bias_backward");
  DN_CHECK(M >= 0 && N >= 0, DN_ERR_INVALID, "dn_bias_backward: negative size");
  DN_CHECK_EXTENT("dn_bias_backward", M, N);
  if (M == 0 || N == 0) return DN_OK;
  DN_CHECK(dbias && dout, DN_ERR_INVALID, "dn_bias_backward: NULL pointer");
  /* dout has the base dtype, dbias the parameter-gradient dtype */
  dn_column_sums(dn_grad_dtype(dtype), dbias, dn_base_dtype(dtype), dout, M, N);
  return DN_OK;
}
