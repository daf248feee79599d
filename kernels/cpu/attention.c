/* defines: dn_attention_forward, dn_attention_backward, dn_attention_spans_forward,
 *          dn_attention_spans_backward
 * Causal self-attention with grouped key/value heads (GQA: MHA when NKV = NH, MQA when
 * NKV = 1) as one fused op per direction. Query head h reads key/value head h / (NH/NKV)
 * in place: repeated keys and values are never formed. Forward keeps only the
 * log-sum-exp of each score row; backward recomputes the probabilities from it (the
 * flash-attention idea), so no (T,T) matrix survives between passes.
 * Forward splits the work over (batch, query head) pairs. Backward splits it over (batch,
 * key/value head) pairs and walks the group's query heads in order inside one: each pair
 * owns its slices of dq, dk, dv, so backward needs no atomics and is deterministic, and
 * the gradient of a shared key/value head is summed over its group in a fixed order.
 * 16-bit tensors: each slice is widened into per-thread fp32 scratch (T,HS) and the same
 * fp32 code runs on it; gradients are rounded once, at the end.
 * The _spans variants give each query its own key range [lo, hi) (packed documents: the
 * document's start to the query; a padding mask: the valid tokens, causal or not); the
 * plain ones are the causal range [0, i], and the same code. */
#include <math.h>
#include <stdlib.h>
#include "../shared/attention.h"
#include "common.h"

static inline float dot(const float *a, const float *b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* The keys query i reads: [lo, hi) from spans(T,2), or causal [0, i] without spans. */
#define SPAN(spans, i, lo, hi)                                  \
  int64_t lo = (spans) ? (spans)[2 * (i)] : 0;                  \
  int64_t hi = (spans) ? (spans)[2 * (i) + 1] : (i) + 1

/* One head of one sequence. q, k, v rows are rs floats apart; o rows os apart.
 * s(T) is scratch; lse(T) receives each row's log-sum-exp (0 for a query that reads no
 * key, whose output is 0). spans(T,2) or NULL: see SPAN. */
static void forward_head(const float *q0, const float *k0, const float *v0, int64_t rs,
                         float *o0, int64_t os, float *lse, float *s, int64_t T, int64_t HS,
                         float scale, const int32_t *spans) {
  for (int64_t i = 0; i < T; i++) {
    const float *q = q0 + i * rs;
    float *oi = o0 + i * os;
    SPAN(spans, i, lo, hi);
    if (lo >= hi) {
      for (int64_t d = 0; d < HS; d++) oi[d] = 0.0f;
      lse[i] = 0.0f;
      continue;
    }
    float mx = -INFINITY;
    for (int64_t j = lo; j < hi; j++) {
      s[j] = dot(q, k0 + j * rs, HS) * scale;
      if (s[j] > mx) mx = s[j];
    }
    float sum = 0.0f;
    for (int64_t j = lo; j < hi; j++) {
      s[j] = dn_expf(s[j] - mx);
      sum += s[j];
    }
    float inv = 1.0f / sum;
    for (int64_t d = 0; d < HS; d++) oi[d] = 0.0f;
    for (int64_t j = lo; j < hi; j++) {
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
                          int64_t HS, float scale, const int32_t *spans) {
  for (int64_t i = 0; i < T; i++) {
    const float *q = q0 + i * rs, *gi = g0 + i * gs, *oi = o0 + i * gs;
    float *dq = dq0 + i * ds;
    SPAN(spans, i, lo, hi);
    float L = lse[i];
    /* D = sum_j p_j (dout . v_j) = dout . out */
    float D = dot(gi, oi, HS);
    for (int64_t j = lo; j < hi; j++) p[j] = dot(q, k0 + j * rs, HS) * scale - L;
    /* the exponentials in a loop of their own, which vectorises */
#pragma omp simd
    for (int64_t j = lo; j < hi; j++) p[j] = dn_expf(p[j]);
    for (int64_t j = lo; j < hi; j++) {
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

static dn_status forward(const char *op, dn_dtype dtype, void *out, float *lse, const void *qkv,
                         const int32_t *spans, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                         int64_t HS) {
  DN_CHECK_FLOAT(dtype, op);
  dn_status st = dn_attention_check(op, B, T, NH, NKV, HS);
  if (st != DN_OK) return st;
  if (spans && (st = dn_attention_spans_check(op, spans, B, T)) != DN_OK) return st;
  DN_CHECK(out && lse && qkv, DN_ERR_INVALID, "%s: NULL pointer", op);
  dtype = dn_base_dtype(dtype);
  struct dn_qkv_layout cols = dn_qkv_layout_of(NH, NKV, HS);
  int64_t W = cols.W, C = cols.C;
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
      const int32_t *sp = spans ? spans + 2 * b * T : NULL;
      int64_t qc = h * HS, kc = cols.K + (h / cols.G) * HS, vc = cols.V + (h / cols.G) * HS;
      if (!wide) {
        const float *x = (const float *)qkv + b * T * W;
        forward_head(x + qc, x + kc, x + vc, W, (float *)out + b * T * C + h * HS, C, l, s, T,
                     HS, scale, sp);
        continue;
      }
      float *q = s + T, *k = q + T * HS, *v = k + T * HS, *o = v + T * HS;
      widen(dtype, q, qkv, b * T, W, qc, T, HS);
      widen(dtype, k, qkv, b * T, W, kc, T, HS);
      widen(dtype, v, qkv, b * T, W, vc, T, HS);
      forward_head(q, k, v, HS, o, HS, l, s, T, HS, scale, sp);
      for (int64_t t = 0; t < T; t++) dn_store_row(dtype, out, (b * T + t) * C + h * HS, o + t * HS, HS);
    }
  }
  free(scratch);
  return DN_OK;
}

static dn_status backward(const char *op, dn_dtype dtype, void *dqkv, const void *dout,
                          const void *qkv, const void *out, const float *lse,
                          const int32_t *spans, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                          int64_t HS) {
  DN_CHECK_FLOAT(dtype, op);
  dn_status st = dn_attention_check(op, B, T, NH, NKV, HS);
  if (st != DN_OK) return st;
  if (spans && (st = dn_attention_spans_check(op, spans, B, T)) != DN_OK) return st;
  DN_CHECK(dqkv && dout && qkv && out && lse, DN_ERR_INVALID, "%s: NULL pointer", op);
  dtype = dn_base_dtype(dtype);
  struct dn_qkv_layout cols = dn_qkv_layout_of(NH, NKV, HS);
  int64_t W = cols.W, C = cols.C;
  float scale = 1.0f / sqrtf((float)HS);
  int wide = dtype != DN_F32, nt = dn_threads;
  /* Per thread: a probability row (T), and for 16-bit q, k, v, dout, out, dq, dk, dv. */
  int64_t per = T + (wide ? 8 * T * HS : 0);
  float *scratch = malloc(sizeof(float) * (size_t)(per * nt));
  DN_CHECK(scratch, DN_ERR_OOM, "%s: out of memory for scratch (T=%lld)", op, (long long)T);
#pragma omp parallel for num_threads(nt) schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t kv = 0; kv < NKV; kv++) {
      float *p = scratch + (int64_t)dn_thread_index() * per;
      int64_t kc = cols.K + kv * HS, vc = cols.V + kv * HS;
      const int32_t *sp = spans ? spans + 2 * b * T : NULL;
      if (!wide) {
        const float *x = (const float *)qkv + b * T * W;
        float *dx = (float *)dqkv + b * T * W;
        for (int64_t h = kv * cols.G; h < (kv + 1) * cols.G; h++) {
          int64_t go = b * T * C + h * HS;
          backward_head(x + h * HS, x + kc, x + vc, W, (const float *)dout + go,
                        (const float *)out + go, C, dx + h * HS, dx + kc, dx + vc, W,
                        lse + (b * NH + h) * T, p, T, HS, scale, sp);
        }
        continue;
      }
      int64_t n = T * HS;
      float *q = p + T, *k = q + n, *v = k + n, *g = v + n, *o = g + n;
      float *dq = o + n, *dk = dq + n, *dv = dk + n;
      widen(dtype, k, qkv, b * T, W, kc, T, HS);
      widen(dtype, v, qkv, b * T, W, vc, T, HS);
      for (int64_t i = 0; i < 2 * n; i++) dk[i] = 0.0f;
      /* dk and dv gather the whole group in fp32 and are rounded once, after it */
      for (int64_t h = kv * cols.G; h < (kv + 1) * cols.G; h++) {
        widen(dtype, q, qkv, b * T, W, h * HS, T, HS);
        widen(dtype, g, dout, b * T, C, h * HS, T, HS);
        widen(dtype, o, out, b * T, C, h * HS, T, HS);
        for (int64_t i = 0; i < n; i++) dq[i] = 0.0f;
        backward_head(q, k, v, HS, g, o, HS, dq, dk, dv, HS, lse + (b * NH + h) * T, p, T, HS,
                      scale, sp);
        for (int64_t t = 0; t < T; t++)
          dn_accum_row(dtype, dqkv, (b * T + t) * W + h * HS, dq + t * HS, HS);
      }
      for (int64_t t = 0; t < T; t++) {
        dn_accum_row(dtype, dqkv, (b * T + t) * W + kc, dk + t * HS, HS);
        dn_accum_row(dtype, dqkv, (b * T + t) * W + vc, dv + t * HS, HS);
      }
    }
  }
  free(scratch);
  return DN_OK;
}

dn_status dn_attention_forward(dn_dtype dtype, void *out, float *lse, const void *qkv, int64_t B,
                               int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
  return forward("dn_attention_forward", dtype, out, lse, qkv, NULL, B, T, NH, NKV, HS);
}

dn_status dn_attention_backward(dn_dtype dtype, void *dqkv, const void *dout, const void *qkv,
                                const void *out, const float *lse, int64_t B, int64_t T,
                                int64_t NH, int64_t NKV, int64_t HS) {
  return backward("dn_attention_backward", dtype, dqkv, dout, qkv, out, lse, NULL, B, T, NH, NKV,
                  HS);
}

dn_status dn_attention_spans_forward(dn_dtype dtype, void *out, float *lse, const void *qkv,
                                     const int32_t *spans, int64_t B, int64_t T, int64_t NH,
                                     int64_t NKV, int64_t HS) {
  const char *op = "dn_attention_spans_forward";
  DN_CHECK(spans, DN_ERR_INVALID, "%s: NULL spans", op);
  return forward(op, dtype, out, lse, qkv, spans, B, T, NH, NKV, HS);
}

dn_status dn_attention_spans_backward(dn_dtype dtype, void *dqkv, const void *dout,
                                      const void *qkv, const void *out, const float *lse,
                                      const int32_t *spans, int64_t B, int64_t T, int64_t NH,
                                      int64_t NKV, int64_t HS) {
  const char *op = "dn_attention_spans_backward";
  DN_CHECK(spans, DN_ERR_INVALID, "%s: NULL spans", op);
  return backward(op, dtype, dqkv, dout, qkv, out, lse, spans, B, T, NH, NKV, HS);
}
