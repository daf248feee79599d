/* The qkv column layout and the argument checks of the attention kernels
 * (dn_attention_forward/_backward, dn_kv_append, dn_attention_decode), shared by both
 * backends so that they index the same columns and refuse the same sizes with the same
 * sentence. Each backend adds only its own limits (CUDA: the head size, the grid). */
#ifndef DN_SHARED_ATTENTION_H
#define DN_SHARED_ATTENTION_H

#include "checks.h"

/* The columns of one token's row of qkv(B,T,(NH+2*NKV)*HS): NH query heads, then NKV key
 * heads, then NKV value heads, HS columns each. Query head h reads key/value head h / G. */
struct dn_qkv_layout {
  int64_t W; /* row width of qkv, (NH + 2*NKV) * HS */
  int64_t C; /* row width of the attention output, NH * HS */
  int64_t K; /* first key column, NH * HS */
  int64_t V; /* first value column, (NH + NKV) * HS */
  int64_t G; /* query heads per key/value head, NH / NKV */
};

/* The layout of NH query and NKV key/value heads of size HS (sizes checked first). */
static inline struct dn_qkv_layout dn_qkv_layout_of(int64_t NH, int64_t NKV, int64_t HS) {
  struct dn_qkv_layout l = {(NH + 2 * NKV) * HS, NH * HS, NH * HS, (NH + NKV) * HS, NH / NKV};
  return l;
}

/* qkv(B,T,(NH+2*NKV)*HS) and lse(B,NH,T) fit, and NKV divides NH: query head h reads key and
 * value head h / (NH/NKV). */
static inline dn_status dn_attention_check(const char *op, int64_t B, int64_t T, int64_t NH,
                                           int64_t NKV, int64_t HS) {
  DN_CHECK(B > 0 && T > 0 && NH > 0 && NKV > 0 && HS > 0, DN_ERR_INVALID,
           "%s: sizes must be positive (B=%lld T=%lld NH=%lld NKV=%lld HS=%lld)", op,
           (long long)B, (long long)T, (long long)NH, (long long)NKV, (long long)HS);
  DN_CHECK_EXTENT(op, NH, HS);
  DN_CHECK_EXTENT(op, NKV, 2, HS);
  DN_CHECK_EXTENT(op, B, T, NH + 2 * NKV, HS);
  DN_CHECK_EXTENT(op, B, NH, T);
  DN_CHECK(NH % NKV == 0, DN_ERR_INVALID,
           "%s: NH=%lld query heads are not a multiple of NKV=%lld key/value heads", op,
           (long long)NH, (long long)NKV);
  return DN_OK;
}

/* spans(B,T,2): each query's key range [lo, hi), 0 <= lo <= hi <= T. */
static inline dn_status dn_attention_spans_check(const char *op, const int32_t *spans,
                                                 int64_t B, int64_t T) {
  for (int64_t r = 0; r < B * T; r++) {
    int64_t lo = spans[2 * r], hi = spans[2 * r + 1];
    DN_CHECK(0 <= lo && lo <= hi && hi <= T, DN_ERR_INVALID,
             "%s: span of query %lld of sequence %lld is [%lld, %lld), outside [0, %lld]", op,
             (long long)(r % T), (long long)(r / T), (long long)lo, (long long)hi,
             (long long)T);
  }
  return DN_OK;
}

/* dn_attention_check for Tn new positions, caches (B,max_T,NKV*HS) that fit, and positions
 * [pos, pos+Tn) inside them. */
static inline dn_status dn_kv_cache_check(const char *op, int64_t B, int64_t Tn, int64_t NH,
                                          int64_t NKV, int64_t HS, int64_t max_T,
                                          int64_t pos) {
  dn_status st = dn_attention_check(op, B, Tn, NH, NKV, HS);
  if (st != DN_OK) return st;
  DN_CHECK_POS(max_T, op);
  DN_CHECK_EXTENT(op, B, max_T, NKV, HS);
  DN_CHECK_EXTENT(op, pos);
  DN_CHECK(pos >= 0 && pos + Tn <= max_T, DN_ERR_INVALID,
           "%s: positions [%lld, %lld) do not fit in a cache of %lld positions", op,
           (long long)pos, (long long)(pos + Tn), (long long)max_T);
  return DN_OK;
}

#endif
