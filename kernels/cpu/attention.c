/* defines: dn_attention_forward, dn_attention_backward
 * Causal multi-head self-attention as one fused op per direction. Forward keeps
 * only the log-sum-exp of each score row; backward recomputes the probabilities
 * from it (the flash-attention idea), so no (T,T) matrix survives between passes.
 * Work is split over (batch, head) pairs: each pair owns its slices of dq, dk, dv,
 * so backward needs no atomics and is deterministic. */
#include <math.h>
#include <stdlib.h>
#include "common.h"

#define DN_ATTN_STACK_T 4096

static dn_status check_sizes(const char *op, int64_t B, int64_t T, int64_t C, int64_t NH) {
  DN_CHECK(B > 0 && T > 0 && C > 0 && NH > 0, DN_ERR_INVALID,
           "%s: sizes must be positive (B=%lld T=%lld C=%lld NH=%lld)", op, (long long)B,
           (long long)T, (long long)C, (long long)NH);
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

dn_status dn_attention_forward(dn_dtype dtype, void *out, float *lse, const void *qkv, int64_t B,
                               int64_t T, int64_t C, int64_t NH) {
  const char *op = "dn_attention_forward";
  DN_CHECK_F32(dtype, op);
  dn_status st = check_sizes(op, B, T, C, NH);
  if (st != DN_OK) return st;
  DN_CHECK(out && lse && qkv, DN_ERR_INVALID, "%s: NULL pointer", op);
  const float *x = qkv;
  float *o = out;
  int64_t HS = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)HS);
  int failed = 0;
#pragma omp parallel num_threads(dn_threads)
  {
    /* One row of scores (T). On the stack for ordinary lengths: a malloc inside the
     * worker threads would grow glibc's per-thread arenas. */
    float stack_row[DN_ATTN_STACK_T];
    float *s = T <= DN_ATTN_STACK_T ? stack_row : malloc(sizeof(float) * (size_t)T);
    if (!s) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic) collapse(2)
    for (int64_t b = 0; b < B; b++) {
      for (int64_t h = 0; h < NH; h++) {
        if (!s) continue;
        for (int64_t i = 0; i < T; i++) {
          const float *q = x + (b * T + i) * C3 + h * HS;
          float mx = -INFINITY;
          for (int64_t j = 0; j <= i; j++) {
            const float *k = x + (b * T + j) * C3 + C + h * HS;
            s[j] = dot(q, k, HS) * scale;
            if (s[j] > mx) mx = s[j];
          }
          float sum = 0.0f;
          for (int64_t j = 0; j <= i; j++) {
            s[j] = dn_expf(s[j] - mx);
            sum += s[j];
          }
          float inv = 1.0f / sum;
          float *oi = o + (b * T + i) * C + h * HS;
          for (int64_t d = 0; d < HS; d++) oi[d] = 0.0f;
          for (int64_t j = 0; j <= i; j++) {
            const float *v = x + (b * T + j) * C3 + 2 * C + h * HS;
            float p = s[j] * inv;
#pragma omp simd
            for (int64_t d = 0; d < HS; d++) oi[d] += p * v[d];
          }
          lse[(b * NH + h) * T + i] = mx + logf(sum);
        }
      }
    }
    if (s != stack_row) free(s);
  }
  DN_CHECK(!failed, DN_ERR_OOM, "%s: out of memory for a (T=%lld) score row", op, (long long)T);
  return DN_OK;
}

dn_status dn_attention_backward(dn_dtype dtype, void *dqkv, const void *dout, const void *qkv,
                                const void *out, const float *lse, int64_t B, int64_t T,
                                int64_t C, int64_t NH) {
  const char *op = "dn_attention_backward";
  DN_CHECK_F32(dtype, op);
  dn_status st = check_sizes(op, B, T, C, NH);
  if (st != DN_OK) return st;
  DN_CHECK(dqkv && dout && qkv && out && lse, DN_ERR_INVALID, "%s: NULL pointer", op);
  const float *x = qkv, *g = dout, *o = out;
  float *dx = dqkv;
  int64_t HS = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)HS);
  int failed = 0;
#pragma omp parallel num_threads(dn_threads)
  {
    float stack_row[DN_ATTN_STACK_T];
    float *p = T <= DN_ATTN_STACK_T ? stack_row : malloc(sizeof(float) * (size_t)T); /* (T) */
    if (!p) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic) collapse(2)
    for (int64_t b = 0; b < B; b++) {
      for (int64_t h = 0; h < NH; h++) {
        if (!p) continue;
        for (int64_t i = 0; i < T; i++) {
          const float *q = x + (b * T + i) * C3 + h * HS;
          const float *gi = g + (b * T + i) * C + h * HS;
          const float *oi = o + (b * T + i) * C + h * HS;
          float *dq = dx + (b * T + i) * C3 + h * HS;
          float L = lse[(b * NH + h) * T + i];
          /* D = sum_j p_j (dout . v_j) = dout . out */
          float D = dot(gi, oi, HS);
          for (int64_t j = 0; j <= i; j++) {
            const float *k = x + (b * T + j) * C3 + C + h * HS;
            p[j] = dn_expf(dot(q, k, HS) * scale - L);
          }
          for (int64_t j = 0; j <= i; j++) {
            const float *k = x + (b * T + j) * C3 + C + h * HS;
            const float *v = x + (b * T + j) * C3 + 2 * C + h * HS;
            float *dk = dx + (b * T + j) * C3 + C + h * HS;
            float *dv = dx + (b * T + j) * C3 + 2 * C + h * HS;
            float ds = p[j] * (dot(gi, v, HS) - D) * scale;
#pragma omp simd
            for (int64_t d = 0; d < HS; d++) {
              dq[d] += ds * k[d];
              dk[d] += ds * q[d];
              dv[d] += p[j] * gi[d];
            }
          }
        }
      }
    }
    if (p != stack_row) free(p);
  }
  DN_CHECK(!failed, DN_ERR_OOM, "%s: out of memory for a (T=%lld) row", op, (long long)T);
  return DN_OK;
}
