/* defines: dn_rmsnorm_forward, dn_rmsnorm_backward
 * RMSNorm (Llama's norm: no mean subtraction, no bias). 16-bit tensors are loaded into
 * fp32; the statistic and every sum stay in fp32. The weight gradient may be an fp32
 * "main" gradient of 16-bit weights (DN_DTYPE_WITH_GRAD). */
#include <math.h>
#include "common.h"

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
  dtype = dn_base_dtype(dtype);
  DN_FOR_DTYPE(dtype, {
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)")
    for (int64_t i = 0; i < N; i++) {
      int64_t row = i * C;
      float ss = 0.0f;
      for (int64_t c = 0; c < C; c++) {
        float x = dn_ld(DT, inp, row + c);
        ss += x * x;
      }
      float r = 1.0f / sqrtf(ss / (float)C + eps);
      for (int64_t c = 0; c < C; c++)
        dn_st(DT, out, row + c, dn_ld(DT, inp, row + c) * r * dn_ld(DT, weight, c));
      rstd[i] = r;
    }
  });
  return DN_OK;
}

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
  dn_dtype gt = dn_grad_dtype(dtype);
  dtype = dn_base_dtype(dtype);
  DN_FOR_DTYPE(dtype, {
    if (dinp) {
      _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)")
      for (int64_t i = 0; i < N; i++) {
        int64_t row = i * C;
        float r = rstd[i];
        /* dx = r * (dxhat - xhat * mean(dxhat * xhat)), xhat = x r, dxhat = g w */
        float s = 0.0f;
        for (int64_t c = 0; c < C; c++)
          s += dn_ld(DT, dout, row + c) * dn_ld(DT, weight, c) * dn_ld(DT, inp, row + c) * r;
        s /= (float)C;
        for (int64_t c = 0; c < C; c++) {
          float xhat = dn_ld(DT, inp, row + c) * r;
          float d = r * (dn_ld(DT, dout, row + c) * dn_ld(DT, weight, c) - xhat * s);
          dn_st(DT, dinp, row + c, dn_ld(DT, dinp, row + c) + d);
        }
      }
    }
    if (dweight) {
      /* Threads own column blocks and walk the rows in order: a fixed summation order,
       * whatever the thread count. */
      const int64_t block = 64;
      int64_t nblocks = (C + block - 1) / block;
      _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)")
      for (int64_t cb = 0; cb < nblocks; cb++) {
        int64_t c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
        float aw[64] = {0};
        for (int64_t i = 0; i < N; i++) {
          float r = rstd[i];
          for (int64_t c = c0; c < c1; c++)
            aw[c - c0] += dn_ld(DT, dout, i * C + c) * dn_ld(DT, inp, i * C + c) * r;
        }
        dn_accum_row(gt, dweight, c0, aw, c1 - c0);
      }
    }
  });
  return DN_OK;
}
