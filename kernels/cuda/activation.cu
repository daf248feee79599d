/* defines: dn_bias_act_forward, dn_bias_act_backward (pointwise activations of x + bias:
 * GELU in its tanh approximation or exact, tanh)
 * Elementwise over (N,C); the bias gradient is a deterministic column sum of the
 * input gradient, recomputed rather than re-read so that dinp's rounding to 16 bits
 * does not enter it. The activation is a kernel argument: every thread of a launch takes
 * the same branch. */
#include "common.cuh"

#define GELU_K 0.7978845608028654f       /* sqrt(2/pi) */
#define INV_SQRT_2PI 0.3989422804014327f /* 1/sqrt(2 pi) */

__device__ __forceinline__ float act_value(int32_t act, float x) {
  if (act == DN_ACT_GELU_ERF) return x * normcdff(x);
  if (act == DN_ACT_TANH) return tanhf(x);
  float u = GELU_K * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}
__device__ __forceinline__ float act_grad(int32_t act, float x) {
  if (act == DN_ACT_GELU_ERF) return normcdff(x) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
  if (act == DN_ACT_TANH) {
    float t = tanhf(x);
    return 1.0f - t * t;
  }
  float u = GELU_K * (x + 0.044715f * x * x * x);
  float t = tanhf(u);
  float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

static dn_status check_act(int32_t act, const char *op) {
  DN_CHECK(act == DN_ACT_GELU_TANH || act == DN_ACT_GELU_ERF || act == DN_ACT_TANH,
           DN_ERR_INVALID, "%s: unknown activation %d", op, (int)act);
  return DN_OK;
}

template <typename T>
__global__ void act_fwd_k(int32_t act, T *out, const T *inp, const T *bias, int64_t N,
                          int64_t C) {
  DN_GRID_LOOP(k, N * C) {
    float x = ldf(inp, k) + (bias ? ldf(bias, k % C) : 0.0f);
    stf(out, k, act_value(act, x));
  }
}

dn_status dn_bias_act_forward(dn_dtype dtype, int32_t act, void *out, const void *inp,
                              const void *bias, int64_t N, int64_t C) {
  const char *op = "dn_bias_act_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_TRY(check_act(act, op));
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK(out && inp, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  DN_DISPATCH(dn_base_dtype(dtype), T,
              act_fwd_k<T><<<dn_blocks(N * C, 256), 256, 0, dn_stream()>>>(
                  act, (T *)out, (const T *)inp, (const T *)bias, N, C););
  DN_LAUNCHED(op);
  return DN_OK;
}

template <typename T>
__device__ __forceinline__ float act_dinp(int32_t act, const T *dout, const T *inp,
                                          const T *bias, int64_t k, int64_t c) {
  return ldf(dout, k) * act_grad(act, ldf(inp, k) + (bias ? ldf(bias, c) : 0.0f));
}

template <typename T>
__global__ void act_bwd_k(int32_t act, T *dinp, const T *dout, const T *inp, const T *bias,
                          int64_t N, int64_t C, int32_t accumulate) {
  DN_GRID_LOOP(k, N * C) {
    float d = act_dinp(act, dout, inp, bias, k, bias ? k % C : 0);
    if (accumulate)
      addf(dinp, k, d);
    else
      stf(dinp, k, d);
  }
}

template <typename T> struct ActBiasGrad {
  int32_t act;
  const T *dout, *inp, *bias;
  int64_t C;
  __device__ float operator()(int64_t i, int64_t c) const {
    return act_dinp(act, dout, inp, bias, i * C + c, c);
  }
};

/* The one-pass backward: dn_column_sums calls this once per element, which writes
 * dinp (+= or =) and returns the value for the bias gradient, so dout and inp are read
 * once and the bias gradient keeps colsum's fixed order. */
template <typename T> struct ActGradWrite {
  int32_t act;
  T *dinp;
  const T *dout, *inp, *bias;
  int64_t C;
  int32_t accumulate;
  __device__ float operator()(int64_t i, int64_t c) const {
    int64_t k = i * C + c;
    float d = act_dinp(act, dout, inp, bias, k, c);
    if (accumulate)
      addf(dinp, k, d);
    else
      stf(dinp, k, d);
    return d;
  }
};

/* DENOTRON_CUDA_GELU=fused: the one-pass backward above, opt-in until a GPU check has
 * passed with it. The default computes the activation's gradient twice: a column-sum pass
 * for the bias gradient, then an elementwise pass. */
static int gelu_fused_enabled(void) {
  static const int on = dn_env_is("DENOTRON_CUDA_GELU", "fused");
  return on;
}

dn_status dn_bias_act_backward(dn_dtype dtype, int32_t act, void *dinp, void *dbias,
                               const void *dout, const void *inp, const void *bias, int64_t N,
                               int64_t C, int32_t accumulate) {
  const char *op = "dn_bias_act_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_TRY(check_act(act, op));
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK(dinp && dout && inp, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  DN_DISPATCH2(dtype, T, G, {
    const T *g = (const T *)dout, *x = (const T *)inp, *b = (const T *)bias;
    if (dbias && gelu_fused_enabled()) {
      DN_TRY(dn_column_sums(op, (G *)dbias, N, C,
                            ActGradWrite<T>{act, (T *)dinp, g, x, b, C, accumulate}));
      return DN_OK;
    }
    /* the column sums read dinp-independent values, so their order against the
     * elementwise kernel does not matter */
    if (dbias) DN_TRY(dn_column_sums(op, (G *)dbias, N, C, ActBiasGrad<T>{act, g, x, b, C}));
    act_bwd_k<T><<<dn_blocks(N * C, 256), 256, 0, dn_stream()>>>(act, (T *)dinp, g, x, b, N, C,
                                                                 accumulate);
    DN_LAUNCHED(op);
  });
  return DN_OK;
}
