/* defines: dn_kv_append, dn_attention_decode
 * Incremental decoding: the keys and values of past positions stay in per-layer
 * caches (B,maxT,NKV*HS) that hold only the key/value heads (NH/NKV times fewer than the
 * query heads in a grouped-query model), so each new token costs one row of attention
 * instead of a whole (T,T) pass. The arithmetic follows dn_attention_forward step for
 * step (same dot product, same max-shifted exponentials, same accumulation order), so
 * cached logits match the full forward's to rounding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../shared/attention.h"
#include "common.h"

dn_status dn_kv_append(dn_dtype dtype, void *k_cache, void *v_cache, const void *qkv, int64_t B,
                       int64_t Tn, int64_t NH, int64_t NKV, int64_t HS, int64_t max_T,
                       int64_t pos) {
  const char *op = "dn_kv_append";
  DN_CHECK_FLOAT(dtype, op);
  dn_status st = dn_kv_cache_check(op, B, Tn, NH, NKV, HS, max_T, pos);
  if (st != DN_OK) return st;
  DN_CHECK(k_cache && v_cache && qkv, DN_ERR_INVALID, "%s: NULL pointer", op);
  struct dn_qkv_layout cols = dn_qkv_layout_of(NH, NKV, HS);
  int64_t KV = NKV * HS; /* a cache row */
  size_t es = dn_base_dtype(dtype) == DN_F32 ? 4 : 2; /* the cache keeps the model's dtype */
  const char *x = qkv;
  char *kc = k_cache, *vc = v_cache;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (B * Tn * KV > 65536)
  for (int64_t bt = 0; bt < B * Tn; bt++) {
    int64_t b = bt / Tn, t = bt % Tn;
    const char *row = x + (size_t)(bt * cols.W) * es; /* q | k | v */
    size_t dst = (size_t)((b * max_T + pos + t) * KV) * es;
    memcpy(kc + dst, row + (size_t)cols.K * es, es * (size_t)KV);
    memcpy(vc + dst, row + (size_t)cols.V * es, es * (size_t)KV);
  }
  return DN_OK;
}

/* q(n) . row [off, off+n) of a dt tensor */
static inline float dot_ld(dn_dtype dt, const float *q, const void *k, int64_t off, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += q[i] * dn_ld(dt, k, off + i);
  return s;
}

dn_status dn_attention_decode(dn_dtype dtype, void *out, const void *qkv, const void *k_cache,
                              const void *v_cache, int64_t B, int64_t Tn, int64_t NH,
                              int64_t NKV, int64_t HS, int64_t max_T, int64_t pos) {
  const char *op = "dn_attention_decode";
  DN_CHECK_FLOAT(dtype, op);
  dn_status st = dn_kv_cache_check(op, B, Tn, NH, NKV, HS, max_T, pos);
  if (st != DN_OK) return st;
  dtype = dn_base_dtype(dtype);
  DN_CHECK(out && qkv && k_cache && v_cache, DN_ERR_INVALID, "%s: NULL pointer", op);
  struct dn_qkv_layout cols = dn_qkv_layout_of(NH, NKV, HS);
  int64_t C = cols.C, KV = NKV * HS, L = pos + Tn;
  float scale = 1.0f / sqrtf((float)HS);
  int failed = 0;
#pragma omp parallel num_threads(dn_threads) if (B * NH * Tn * L * HS > 65536)
  {
    /* scores of one query (L), then its q and output rows (HS each) in fp32 */
    float *s = malloc(sizeof(float) * (size_t)(L + 2 * HS));
    if (!s) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static) collapse(3)
    for (int64_t b = 0; b < B; b++) {
      for (int64_t h = 0; h < NH; h++) {
        for (int64_t i = 0; i < Tn; i++) {
          if (!s) continue;
          /* query i sits at position pos + i and sees cache positions [0, pos + i] */
          int64_t n = pos + i + 1, kvc = (h / cols.G) * HS;
          float *q = s + L, *oi = q + HS;
          dn_load_row(dtype, q, qkv, (b * Tn + i) * cols.W + h * HS, HS);
          float mx = -INFINITY;
          for (int64_t j = 0; j < n; j++) {
            s[j] = dot_ld(dtype, q, k_cache, (b * max_T + j) * KV + kvc, HS) * scale;
            if (s[j] > mx) mx = s[j];
          }
          float sum = 0.0f;
          for (int64_t j = 0; j < n; j++) {
            s[j] = dn_expf(s[j] - mx);
            sum += s[j];
          }
          float inv = 1.0f / sum;
          for (int64_t d = 0; d < HS; d++) oi[d] = 0.0f;
          for (int64_t j = 0; j < n; j++) {
            int64_t v = (b * max_T + j) * KV + kvc;
            float p = s[j] * inv;
#pragma omp simd
            for (int64_t d = 0; d < HS; d++) oi[d] += p * dn_ld(dtype, v_cache, v + d);
          }
          dn_store_row(dtype, out, (b * Tn + i) * C + h * HS, oi, HS);
        }
      }
    }
    free(s);
  }
  DN_CHECK(!failed, DN_ERR_OOM, "%s: out of memory for a (L=%lld) score row", op, (long long)L);
  return DN_OK;
}
