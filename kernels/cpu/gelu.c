/* defines: dn_bias_gelu_forward, dn_bias_gelu_backward (GELU, tanh approximation) */
#include <math.h>
#include "common.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* tanh through one exp, which vectorises (libm's tanhf does not). Saturates to
 * +-1 for large |u|: the exp goes to inf or 0. */
static inline float fast_tanh(float u) { return 1.0f - 2.0f / (1.0f + dn_expf(2.0f * u)); }

static inline float gelu(float x) {
  float u = GELU_K * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + fast_tanh(u));
}

static inline float gelu_grad(float x) {
  float u = GELU_K * (x + 0.044715f * x * x * x);
  float t = fast_tanh(u);
  float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

dn_status dn_bias_gelu_forward(dn_dtype dtype, void *out, const void *inp, const void *bias,
                               int64_t N, int64_t C) {
  const char *op = "dn_bias_gelu_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK(out && inp, DN_ERR_INVALID, "%s: NULL pointer", op);
  dtype = dn_base_dtype(dtype);
  DN_FOR_DTYPE(dtype, {
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 32768)")
    for (int64_t i = 0; i < N; i++) {
      int64_t row = i * C;
      if (bias) {
        _Pragma("omp simd")
        for (int64_t c = 0; c < C; c++)
          dn_st(DT, out, row + c, gelu(dn_ld(DT, inp, row + c) + dn_ld(DT, bias, c)));
      } else {
        _Pragma("omp simd")
        for (int64_t c = 0; c < C; c++) dn_st(DT, out, row + c, gelu(dn_ld(DT, inp, row + c)));
      }
    }
  });
  return DN_OK;
}

dn_status dn_bias_gelu_backward(dn_dtype dtype, void *dinp, void *dbias, const void *dout,
                                const void *inp, const void *bias, int64_t N, int64_t C,
                                int32_t accumulate) {
  const char *op = "dn_bias_gelu_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK(dinp && dout && inp, DN_ERR_INVALID, "%s: NULL pointer", op);
  dn_dtype gt = dn_grad_dtype(dtype);
  dtype = dn_base_dtype(dtype);
  /* Threads own column blocks and walk the rows in order: the bias gradient is
   * summed in one fixed order, whatever the thread count. */
  const int64_t block = 64;
  int64_t nblocks = (C + block - 1) / block;
  DN_FOR_DTYPE(dtype, {
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 32768)")
    for (int64_t cb = 0; cb < nblocks; cb++) {
      int64_t c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
      float acc[64] = {0};
      for (int64_t i = 0; i < N; i++) {
        _Pragma("omp simd")
        for (int64_t c = c0; c < c1; c++) {
          int64_t k = i * C + c;
          float d = dn_ld(DT, dout, k) *
                    gelu_grad(dn_ld(DT, inp, k) + (bias ? dn_ld(DT, bias, c) : 0.0f));
          dn_st(DT, dinp, k, accumulate ? dn_ld(DT, dinp, k) + d : d);
          acc[c - c0] += d;
        }
      }
      if (dbias) dn_accum_row(gt, dbias, c0, acc, c1 - c0);
    }
  });
  return DN_OK;
}

dn_status dn_linear_gelu_forward(dn_dtype dtype, void *out, void *pre, const void *inp,
                                 const void *weight, const void *bias, int64_t M, int64_t N,
                                 int64_t K) {
  const char *op = "dn_linear_gelu_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(M > 0 && N > 0 && K > 0, DN_ERR_INVALID,
           "%s: sizes must be positive (M=%lld N=%lld K=%lld)", op, (long long)M, (long long)N,
           (long long)K);
  DN_CHECK_EXTENT(op, M, K);
  DN_CHECK_EXTENT(op, N, K);
  DN_CHECK_EXTENT(op, M, N);
  DN_CHECK(out && pre && inp && weight, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_CHECK(out != pre, DN_ERR_INVALID, "%s: out and pre must be different buffers", op);
  dtype = dn_base_dtype(dtype);
  dn_status st =
      dn_matmul(dtype, 0, 1, M, N, K, 1.0f, inp, K, 0, weight, K, 0, 0.0f, pre, N, 0, bias, 1);
  return st != DN_OK ? st : dn_bias_gelu_forward(dtype, out, pre, NULL, M, N);
}
