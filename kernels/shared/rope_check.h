/* The argument checks of dn_rope_forward and dn_rope_backward, shared by both backends so
 * that they refuse the same sizes with the same sentence. Included after the backend's
 * common header (which defines DN_CHECK_FLOAT). */
#ifndef DN_SHARED_ROPE_CHECK_H
#define DN_SHARED_ROPE_CHECK_H

#include "checks.h"

/* qkv(B,T,(NH+2*NKV)*HS) fits, HS is even, inv_freq(HS/2) is given, and every position
 * pos0 + t (t < T) is in [0, 2^46]. */
static inline dn_status dn_rope_check(const char *op, dn_dtype dtype, const float *inv_freq,
                                      int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                                      int64_t pos0) {
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_POS(B, op);
  DN_CHECK_POS(T, op);
  DN_CHECK_POS(NH, op);
  DN_CHECK_POS(NKV, op);
  DN_CHECK_POS(HS, op);
  DN_CHECK(HS % 2 == 0, DN_ERR_INVALID, "%s: head size HS=%lld must be even", op,
           (long long)HS);
  DN_CHECK_EXTENT(op, NH, HS);
  DN_CHECK_EXTENT(op, NKV, 2, HS);
  DN_CHECK_EXTENT(op, B, T, NH + 2 * NKV, HS);
  DN_CHECK(pos0 >= 0 && pos0 <= DN_MAX_BYTES - T, DN_ERR_INVALID,
           "%s: pos0=%lld must be in [0, 2^46 - T] (T=%lld)", op, (long long)pos0,
           (long long)T);
  DN_CHECK_PTR(inv_freq, op);
  return DN_OK;
}

#endif
