/* defines: dn_swiglu_forward, dn_swiglu_backward
 * SwiGLU of Llama's MLP on the fused gate/up projection: inp(N,2F) holds gate(N,F) in
 * columns [0,F) and up(N,F) in columns [F,2F) of each row, as one column-parallel linear
 * of width 2F writes them; out(N,F) = silu(gate) * up, silu(g) = g * sigmoid(g). */
#include "common.h"

/* 1 / (1 + e^-g) through dn_expf, which vectorises: saturates to 0 and 1 without NaN. */
static inline float sigmoid(float g) { return 1.0f / (1.0f + dn_expf(-g)); }

dn_status dn_swiglu_forward(dn_dtype dtype, void *out, const void *inp, int64_t N, int64_t F) {
  const char *op = "dn_swiglu_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_POS(N, op);
  DN_CHECK_POS(F, op);
  DN_CHECK_EXTENT(op, N, 2, F);
  DN_CHECK_PTR(out, op);
  DN_CHECK_PTR(inp, op);
  dtype = dn_base_dtype(dtype);
  DN_FOR_DTYPE(dtype, {
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * F > 32768)")
    for (int64_t i = 0; i < N; i++) {
      int64_t gate = 2 * i * F, up = gate + F, o = i * F;
      _Pragma("omp simd")
      for (int64_t c = 0; c < F; c++) {
        float g = dn_ld(DT, inp, gate + c);
        dn_st(DT, out, o + c, g * sigmoid(g) * dn_ld(DT, inp, up + c));
      }
    }
  });
  return DN_OK;
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
  dtype = dn_base_dtype(dtype);
  DN_FOR_DTYPE(dtype, {
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * F > 32768)")
    for (int64_t i = 0; i < N; i++) {
      int64_t gate = 2 * i * F, up = gate + F, o = i * F;
      _Pragma("omp simd")
      for (int64_t c = 0; c < F; c++) {
        float g = dn_ld(DT, inp, gate + c), u = dn_ld(DT, inp, up + c);
        float d = dn_ld(DT, dout, o + c), s = sigmoid(g);
        /* silu'(g) = s + g s (1 - s) */
        float dg = d * u * s * (1.0f + g * (1.0f - s)), du = d * g * s;
        if (accumulate) {
          dg += dn_ld(DT, dinp, gate + c);
          du += dn_ld(DT, dinp, up + c);
        }
        dn_st(DT, dinp, gate + c, dg);
        dn_st(DT, dinp, up + c, du);
      }
    }
  });
  return DN_OK;
}
