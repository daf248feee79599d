/* defines: dn_rope_forward, dn_rope_backward, dn_rope_positions_forward,
 *          dn_rope_positions_backward (each token its own position: packed documents)
 * Rotary position embedding, "rotate half" (Hugging Face Llama, Megatron's default): in
 * each Q and K head of size HS, the pair (j, j + HS/2) of token t turns by the angle
 * (pos0 + t) * inv_freq[j]. The angle and its sine and cosine are computed in double and
 * rounded once to fp32: an fp32 product pos * inv_freq alone is off by pos * 2^-24 rad,
 * which at position 10^5 is already 0.006 rad. One token's HS/2 sines and cosines serve
 * all its heads and every batch row, so threads own tokens: measured on one thread at
 * 2x256 tokens of 48 heads of 128, the sines and cosines are ~7% of the call, so no table
 * is cached between calls. */
#include <math.h>
#include <stdlib.h>

#include "common.h"
#include "../shared/rope_check.h"

/* One kernel for both directions: dir = +1 rotates by +angle (forward), dir = -1 by
 * -angle (backward, the transpose). Rows of Q and K heads are rotated, V passes through;
 * dst = that (accumulate 0) or dst += that (accumulate 1). */
static dn_status rope_apply(const char *op, dn_dtype dtype, void *dst, const void *src,
                            const float *inv_freq, const int32_t *positions, int64_t B,
                            int64_t T, int64_t NH, int64_t NKV, int64_t HS, int64_t pos0,
                            float dir, int accumulate) {
  const int64_t half = HS / 2, width = (NH + 2 * NKV) * HS, rotated = (NH + NKV) * HS;
  /* (threads, 2, half): each thread's cosines then sines */
  float *scratch = malloc((size_t)dn_threads * 2 * (size_t)half * sizeof(float));
  DN_CHECK(scratch != NULL, DN_ERR_OOM, "%s: no host memory for %lld sines and cosines", op,
           (long long)(2 * half * dn_threads));
  DN_FOR_DTYPE(dtype, {
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (B * T * width > 32768)")
    for (int64_t t = 0; t < T; t++) {
      float *cs = scratch + (size_t)dn_thread_index() * 2 * (size_t)half, *sn = cs + half;
      int64_t last = -1; /* the position cs and sn hold */
      for (int64_t b = 0; b < B; b++) {
        int64_t at = positions ? (int64_t)positions[b * T + t] : pos0 + t;
        if (at != last) {
          double pos = (double)at;
          for (int64_t j = 0; j < half; j++) {
            double a = pos * (double)inv_freq[j];
            cs[j] = (float)cos(a);
            sn[j] = dir * (float)sin(a);
          }
          last = at;
        }
        int64_t row = (b * T + t) * width;
        for (int64_t h = 0; h < rotated; h += HS) {
          int64_t k = row + h;
          _Pragma("omp simd")
          for (int64_t j = 0; j < half; j++) {
            float x1 = dn_ld(DT, src, k + j), x2 = dn_ld(DT, src, k + j + half);
            float y1 = x1 * cs[j] - x2 * sn[j], y2 = x2 * cs[j] + x1 * sn[j];
            if (accumulate) {
              y1 += dn_ld(DT, dst, k + j);
              y2 += dn_ld(DT, dst, k + j + half);
            }
            dn_st(DT, dst, k + j, y1);
            dn_st(DT, dst, k + j + half, y2);
          }
        }
        _Pragma("omp simd")
        for (int64_t c = row + rotated; c < row + width; c++)
          dn_st(DT, dst, c, dn_ld(DT, src, c) + (accumulate ? dn_ld(DT, dst, c) : 0.0f));
      }
    }
  });
  free(scratch);
  return DN_OK;
}

dn_status dn_rope_forward(dn_dtype dtype, void *out, const void *qkv, const float *inv_freq,
                          int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                          int64_t pos0) {
  const char *op = "dn_rope_forward";
  dn_status st = dn_rope_check(op, dtype, inv_freq, B, T, NH, NKV, HS, pos0);
  if (st != DN_OK) return st;
  DN_CHECK_PTR(out, op);
  DN_CHECK_PTR(qkv, op);
  DN_CHECK(out != qkv, DN_ERR_INVALID, "%s: out and qkv must be different buffers", op);
  return rope_apply(op, dn_base_dtype(dtype), out, qkv, inv_freq, NULL, B, T, NH, NKV, HS, pos0,
                    1.0f, 0);
}

dn_status dn_rope_backward(dn_dtype dtype, void *dqkv, const void *dout, const float *inv_freq,
                           int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                           int64_t pos0, int32_t accumulate) {
  const char *op = "dn_rope_backward";
  dn_status st = dn_rope_check(op, dtype, inv_freq, B, T, NH, NKV, HS, pos0);
  if (st != DN_OK) return st;
  DN_CHECK_PTR(dqkv, op);
  DN_CHECK_PTR(dout, op);
  DN_CHECK(dqkv != dout, DN_ERR_INVALID, "%s: dqkv and dout must be different buffers", op);
  return rope_apply(op, dn_base_dtype(dtype), dqkv, dout, inv_freq, NULL, B, T, NH, NKV, HS, pos0,
                    -1.0f, accumulate != 0);
}

/* positions(B,T): each in [0, 2^31). */
static dn_status check_positions(const char *op, const int32_t *positions, int64_t n) {
  DN_CHECK_PTR(positions, op);
  for (int64_t i = 0; i < n; i++)
    DN_CHECK(positions[i] >= 0, DN_ERR_INVALID, "%s: position %d at flat index %lld is negative",
             op, (int)positions[i], (long long)i);
  return DN_OK;
}

dn_status dn_rope_positions_forward(dn_dtype dtype, void *out, const void *qkv,
                                    const float *inv_freq, const int32_t *positions, int64_t B,
                                    int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
  const char *op = "dn_rope_positions_forward";
  dn_status st = dn_rope_check(op, dtype, inv_freq, B, T, NH, NKV, HS, 0);
  if (st != DN_OK || (st = check_positions(op, positions, B * T)) != DN_OK) return st;
  DN_CHECK_PTR(out, op);
  DN_CHECK_PTR(qkv, op);
  DN_CHECK(out != qkv, DN_ERR_INVALID, "%s: out and qkv must be different buffers", op);
  return rope_apply(op, dn_base_dtype(dtype), out, qkv, inv_freq, positions, B, T, NH, NKV, HS,
                    0, 1.0f, 0);
}

dn_status dn_rope_positions_backward(dn_dtype dtype, void *dqkv, const void *dout,
                                     const float *inv_freq, const int32_t *positions, int64_t B,
                                     int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                                     int32_t accumulate) {
  const char *op = "dn_rope_positions_backward";
  dn_status st = dn_rope_check(op, dtype, inv_freq, B, T, NH, NKV, HS, 0);
  if (st != DN_OK || (st = check_positions(op, positions, B * T)) != DN_OK) return st;
  DN_CHECK_PTR(dqkv, op);
  DN_CHECK_PTR(dout, op);
  DN_CHECK(dqkv != dout, DN_ERR_INVALID, "%s: dqkv and dout must be different buffers", op);
  return rope_apply(op, dn_base_dtype(dtype), dqkv, dout, inv_freq, positions, B, T, NH, NKV,
                    HS, 0, -1.0f, accumulate != 0);
}
