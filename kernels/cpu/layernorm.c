/* defines: dn_layernorm_forward, dn_layernorm_backward
 * 16-bit tensors are loaded into fp32 a row at a time; the statistics and every sum
 * stay in fp32. The weight and bias gradients may be fp32 "main" gradients of 16-bit
 * weights (DN_DTYPE_WITH_GRAD). */
#include <math.h>
#include "common.h"

dn_status dn_layernorm_forward(dn_dtype dtype, void *out, float *mean, float *rstd,
                               const void *inp, const void *weight, const void *bias, int64_t N,
                               int64_t C, float eps) {
  const char *op = "dn_layernorm_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive (N=%lld C=%lld)", op,
           (long long)N, (long long)C);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK(out && mean && rstd && inp && weight && bias, DN_ERR_INVALID, "%s: NULL pointer",
           op);
  DN_CHECK(eps > 0, DN_ERR_INVALID, "%s: eps %g must be positive", op, (double)eps);
  dtype = dn_base_dtype(dtype);
  DN_FOR_DTYPE(dtype, {
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)")
    for (int64_t i = 0; i < N; i++) {
      int64_t row = i * C;
      float m = 0.0f;
      for (int64_t c = 0; c < C; c++) m += dn_ld(DT, inp, row + c);
      m /= (float)C;
      float var = 0.0f;
      for (int64_t c = 0; c < C; c++) {
        float d = dn_ld(DT, inp, row + c) - m;
        var += d * d;
      }
      var /= (float)C;
      float r = 1.0f / sqrtf(var + eps);
      for (int64_t c = 0; c < C; c++) {
        float y = (dn_ld(DT, inp, row + c) - m) * r * dn_ld(DT, weight, c) + dn_ld(DT, bias, c);
        dn_st(DT, out, row + c, y);
      }
      mean[i] = m;
      rstd[i] = r;
    }
  });
  return DN_OK;
}

dn_status dn_layernorm_backward(dn_dtype dtype, void *dinp, void *dweight, void *dbias,
                                const void *dout, const void *inp, const void *weight,
                                const float *mean, const float *rstd, int64_t N, int64_t C) {
  const char *op = "dn_layernorm_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, N, C);
  DN_CHECK(dout && inp && weight && mean && rstd, DN_ERR_INVALID, "%s: NULL pointer", op);
  dn_dtype gt = dn_grad_dtype(dtype);
  dtype = dn_base_dtype(dtype);
  DN_FOR_DTYPE(dtype, {
    if (dinp) {
      _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)")
      for (int64_t i = 0; i < N; i++) {
        int64_t row = i * C;
        float m = mean[i], r = rstd[i];
        /* dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * w */
        float s1 = 0.0f, s2 = 0.0f;
        for (int64_t c = 0; c < C; c++) {
          float dxhat = dn_ld(DT, dout, row + c) * dn_ld(DT, weight, c);
          s1 += dxhat;
          s2 += dxhat * (dn_ld(DT, inp, row + c) - m) * r;
        }
        s1 /= (float)C;
        s2 /= (float)C;
        for (int64_t c = 0; c < C; c++) {
          float xhat = (dn_ld(DT, inp, row + c) - m) * r;
          float d = r * (dn_ld(DT, dout, row + c) * dn_ld(DT, weight, c) - s1 - xhat * s2);
          dn_st(DT, dinp, row + c, dn_ld(DT, dinp, row + c) + d);
        }
      }
    }
    if (dweight || dbias) {
      const int64_t block = 64;
      int64_t nblocks = (C + block - 1) / block;
      _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)")
      for (int64_t cb = 0; cb < nblocks; cb++) {
        int64_t c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
        float aw[64] = {0}, ab[64] = {0};
        for (int64_t i = 0; i < N; i++) {
          float m = mean[i], r = rstd[i];
          for (int64_t c = c0; c < c1; c++) {
            float g = dn_ld(DT, dout, i * C + c);
            aw[c - c0] += g * (dn_ld(DT, inp, i * C + c) - m) * r;
            ab[c - c0] += g;
          }
        }
        if (dweight) dn_accum_row(gt, dweight, c0, aw, c1 - c0);
        if (dbias) dn_accum_row(gt, dbias, c0, ab, c1 - c0);
      }
    }
  });
  return DN_OK;
}
