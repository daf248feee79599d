/* defines: dn_rmsnorm_forward, dn_rmsnorm_backward
 * RMSNorm (Llama's norm: no mean subtraction, no bias), one warp per row of (N,C): the
 * statistic and every sum in fp32, as on the CPU. The weight gradient is a deterministic
 * column sum (dn_column_sums), possibly into an fp32 main gradient of 16-bit weights
 * (DN_DTYPE_WITH_GRAD). */
#include "common.cuh"

#define WARPS 8

template <typename T>
__global__ void rms_fwd_k(T *out, float *rstd, const T *inp, const T *w, int64_t N, int64_t C,
                          float eps) {
  int64_t i = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (i >= N) return;
  const T *x = inp + i * C;
  float ss = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    float v = ldf(x, c);
    ss += v * v;
  }
  float r = rsqrtf(warp_sum(ss) / (float)C + eps);
  for (int64_t c = lane; c < C; c += 32) stf(out, i * C + c, ldf(x, c) * r * ldf(w, c));
  if (lane == 0) rstd[i] = r;
}

dn_status dn_rmsnorm_forward(dn_dtype dtype, void *out, float *rstd, const void *inp,
                             const void *weight, int64_t N, int64_t C, float eps) {
  const char *op = "dn_rmsnorm_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_POS(N, op);
  DN_CHECK_POS(C, op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK_PTR(out, op);
  DN_CHECK_PTR(rstd, op);
  DN_CHECK_PTR(inp, op);
  DN_CHECK_PTR(weight, op);
  DN_CHECK(eps > 0, DN_ERR_INVALID, "%s: eps %g must be positive", op, (double)eps);
  DN_TRY(dn_cuda_init(op));
  unsigned grid = (unsigned)((N + WARPS - 1) / WARPS);
  DN_DISPATCH(dn_base_dtype(dtype), T,
              rms_fwd_k<T><<<grid, WARPS * 32, 0, dn_stream()>>>(
                  (T *)out, rstd, (const T *)inp, (const T *)weight, N, C, eps););
  DN_LAUNCHED(op);
  return DN_OK;
}

/* dx = r * (dxhat - xhat * mean(dxhat * xhat)), xhat = x r, dxhat = dout * w */
template <typename T>
__global__ void rms_bwd_k(T *dinp, const T *dout, const T *inp, const T *w, const float *rstd,
                          int64_t N, int64_t C) {
  int64_t i = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (i >= N) return;
  const T *x = inp + i * C, *g = dout + i * C;
  float r = rstd[i], s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += ldf(g, c) * ldf(w, c) * ldf(x, c) * r;
  s = warp_sum(s) / (float)C;
  for (int64_t c = lane; c < C; c += 32)
    addf(dinp, i * C + c, r * (ldf(g, c) * ldf(w, c) - ldf(x, c) * r * s));
}

template <typename T> struct RmsWeightGrad {
  const T *dout, *inp;
  const float *rstd;
  int64_t C;
  __device__ float operator()(int64_t i, int64_t c) const {
    return ldf(dout, i * C + c) * ldf(inp, i * C + c) * rstd[i];
  }
};

dn_status dn_rmsnorm_backward(dn_dtype dtype, void *dinp, void *dweight, const void *dout,
                              const void *inp, const void *weight, const float *rstd, int64_t N,
                              int64_t C) {
  const char *op = "dn_rmsnorm_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_POS(N, op);
  DN_CHECK_POS(C, op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK_PTR(dout, op);
  DN_CHECK_PTR(inp, op);
  DN_CHECK_PTR(weight, op);
  DN_CHECK_PTR(rstd, op);
  DN_TRY(dn_cuda_init(op));
  unsigned grid = (unsigned)((N + WARPS - 1) / WARPS);
  DN_DISPATCH2(dtype, T, G, {
    const T *g = (const T *)dout, *x = (const T *)inp;
    if (dinp) {
      rms_bwd_k<T><<<grid, WARPS * 32, 0, dn_stream()>>>((T *)dinp, g, x, (const T *)weight,
                                                         rstd, N, C);
      DN_LAUNCHED(op);
    }
    if (dweight) DN_TRY(dn_column_sums(op, (G *)dweight, N, C, RmsWeightGrad<T>{g, x, rstd, C}));
  });
  return DN_OK;
}
