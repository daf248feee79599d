/* defines: dn_layernorm_forward, dn_layernorm_backward */
#include <math.h>
#include "common.h"

dn_status dn_layernorm_forward(dn_dtype dtype, void *out, float *mean, float *rstd,
                               const void *inp, const void *weight, const void *bias, int64_t N,
                               int64_t C, float eps) {
  const char *op = "dn_layernorm_forward";
  DN_CHECK_F32(dtype, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive (N=%lld C=%lld)", op,
           (long long)N, (long long)C);
  DN_CHECK(out && mean && rstd && inp && weight && bias, DN_ERR_INVALID, "%s: NULL pointer",
           op);
  DN_CHECK(eps > 0, DN_ERR_INVALID, "%s: eps %g must be positive", op, (double)eps);
  float *o = out;
  const float *x = inp, *w = weight, *b = bias;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)
  for (int64_t i = 0; i < N; i++) {
    const float *xi = x + i * C;
    float m = 0.0f;
    for (int64_t c = 0; c < C; c++) m += xi[c];
    m /= (float)C;
    float var = 0.0f;
    for (int64_t c = 0; c < C; c++) {
      float d = xi[c] - m;
      var += d * d;
    }
    var /= (float)C;
    float r = 1.0f / sqrtf(var + eps);
    float *oi = o + i * C;
    for (int64_t c = 0; c < C; c++) oi[c] = (xi[c] - m) * r * w[c] + b[c];
    mean[i] = m;
    rstd[i] = r;
  }
  return DN_OK;
}

dn_status dn_layernorm_backward(dn_dtype dtype, void *dinp, void *dweight, void *dbias,
                                const void *dout, const void *inp, const void *weight,
                                const float *mean, const float *rstd, int64_t N, int64_t C) {
  const char *op = "dn_layernorm_backward";
  DN_CHECK_F32(dtype, op);
  DN_CHECK(N > 0 && C > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK(dout && inp && weight && mean && rstd, DN_ERR_INVALID, "%s: NULL pointer", op);
  const float *g = dout, *x = inp, *w = weight;
  if (dinp) {
    float *dx = dinp;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)
    for (int64_t i = 0; i < N; i++) {
      const float *gi = g + i * C, *xi = x + i * C;
      float m = mean[i], r = rstd[i];
      /* dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * w */
      float s1 = 0.0f, s2 = 0.0f;
      for (int64_t c = 0; c < C; c++) {
        float dxhat = gi[c] * w[c];
        s1 += dxhat;
        s2 += dxhat * (xi[c] - m) * r;
      }
      s1 /= (float)C;
      s2 /= (float)C;
      float *dxi = dx + i * C;
      for (int64_t c = 0; c < C; c++) {
        float xhat = (xi[c] - m) * r;
        dxi[c] += r * (gi[c] * w[c] - s1 - xhat * s2);
      }
    }
  }
  if (dweight || dbias) {
    float *dw = dweight, *db = dbias;
    const int64_t block = 64;
    int64_t nblocks = (C + block - 1) / block;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (N * C > 65536)
    for (int64_t cb = 0; cb < nblocks; cb++) {
      int64_t c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
      float aw[64] = {0}, ab[64] = {0};
      for (int64_t i = 0; i < N; i++) {
        const float *gi = g + i * C, *xi = x + i * C;
        float m = mean[i], r = rstd[i];
        for (int64_t c = c0; c < c1; c++) {
          aw[c - c0] += gi[c] * (xi[c] - m) * r;
          ab[c - c0] += gi[c];
        }
      }
      for (int64_t c = c0; c < c1; c++) {
        if (dw) dw[c] += aw[c - c0];
        if (db) db[c] += ab[c - c0];
      }
    }
  }
  return DN_OK;
}
