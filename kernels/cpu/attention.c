/* defines: dn_attention_forward, dn_attention_backward
 * Causal multi-head self-attention as one fused op per direction. Forward keeps
 * only the log-sum-exp of each score row; backward recomputes the probabilities
 * from it (the flash-attention idea), so no (T,T) matrix survives between passes.
 * Work is split over (batch, head) pairs: each pair owns its slices of dq, dk, dv,
 * so backward needs no atomics and is deterministic.
 * 16-bit tensors: each (batch, head) slice is widened into per-thread fp32 scratch
 * (T,HS) and the same fp32 code runs on it; gradients are rounded once, at the end. */
#include <math.h>
#include <stdlib.h>
#include "common.h"

static dn_status check_sizes(const char *op, int64_t B, int64_t T, int64_t C, int64_t NH) {
  DN_CHECK(B > 0 && T > 0 && C > 0 && NH > 0, DN_ERR_INVALID,
           "%s: sizes must be positive (B=%lld T=%lld C=%lld NH=%lld)", op, (long long)B,
           (long long)T, (long long)C, (long long)NH);
  DN_CHECK_EXTENT(op, B, T, 3, C);
  DN_CHECK_EXTENT(op, B, NH, T);
  DN_CHECK(C % NH == 0, DN_ERR_INVALID, "%s: C=%lld is not divisible by NH=%lld", op,
           (long long)C, (long long)NH);
  return DN_OK;
}

static inline float dot(const float *a, const float *b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* One head of one sequence. q, k, v rows are rs floats apart; o rows os apart.
 * s(T) is scratch; lse(T) receives each row's log-sum-exp. */
static void forward_head(const float *q0, const float *k0, const float *v0, int64_t rs,
                         float *o0, int64_t os, float *lse, float *s, int64_t T, int64_t HS,
                         float scale) {
  for (int64_t i = 0; i < T; i++) {
    const float *q = q0 + i * rs;
    float mx = -INFINITY;
    for (int64_t j = 0; j <= i; j++) {
      s[j] = dot(q, k0 + j * rs, HS) * scale;
      if (s[j] > mx) mx = s[j];
    }
    float sum = 0.0f;
    for (int64_t j = 0; j <= i; j++) {
      s[j] = dn_expf(s[j] - mx);
      sum += s[j];
    }
    float inv = 1.0f / sum;
    float *oi = o0 + i * os;
    for (int64_t d = 0; d < HS; d++) oi[d] = 0.0f;
    for (int64_t j = 0; j <= i; j++) {
      const float *v = v0 + j * rs;
      float p = s[j] * inv;
#pragma omp simd
      for (int64_t d = 0; d < HS; d++) oi[d] += p * v[d];
    }
    lse[i] = mx + logf(sum);
  }
}

/* Backward of forward_head: dq, dk, dv (rows ds apart) += gradients, given dout and out
 * (rows gs apart). p(T) is scratch. */
static void backward_head(const float *q0, const float *k0, const float *v0, int64_t rs,
                          const float *g0, const float *o0, int64_t gs, float *dq0, float *dk0,
                          float *dv0, int64_t ds, const float *lse, float *p, int64_t T,
                          int64_t HS, float scale) {
  for (int64_t i = 0; i < T; i++) {
    const float *q = q0 + i * rs, *gi = g0 + i * gs, *oi = o0 + i * gs;
    float *dq = dq0 + i * ds;
    float L = lse[i];
    /* D = sum_j p_j (dout . v_j) = dout . out */
    float D = dot(gi, oi, HS);
    for (int64_t j = 0; j <= i; j++) p[j] = dn_expf(dot(q, k0 + j * rs, HS) * scale - L);
    for (int64_t j = 0; j <= i; j++) {
      const float *k = k0 + j * rs, *v = v0 + j * rs;
      float *dk = dk0 + j * ds, *dv = dv0 + j * ds;
      float dsc = p[j] * (dot(gi, v, HS) - D) * scale;
#pragma omp simd
      for (int64_t d = 0; d < HS; d++) {
        dq[d] += dsc * k[d];
        dk[d] += dsc * q[d];
        dv[d] += p[j] * gi[d];
      }
    }
  }
}

/* Widens rows [row0, row0+T) of a (.., ld) tensor, columns [col, col+HS), into dst(T,HS). */
static void widen(dn_dtype dt, float *dst, const void *src, int64_t row0, int64_t ld,
                  int64_t col, int64_t T, int64_t HS) {
  for (int64_t t = 0; t < T; t++) dn_load_row(dt, dst + t * HS, src, (row0 + t) * ld + col, HS);
}

dn_status dn_attention_forward(dn_dtype dtype, void *out, float *lse, const void *qkv, int64_t B,
                               int64_t T, int64_t C, int64_t NH) {
  const char *op = "dn_attention_forward";
  DN_CHECK_FLOAT(dtype, op);
  dn_status st = check_sizes(op, B, T, C, NH);
  if (st != DN_OK) return st;
  DN_CHECK(out && lse && qkv, DN_ERR_INVALID, "%s: NULL pointer", op);
  dtype = dn_base_dtype(dtype);
  int64_t HS = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)HS);
  int wide = dtype != DN_F32, nt = dn_threads;
  /* Per thread: a score row (T), and for 16-bit q, k, v, o slices (T,HS) each. */
  int64_t per = T + (wide ? 4 * T * HS : 0);
  float *scratch = malloc(sizeof(float) * (size_t)(per * nt));
  DN_CHECK(scratch, DN_ERR_OOM, "%s: out of memory for scratch (T=%lld)", op, (long long)T);
#pragma omp parallel for num_threads(nt) schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < NH; h++) {
      float *s = scratch + (int64_t)dn_thread_index() * per;
      float *l = lse + (b * NH + h) * T;
      if (!wide) {
        const float *q = (const float *)qkv + b * T * C3 + h * HS;
        forward_head(q, q + C, q + 2 * C, C3, (float *)out + b * T * C + h * HS, C, l, s, T, HS,
                     scale);
        continue;
      }
      float *q = s + T, *k = q + T * HS, *v = k + T * HS, *o = v + T * HS;
      widen(dtype, q, qkv, b * T, C3, h * HS, T, HS);
      widen(dtype, k, qkv, b * T, C3, C + h * HS, T, HS);
      widen(dtype, v, qkv, b * T, C3, 2 * C + h * HS, T, HS);
      forward_head(q, k, v, HS, o, HS, l, s, T, HS, scale);
      for (int64_t t = 0; t < T; t++) dn_store_row(dtype, out, (b * T + t) * C + h * HS, o + t * HS, HS);
    }
  }
  free(scratch);
  return DN_OK;
}

dn_status dn_attention_backward(dn_dtype dtype, void *dqkv, const void *dout, const void *qkv,
                                const void *out, const float *lse, int64_t B, int64_t T,
                                int64_t C, int64_t NH) {
  const char *op = "dn_attention_backward";
  DN_CHECK_FLOAT(dtype, op);
  dn_status st = check_sizes(op, B, T, C, NH);
  if (st != DN_OK) return st;
  DN_CHECK(dqkv && dout && qkv && out && lse, DN_ERR_INVALID, "%s: NULL pointer", op);
  dtype = dn_base_dtype(dtype);
  int64_t HS = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)HS);
  int wide = dtype != DN_F32, nt = dn_threads;
  /* Per thread: a probability row (T), and for 16-bit q, k, v, dout, out, dq, dk, dv. */
  int64_t per = T + (wide ? 8 * T * HS : 0);
  float *scratch = malloc(sizeof(float) * (size_t)(per * nt));
  DN_CHECK(scratch, DN_ERR_OOM, "%s: out of memory for scratch (T=%lld)", op, (long long)T);
#pragma omp parallel for num_threads(nt) schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < NH; h++) {
      float *p = scratch + (int64_t)dn_thread_index() * per;
      const float *l = lse + (b * NH + h) * T;
      if (!wide) {
        const float *q = (const float *)qkv + b * T * C3 + h * HS;
        float *dq = (float *)dqkv + b * T * C3 + h * HS;
        int64_t go = b * T * C + h * HS;
        backward_head(q, q + C, q + 2 * C, C3, (const float *)dout + go, (const float *)out + go,
                      C, dq, dq + C, dq + 2 * C, C3, l, p, T, HS, scale);
        continue;
      }
      int64_t n = T * HS;
      float *q = p + T, *k = q + n, *v = k + n, *g = v + n, *o = g + n;
      float *dq = o + n, *dk = dq + n, *dv = dk + n;
      widen(dtype, q, qkv, b * T, C3, h * HS, T, HS);
      widen(dtype, k, qkv, b * T, C3, C + h * HS, T, HS);
      widen(dtype, v, qkv, b * T, C3, 2 * C + h * HS, T, HS);
      widen(dtype, g, dout, b * T, C, h * HS, T, HS);
      widen(dtype, o, out, b * T, C, h * HS, T, HS);
      for (int64_t i = 0; i < 3 * n; i++) dq[i] = 0.0f;
      backward_head(q, k, v, HS, g, o, HS, dq, dk, dv, HS, l, p, T, HS, scale);
      for (int64_t t = 0; t < T; t++) {
        int64_t row = (b * T + t) * C3 + h * HS;
        dn_accum_row(dtype, dqkv, row, dq + t * HS, HS);
        dn_accum_row(dtype, dqkv, row + C, dk + t * HS, HS);
        dn_accum_row(dtype, dqkv, row + 2 * C, dv + t * HS, HS);
      }
    }
  }
  free(scratch);
  return DN_OK;
}
