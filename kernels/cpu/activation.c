/* defines: dn_bias_act_forward, dn_bias_act_backward, dn_linear_act_forward
 * (pointwise activations of x + bias: GELU in its tanh approximation or exact, tanh) */
#include <math.h>
#include "common.h"

#define GELU_K 0.7978845608028654f       /* sqrt(2/pi) */
#define INV_SQRT2 0.7071067811865476f    /* 1/sqrt(2) */
#define INV_SQRT_2PI 0.3989422804014327f /* 1/sqrt(2 pi) */

/* tanh through one exp, which vectorises (libm's tanhf does not). Saturates to
 * +-1 for large |u|: the exp goes to inf or 0. */
static inline float fast_tanh(float u) { return 1.0f - 2.0f / (1.0f + dn_expf(2.0f * u)); }

static inline float gelu_tanh(float x) {
  float u = GELU_K * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + fast_tanh(u));
}

static inline float gelu_tanh_grad(float x) {
  float u = GELU_K * (x + 0.044715f * x * x * x);
  float t = fast_tanh(u);
  float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

/* erfc(z) for z >= 0, relative error below 1.2e-7 (Numerical Recipes' erfcc, a Chebyshev
 * fit of log(erfc(z)·(1 + z/2))), through dn_expf so that the loops vectorise. */
static inline float erfc_nonneg(float z) {
  float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = -0.82215223f + t * p;
  p = 1.48851587f + t * p;
  p = -1.13520398f + t * p;
  p = 0.27886807f + t * p;
  p = -0.18628806f + t * p;
  p = 0.09678418f + t * p;
  p = 0.37409196f + t * p;
  p = 1.00002368f + t * p;
  p = -1.26551223f + t * p;
  return t * dn_expf(-z * z + p);
}

/* The standard normal CDF Phi(x) = erfc(-x/sqrt 2)/2, from erfc of |x|/sqrt 2 on both sides
 * so that the negative tail keeps its relative accuracy (1 + erf(x/sqrt 2) would cancel). */
static inline float normal_cdf(float x) {
  float e = 0.5f * erfc_nonneg(fabsf(x) * INV_SQRT2);
  return x >= 0.0f ? 1.0f - e : e;
}

/* The exact GELU x·Phi(x) (BERT's "gelu") and its derivative Phi(x) + x·phi(x). */
static inline float gelu_erf(float x) { return x * normal_cdf(x); }
static inline float gelu_erf_grad(float x) {
  return normal_cdf(x) + x * INV_SQRT_2PI * dn_expf(-0.5f * x * x);
}

/* libm's tanh: BERT's pooler applies it to B·C values only, where accuracy near 0 (which
 * fast_tanh's 1 - 2/(1 + e^2u) loses) matters more than vector speed. */
static inline float tanh_act(float x) { return tanhf(x); }
static inline float tanh_grad(float x) {
  float t = tanhf(x);
  return 1.0f - t * t;
}

/* Expands BODY(F, G) once per activation, F its value and G its derivative, so that each
 * loop is specialised and none branches on the kind per element. */
#define DN_FOR_ACT(act, BODY)                                                                  \
  do {                                                                                         \
    switch (act) {                                                                             \
    case DN_ACT_GELU_ERF:                                                                      \
      BODY(gelu_erf, gelu_erf_grad);                                                           \
      break;                                                                                   \
    case DN_ACT_TANH:                                                                          \
      BODY(tanh_act, tanh_grad);                                                               \
      break;                                                                                   \
    default:                                                                                   \
      BODY(gelu_tanh, gelu_tanh_grad);                                                         \
      break;                                                                                   \
    }                                                                                          \
  } while (0)

#define DN_CHECK_ACT(act, op)                                                                  \
  DN_CHECK((act) == DN_ACT_GELU_TANH || (act) == DN_ACT_GELU_ERF || (act) == DN_ACT_TANH,     \
           DN_ERR_INVALID, "%s: unknown activation %d", op, (int)(act))

dn_status dn_bias_act_forward(dn_dtype dtype, int32_t act, void *out, const void *inp,
                              const void *bias, int64_t N, int64_t C) {
  const char *op = "dn_bias_act_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_ACT(act, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK(out && inp, DN_ERR_INVALID, "%s: NULL pointer", op);
  dtype = dn_base_dtype(dtype);
#define FORWARD_ROWS(F, G)                                                                     \
  DN_FOR_DTYPE(dtype, {                                                                        \
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 32768)")    \
    for (int64_t i = 0; i < N; i++) {                                                          \
      int64_t row = i * C;                                                                     \
      if (bias) {                                                                              \
        _Pragma("omp simd") for (int64_t c = 0; c < C; c++)                                    \
            dn_st(DT, out, row + c, F(dn_ld(DT, inp, row + c) + dn_ld(DT, bias, c)));          \
      } else {                                                                                 \
        _Pragma("omp simd") for (int64_t c = 0; c < C; c++)                                    \
            dn_st(DT, out, row + c, F(dn_ld(DT, inp, row + c)));                               \
      }                                                                                        \
    }                                                                                          \
  })
  DN_FOR_ACT(act, FORWARD_ROWS);
#undef FORWARD_ROWS
  return DN_OK;
}

dn_status dn_bias_act_backward(dn_dtype dtype, int32_t act, void *dinp, void *dbias,
                               const void *dout, const void *inp, const void *bias, int64_t N,
                               int64_t C, int32_t accumulate) {
  const char *op = "dn_bias_act_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_ACT(act, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK(dinp && dout && inp, DN_ERR_INVALID, "%s: NULL pointer", op);
  dn_dtype gt = dn_grad_dtype(dtype);
  dtype = dn_base_dtype(dtype);
  /* Threads own column blocks and walk the rows in order: the bias gradient is
   * summed in one fixed order, whatever the thread count. */
  const int64_t block = 64;
  int64_t nblocks = (C + block - 1) / block;
#define BACKWARD_COLUMNS(F, G)                                                                 \
  DN_FOR_DTYPE(dtype, {                                                                        \
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 32768)")    \
    for (int64_t cb = 0; cb < nblocks; cb++) {                                                 \
      int64_t c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;                           \
      float acc[64] = {0};                                                                     \
      for (int64_t i = 0; i < N; i++) {                                                        \
        _Pragma("omp simd") for (int64_t c = c0; c < c1; c++) {                                \
          int64_t k = i * C + c;                                                               \
          float d = dn_ld(DT, dout, k) *                                                       \
                    G(dn_ld(DT, inp, k) + (bias ? dn_ld(DT, bias, c) : 0.0f));                 \
          dn_st(DT, dinp, k, accumulate ? dn_ld(DT, dinp, k) + d : d);                         \
          acc[c - c0] += d;                                                                    \
        }                                                                                      \
      }                                                                                        \
      if (dbias) dn_accum_row(gt, dbias, c0, acc, c1 - c0);                                    \
    }                                                                                          \
  })
  DN_FOR_ACT(act, BACKWARD_COLUMNS);
#undef BACKWARD_COLUMNS
  return DN_OK;
}

dn_status dn_linear_act_forward(dn_dtype dtype, int32_t act, void *out, void *pre,
                                const void *inp, const void *weight, const void *bias, int64_t M,
                                int64_t N, int64_t K) {
  const char *op = "dn_linear_act_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_ACT(act, op);
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
  return st != DN_OK ? st : dn_bias_act_forward(dtype, act, out, pre, NULL, M, N);
}
