/* defines: dn_rope_forward, dn_rope_backward, dn_rope_positions_forward,
 *          dn_rope_positions_backward (opt-in: DENOTRON_CUDA_SPANS=1)
 * Rotary position embedding, "rotate half", with the CPU's semantics: the angle
 * (pos0 + t) * inv_freq[j] and its sine and cosine in double, rounded once to fp32, then
 * the pair (j, j + HS/2) of every query and key head turned in fp32; value heads copied.
 * One thread per (token, j) walks all heads of its token, so each double sincos serves
 * NH + NKV rotations, and the threads of a warp touch adjacent j (coalesced).
 *
 * The _positions variants take each token's position from positions(B,T) in place of
 * pos0 + t (packed documents restart at 0), through the same kernel. The positions stay on
 * the device unchecked (the CPU library refuses a negative one); a negative position is
 * read as 0, so it leaves its token unrotated. Any position only changes an angle, never an
 * address. Like the attention over spans, which packed and padded sequences need with
 * them, they are opt-in (DENOTRON_CUDA_SPANS=1) until the GPU check has run them; without
 * the variable they refuse with DN_ERR_UNSUPPORTED. */
#include "common.cuh"

#include "../shared/rope_check.h"

/* dst, src (B*T, (NH+2*NKV)*HS); inv_freq(HS/2); positions(B*T) or NULL.
 * Token bt sits at positions[bt] (a negative one read as 0) or, when positions is NULL,
 * at pos0 + bt % T_. dir = +1: dst = rotate(src, +a) (forward); dir = -1: rotate back by
 * -a (backward). accumulate: dst += that instead of dst = that. */
template <typename T>
__global__ void rope_k(T *dst, const T *src, const float *inv_freq, const int32_t *positions,
                       int64_t BT, int64_t T_, int64_t NH, int64_t NKV, int64_t HS, int64_t pos0,
                       float dir, int32_t accumulate) {
  const int64_t half = HS / 2, width = (NH + 2 * NKV) * HS, rotated = (NH + NKV) * HS;
  DN_GRID_LOOP(k, BT * half) {
    int64_t bt = k / half, j = k % half, row = bt * width;
    int64_t at = positions ? (positions[bt] > 0 ? positions[bt] : 0) : pos0 + bt % T_;
    double s, c;
    sincos((double)at * (double)inv_freq[j], &s, &c);
    float cs = (float)c, sn = dir * (float)s;
    for (int64_t h = row; h < row + rotated; h += HS) {
      float x1 = ldf(src, h + j), x2 = ldf(src, h + j + half);
      float y1 = x1 * cs - x2 * sn, y2 = x2 * cs + x1 * sn;
      if (accumulate) {
        y1 += ldf(dst, h + j);
        y2 += ldf(dst, h + j + half);
      }
      stf(dst, h + j, y1);
      stf(dst, h + j + half, y2);
    }
    for (int64_t h = row + rotated; h < row + width; h += HS) {
      for (int64_t e = h + j; e < h + HS; e += half)
        stf(dst, e, ldf(src, e) + (accumulate ? ldf(dst, e) : 0.0f));
    }
  }
}

static dn_status rope_launch(const char *op, dn_dtype dtype, void *dst, const void *src,
                             const float *inv_freq, const int32_t *positions, int64_t B,
                             int64_t T, int64_t NH, int64_t NKV, int64_t HS, int64_t pos0,
                             float dir, int32_t accumulate) {
  DN_TRY(dn_cuda_init(op));
  int64_t threads = B * T * (HS / 2);
  DN_DISPATCH(dn_base_dtype(dtype), E,
              rope_k<E><<<dn_blocks(threads, 256), 256, 0, dn_stream()>>>(
                  (E *)dst, (const E *)src, inv_freq, positions, B * T, T, NH, NKV, HS, pos0,
                  dir, accumulate););
  DN_LAUNCHED(op);
  return DN_OK;
}

dn_status dn_rope_forward(dn_dtype dtype, void *out, const void *qkv, const float *inv_freq,
                          int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                          int64_t pos0) {
  const char *op = "dn_rope_forward";
  DN_TRY(dn_rope_check(op, dtype, inv_freq, B, T, NH, NKV, HS, pos0));
  DN_CHECK_PTR(out, op);
  DN_CHECK_PTR(qkv, op);
  DN_CHECK(out != qkv, DN_ERR_INVALID, "%s: out and qkv must be different buffers", op);
  return rope_launch(op, dtype, out, qkv, inv_freq, nullptr, B, T, NH, NKV, HS, pos0, 1.0f,
                     0);
}

dn_status dn_rope_backward(dn_dtype dtype, void *dqkv, const void *dout, const float *inv_freq,
                           int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                           int64_t pos0, int32_t accumulate) {
  const char *op = "dn_rope_backward";
  DN_TRY(dn_rope_check(op, dtype, inv_freq, B, T, NH, NKV, HS, pos0));
  DN_CHECK_PTR(dqkv, op);
  DN_CHECK_PTR(dout, op);
  DN_CHECK(dqkv != dout, DN_ERR_INVALID, "%s: dqkv and dout must be different buffers", op);
  return rope_launch(op, dtype, dqkv, dout, inv_freq, nullptr, B, T, NH, NKV, HS, pos0, -1.0f,
                     accumulate != 0);
}

/* The opt-in is checked first, so the refusal needs no GPU; then the CPU's checks, less
 * the sign of each position (read on the device, see rope_k). */
static dn_status positions_check(const char *op, dn_dtype dtype, const float *inv_freq,
                                 const int32_t *positions, int64_t B, int64_t T, int64_t NH,
                                 int64_t NKV, int64_t HS) {
  DN_TRY(dn_spans_allowed(op, "rotary embedding with per-token positions (packed documents)"));
  DN_TRY(dn_rope_check(op, dtype, inv_freq, B, T, NH, NKV, HS, 0));
  DN_CHECK_PTR(positions, op);
  return DN_OK;
}

dn_status dn_rope_positions_forward(dn_dtype dtype, void *out, const void *qkv,
                                    const float *inv_freq, const int32_t *positions, int64_t B,
                                    int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
  const char *op = "dn_rope_positions_forward";
  DN_TRY(positions_check(op, dtype, inv_freq, positions, B, T, NH, NKV, HS));
  DN_CHECK_PTR(out, op);
  DN_CHECK_PTR(qkv, op);
  DN_CHECK(out != qkv, DN_ERR_INVALID, "%s: out and qkv must be different buffers", op);
  return rope_launch(op, dtype, out, qkv, inv_freq, positions, B, T, NH, NKV, HS, 0, 1.0f, 0);
}

dn_status dn_rope_positions_backward(dn_dtype dtype, void *dqkv, const void *dout,
                                     const float *inv_freq, const int32_t *positions, int64_t B,
                                     int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                                     int32_t accumulate) {
  const char *op = "dn_rope_positions_backward";
  DN_TRY(positions_check(op, dtype, inv_freq, positions, B, T, NH, NKV, HS));
  DN_CHECK_PTR(dqkv, op);
  DN_CHECK_PTR(dout, op);
  DN_CHECK(dqkv != dout, DN_ERR_INVALID, "%s: dqkv and dout must be different buffers", op);
  return rope_launch(op, dtype, dqkv, dout, inv_freq, positions, B, T, NH, NKV, HS, 0, -1.0f,
                     accumulate != 0);
}
