/* defines: dn_swiglu_forward, dn_swiglu_backward
 * SwiGLU on the fused gate/up projection, elementwise over out(N,F): inp(N,2F) holds gate
 * in columns [0,F) and up in columns [F,2F) of each row; out = silu(gate) * up. fp32
 * inside, as on the CPU. */
#include "common.cuh"

/* 1 / (1 + e^-g): saturates to 0 and 1 without NaN */
__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

template <typename T>
__global__ void swiglu_fwd_k(T *out, const T *inp, int64_t N, int64_t F) {
  DN_GRID_LOOP(k, N * F) {
    int64_t gate = (k / F) * 2 * F + k % F;
    float g = ldf(inp, gate);
    stf(out, k, g * sigmoid(g) * ldf(inp, gate + F));
  }
}

dn_status dn_swiglu_forward(dn_dtype dtype, void *out, const void *inp, int64_t N, int64_t F) {
  const char *op = "dn_swiglu_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_POS(N, op);
  DN_CHECK_POS(F, op);
  DN_CHECK_EXTENT(op, N, 2, F);
  DN_CHECK_PTR(out, op);
  DN_CHECK_PTR(inp, op);
  DN_TRY(dn_cuda_init(op));
  DN_DISPATCH(dn_base_dtype(dtype), T,
              swiglu_fwd_k<T><<<dn_blocks(N * F, 256), 256, 0, dn_stream()>>>(
                  (T *)out, (const T *)inp, N, F););
  DN_LAUNCHED(op);
  return DN_OK;
}

/* dgate = dout * up * silu'(gate), silu'(g) = s + g s (1 - s); dup = dout * silu(gate) */
template <typename T>
__global__ void swiglu_bwd_k(T *dinp, const T *dout, const T *inp, int64_t N, int64_t F,
                             int32_t accumulate) {
  DN_GRID_LOOP(k, N * F) {
    int64_t gate = (k / F) * 2 * F + k % F, up = gate + F;
    float g = ldf(inp, gate), u = ldf(inp, up), d = ldf(dout, k), s = sigmoid(g);
    float dg = d * u * s * (1.0f + g * (1.0f - s)), du = d * g * s;
    if (accumulate) {
      addf(dinp, gate, dg);
      addf(dinp, up, du);
    } else {
      stf(dinp, gate, dg);
      stf(dinp, up, du);
    }
  }
}

dn_status dn_swiglu_backward(dn_dtype dtype, void *dinp, const void *dout, const void *inp,
                             int64_t N, int64_t F, int32_t accumulate) {
  const char *op = "dn_swiglu_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_POS(N, op);
  DN_CHECK_POS(F, op);
  DN_CHECK_EXTENT(op, N, 2, F);
  DN_CHECK_PTR(dinp, op);
  DN_CHECK_PTR(dout, op);
  DN_CHECK_PTR(inp, op);
  DN_TRY(dn_cuda_init(op));
  DN_DISPATCH(dn_base_dtype(dtype), T,
              swiglu_bwd_k<T><<<dn_blocks(N * F, 256), 256, 0, dn_stream()>>>(
                  (T *)dinp, (const T *)dout, (const T *)inp, N, F, accumulate););
  DN_LAUNCHED(op);
  return DN_OK;
}
