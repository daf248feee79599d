/* defines: dn_layernorm_forward, dn_layernorm_backward
 * One warp per row (N,C): the statistics and every sum in fp32. The weight and bias
 * gradients are deterministic column sums (common.cuh), possibly into fp32 main
 * gradients of 16-bit weights (DN_DTYPE_WITH_GRAD). */
#include "common.cuh"

#define WARPS 8

template <typename T>
__global__ void ln_fwd_k(T *out, float *mean, float *rstd, const T *inp, const T *w,
                         const T *b, int64_t N, int64_t C, float eps) {
  int64_t i = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (i >= N) return;
  const T *x = inp + i * C;
  float s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += ldf(x, c);
  float m = warp_sum(s) / (float)C;
  float v = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    float d = ldf(x, c) - m;
    v += d * d;
  }
  float r = rsqrtf(warp_sum(v) / (float)C + eps);
  for (int64_t c = lane; c < C; c += 32)
    stf(out, i * C + c, (ldf(x, c) - m) * r * ldf(w, c) + ldf(b, c));
  if (lane == 0) {
    mean[i] = m;
    rstd[i] = r;
  }
}

dn_status dn_layernorm_forward(dn_dtype dtype, void *out, float *mean, float *rstd,
                               const void *inp, const void *weight, const void *bias, int64_t N,
                               int64_t C, float eps) {
  const char *op = "dn_layernorm_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive (N=%lld C=%lld)", op,
           (long long)N, (long long)C);
  DN_CHECK(out && mean && rstd && inp && weight && bias, DN_ERR_INVALID, "%s: NULL pointer",
           op);
  DN_CHECK(eps > 0, DN_ERR_INVALID, "%s: eps %g must be positive", op, (double)eps);
  DN_TRY(dn_cuda_init(op));
  unsigned grid = (unsigned)((N + WARPS - 1) / WARPS);
  DN_DISPATCH(dn_base_dtype(dtype), T,
              ln_fwd_k<T><<<grid, WARPS * 32, 0, dn_stream()>>>(
                  (T *)out, mean, rstd, (const T *)inp, (const T *)weight, (const T *)bias, N, C,
                  eps););
  DN_LAUNCHED(op);
  return DN_OK;
}

/* dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dout * w */
template <typename T>
__global__ void ln_bwd_k(T *dinp, const T *dout, const T *inp, const T *w, const float *mean,
                         const float *rstd, int64_t N, int64_t C) {
  int64_t i = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (i >= N) return;
  const T *x = inp + i * C, *g = dout + i * C;
  float m = mean[i], r = rstd[i], s1 = 0.0f, s2 = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    float dxhat = ldf(g, c) * ldf(w, c);
    s1 += dxhat;
    s2 += dxhat * (ldf(x, c) - m) * r;
  }
  s1 = warp_sum(s1) / (float)C;
  s2 = warp_sum(s2) / (float)C;
  for (int64_t c = lane; c < C; c += 32) {
    float xhat = (ldf(x, c) - m) * r;
    addf(dinp, i * C + c, r * (ldf(g, c) * ldf(w, c) - s1 - xhat * s2));
  }
}

template <typename T> struct LnWeightGrad {
  const T *dout, *inp;
  const float *mean, *rstd;
  int64_t C;
  __device__ float operator()(int64_t i, int64_t c) const {
    return ldf(dout, i * C + c) * (ldf(inp, i * C + c) - mean[i]) * rstd[i];
  }
};
template <typename T> struct LnBiasGrad {
  const T *dout;
  int64_t C;
  __device__ float operator()(int64_t i, int64_t c) const { return ldf(dout, i * C + c); }
};

dn_status dn_layernorm_backward(dn_dtype dtype, void *dinp, void *dweight, void *dbias,
                                const void *dout, const void *inp, const void *weight,
                                const float *mean, const float *rstd, int64_t N, int64_t C) {
  const char *op = "dn_layernorm_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK(dout && inp && weight && mean && rstd, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  unsigned grid = (unsigned)((N + WARPS - 1) / WARPS);
  DN_DISPATCH2(dtype, T, G, {
    const T *g = (const T *)dout, *x = (const T *)inp;
    if (dinp) {
      ln_bwd_k<T><<<grid, WARPS * 32, 0, dn_stream()>>>((T *)dinp, g, x, (const T *)weight, mean,
                                                        rstd, N, C);
      DN_LAUNCHED(op);
    }
    if (dweight)
      DN_TRY(dn_column_sums(op, (G *)dweight, N, C, LnWeightGrad<T>{g, x, mean, rstd, C}));
    if (dbias) DN_TRY(dn_column_sums(op, (G *)dbias, N, C, LnBiasGrad<T>{g, C}));
  });
  return DN_OK;
}
