/* defines: dn_kv_append, dn_attention_decode
 * Incremental decoding over key/value caches (B,max_T,C). Decode runs one warp per
 * (batch, head, new query) with the forward kernel's online softmax, reading the
 * cache rows straight from global memory: a decode step is a few rows per head. */
#include <math.h>
#include "common.cuh"

#define MAXD 4

static dn_status check_cache(const char *op, int64_t B, int64_t Tn, int64_t C, int64_t max_T,
                             int64_t pos) {
  DN_CHECK(B > 0 && Tn > 0 && C > 0 && max_T > 0, DN_ERR_INVALID,
           "%s: sizes must be positive (B=%lld Tn=%lld C=%lld max_T=%lld)", op, (long long)B,
           (long long)Tn, (long long)C, (long long)max_T);
  DN_CHECK_EXTENT(op, B, max_T, C);
  DN_CHECK_EXTENT(op, B, Tn, 3, C);
  DN_CHECK_EXTENT(op, pos);
  DN_CHECK(pos >= 0 && pos + Tn <= max_T, DN_ERR_INVALID,
           "%s: positions [%lld, %lld) do not fit in a cache of %lld positions", op,
           (long long)pos, (long long)(pos + Tn), (long long)max_T);
  return DN_OK;
}

template <typename T>
__global__ void kv_append_k(T *kc, T *vc, const T *qkv, int64_t Tn, int64_t C, int64_t max_T,
                            int64_t pos, int64_t n) {
  DN_GRID_LOOP(k, n * C) {
    int64_t bt = k / C, c = k % C, b = bt / Tn, t = bt % Tn;
    int64_t dst = (b * max_T + pos + t) * C + c;
    kc[dst] = qkv[bt * 3 * C + C + c];
    vc[dst] = qkv[bt * 3 * C + 2 * C + c];
  }
}

dn_status dn_kv_append(dn_dtype dtype, void *k_cache, void *v_cache, const void *qkv, int64_t B,
                       int64_t Tn, int64_t C, int64_t max_T, int64_t pos) {
  const char *op = "dn_kv_append";
  DN_CHECK_FLOAT(dtype, op);
  DN_TRY(check_cache(op, B, Tn, C, max_T, pos));
  DN_CHECK(k_cache && v_cache && qkv, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  DN_DISPATCH(dn_base_dtype(dtype), TT,
              kv_append_k<TT><<<dn_blocks(B * Tn * C, 256), 256, 0, dn_stream()>>>(
                  (TT *)k_cache, (TT *)v_cache, (const TT *)qkv, Tn, C, max_T, pos, B * Tn););
  DN_LAUNCHED(op);
  return DN_OK;
}

template <typename T>
__global__ void decode_k(T *out, const T *qkv, const T *kc, const T *vc, int64_t B, int64_t Tn,
                         int64_t C, int64_t NH, int64_t max_T, int64_t pos) {
  int64_t r = (int64_t)blockIdx.x * 4 + (threadIdx.x >> 5); /* over (b, h, i) */
  int lane = threadIdx.x & 31;
  if (r >= B * NH * Tn) return;
  int64_t i = r % Tn, h = (r / Tn) % NH, b = r / (Tn * NH), HS = C / NH;
  float scale = 1.0f / sqrtf((float)HS);
  const T *q = qkv + (b * Tn + i) * 3 * C + h * HS;
  int64_t n = pos + i + 1; /* keys [0, pos + i] */
  float o[MAXD] = {0, 0, 0, 0}, m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 < n; j0 += 32) {
    int64_t j = j0 + lane;
    float s = -INFINITY;
    if (j < n) {
      const T *k = kc + (b * max_T + j) * C + h * HS;
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
      const T *v = vc + (b * max_T + j0 + jj) * C + h * HS;
      for (int rr = 0; rr < MAXD; rr++) {
        int64_t d = lane + 32 * rr;
        if (d < HS) o[rr] += pj * ldf(v, d);
      }
    }
    m = nm;
  }
  for (int rr = 0; rr < MAXD; rr++) {
    int64_t d = lane + 32 * rr;
    if (d < HS) stf(out, (b * Tn + i) * C + h * HS + d, o[rr] / l);
  }
}

dn_status dn_attention_decode(dn_dtype dtype, void *out, const void *qkv, const void *k_cache,
                              const void *v_cache, int64_t B, int64_t Tn, int64_t C, int64_t NH,
                              int64_t max_T, int64_t pos) {
  const char *op = "dn_attention_decode";
  DN_CHECK_FLOAT(dtype, op);
  DN_TRY(check_cache(op, B, Tn, C, max_T, pos));
  DN_CHECK(NH > 0 && C % NH == 0, DN_ERR_INVALID, "%s: NH=%lld does not divide C=%lld", op,
           (long long)NH, (long long)C);
  DN_CHECK(C / NH <= 32 * MAXD, DN_ERR_UNSUPPORTED,
           "%s: head size %lld is above the CUDA kernel's limit of %d", op, (long long)(C / NH),
           32 * MAXD);
  DN_CHECK(out && qkv && k_cache && v_cache, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  int64_t rows = B * NH * Tn;
  DN_DISPATCH(dn_base_dtype(dtype), TT,
              decode_k<TT><<<(unsigned)((rows + 3) / 4), 128, 0, dn_stream()>>>(
                  (TT *)out, (const TT *)qkv, (const TT *)k_cache, (const TT *)v_cache, B, Tn, C,
                  NH, max_T, pos););
  DN_LAUNCHED(op);
  return DN_OK;
}
