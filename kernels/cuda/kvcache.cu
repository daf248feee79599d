/* defines: dn_kv_append, dn_attention_decode
 * Incremental decoding over key/value caches (B,max_T,NKV*HS) that hold the key/value
 * heads only. Decode runs one warp per (batch, query head, new query) with the forward
 * kernel's online softmax, reading the rows of its key/value head h / (NH/NKV) straight
 * from global memory: a decode step is a few rows per head. */
#include <math.h>
#include "../shared/attention.h"
#include "common.cuh"

#define MAXD 4

/* n = B*Tn rows; each copies its NKV*HS key and value columns */
template <typename T>
__global__ void kv_append_k(T *kc, T *vc, const T *qkv, int64_t Tn, dn_qkv_layout L,
                            int64_t KV, int64_t max_T, int64_t pos, int64_t n) {
  DN_GRID_LOOP(k, n * KV) {
    int64_t bt = k / KV, c = k % KV, b = bt / Tn, t = bt % Tn;
    int64_t dst = (b * max_T + pos + t) * KV + c;
    kc[dst] = qkv[bt * L.W + L.K + c];
    vc[dst] = qkv[bt * L.W + L.V + c];
  }
}

dn_status dn_kv_append(dn_dtype dtype, void *k_cache, void *v_cache, const void *qkv, int64_t B,
                       int64_t Tn, int64_t NH, int64_t NKV, int64_t HS, int64_t max_T,
                       int64_t pos) {
  const char *op = "dn_kv_append";
  DN_CHECK_FLOAT(dtype, op);
  DN_TRY(dn_kv_cache_check(op, B, Tn, NH, NKV, HS, max_T, pos));
  DN_CHECK(k_cache && v_cache && qkv, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  dn_qkv_layout L = dn_qkv_layout_of(NH, NKV, HS);
  int64_t KV = NKV * HS;
  DN_DISPATCH(dn_base_dtype(dtype), TT,
              kv_append_k<TT><<<dn_blocks(B * Tn * KV, 256), 256, 0, dn_stream()>>>(
                  (TT *)k_cache, (TT *)v_cache, (const TT *)qkv, Tn, L, KV, max_T, pos,
                  B * Tn););
  DN_LAUNCHED(op);
  return DN_OK;
}

template <typename T>
__global__ void decode_k(T *out, const T *qkv, const T *kc, const T *vc, int64_t B, int64_t Tn,
                         int64_t NH, int64_t HS, dn_qkv_layout L, int64_t max_T, int64_t pos) {
  int64_t r = (int64_t)blockIdx.x * 4 + (threadIdx.x >> 5); /* over (b, h, i) */
  int lane = threadIdx.x & 31;
  if (r >= B * NH * Tn) return;
  int64_t i = r % Tn, h = (r / Tn) % NH, b = r / (Tn * NH);
  int64_t KV = (NH / L.G) * HS, kvc = (h / L.G) * HS; /* cache row width, head column */
  float scale = 1.0f / sqrtf((float)HS);
  const T *q = qkv + (b * Tn + i) * L.W + h * HS;
  int64_t n = pos + i + 1; /* keys [0, pos + i] */
  float o[MAXD] = {0, 0, 0, 0}, m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 < n; j0 += 32) {
    int64_t j = j0 + lane;
    float s = -INFINITY;
    if (j < n) {
      const T *k = kc + (b * max_T + j) * KV + kvc;
      float dot = 0.0f;
      for (int64_t d = 0; d < HS; d++) dot += ldf(q, d) * ldf(k, d);
      s = dot * scale;
    }
    float nm = fmaxf(m, warp_max(s));
    float p = j < n ? __expf(s - nm) : 0.0f, corr = __expf(m - nm);
    l = l * corr + warp_sum(p);
    for (int rr = 0; rr < MAXD; rr++) o[rr] *= corr;
    int64_t cnt = n - j0 < 32 ? n - j0 : 32;
    for (int jj = 0; jj < cnt; jj++) {
      float pj = __shfl_sync(0xffffffffu, p, jj);
      const T *v = vc + (b * max_T + j0 + jj) * KV + kvc;
      for (int rr = 0; rr < MAXD; rr++) {
        int64_t d = lane + 32 * rr;
        if (d < HS) o[rr] += pj * ldf(v, d);
      }
    }
    m = nm;
  }
  for (int rr = 0; rr < MAXD; rr++) {
    int64_t d = lane + 32 * rr;
    if (d < HS) stf(out, (b * Tn + i) * L.C + h * HS + d, o[rr] / l);
  }
}

dn_status dn_attention_decode(dn_dtype dtype, void *out, const void *qkv, const void *k_cache,
                              const void *v_cache, int64_t B, int64_t Tn, int64_t NH,
                              int64_t NKV, int64_t HS, int64_t max_T, int64_t pos) {
  const char *op = "dn_attention_decode";
  DN_CHECK_FLOAT(dtype, op);
  DN_TRY(dn_kv_cache_check(op, B, Tn, NH, NKV, HS, max_T, pos));
  DN_CHECK(HS <= 32 * MAXD, DN_ERR_UNSUPPORTED,
           "%s: head size %lld is above the CUDA kernel's limit of %d", op, (long long)HS,
           32 * MAXD);
  DN_CHECK(out && qkv && k_cache && v_cache, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  int64_t rows = B * NH * Tn;
  DN_DISPATCH(dn_base_dtype(dtype), TT,
              decode_k<TT><<<(unsigned)((rows + 3) / 4), 128, 0, dn_stream()>>>(
                  (TT *)out, (const TT *)qkv, (const TT *)k_cache, (const TT *)v_cache, B, Tn,
                  NH, HS, dn_qkv_layout_of(NH, NKV, HS), max_T, pos););
  DN_LAUNCHED(op);
  return DN_OK;
}
