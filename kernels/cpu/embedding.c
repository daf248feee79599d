/* defines: dn_embedding_forward, dn_embedding_backward */
#include <string.h>
#include "common.h"

static dn_status check_tokens(const char *op, const int32_t *tokens, int64_t n, int64_t V) {
  for (int64_t i = 0; i < n; i++) {
    DN_CHECK(tokens[i] >= 0 && tokens[i] < V, DN_ERR_INVALID,
             "%s: token %d at flat index %lld is outside the vocabulary [0, %lld)", op,
             (int)tokens[i], (long long)i, (long long)V);
  }
  return DN_OK;
}

dn_status dn_embedding_forward(dn_dtype dtype, void *out, const int32_t *tokens, const void *wte,
                               const void *wpe, int64_t B, int64_t T, int64_t C, int64_t V) {
  const char *op = "dn_embedding_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(B > 0 && T > 0 && C > 0 && V > 0, DN_ERR_INVALID,
           "%s: sizes must be positive (B=%lld T=%lld C=%lld V=%lld)", op, (long long)B,
           (long long)T, (long long)C, (long long)V);
  DN_CHECK_EXTENT(op, B, T, C);
  DN_CHECK_EXTENT(op, V, C);
  DN_CHECK(out && tokens && wte, DN_ERR_INVALID, "%s: NULL pointer", op);
  dn_status st = check_tokens(op, tokens, B * T, V);
  if (st != DN_OK) return st;
  dtype = dn_base_dtype(dtype);
  DN_FOR_DTYPE(dtype, {
    _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (B * T * C > 65536)")
    for (int64_t bt = 0; bt < B * T; bt++) {
      int64_t a = (int64_t)tokens[bt] * C, p = (bt % T) * C;
      if (wpe) {
        for (int64_t c = 0; c < C; c++)
          dn_st(DT, out, bt * C + c, dn_ld(DT, wte, a + c) + dn_ld(DT, wpe, p + c));
      } else {
        for (int64_t c = 0; c < C; c++) dn_st(DT, out, bt * C + c, dn_ld(DT, wte, a + c));
      }
    }
  });
  return DN_OK;
}

dn_status dn_embedding_backward(dn_dtype dtype, void *dwte, void *dwpe, const void *dout,
                                const int32_t *tokens, int64_t B, int64_t T, int64_t C,
                                int64_t V) {
  const char *op = "dn_embedding_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(B > 0 && T > 0 && C > 0 && V > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, B, T, C);
  DN_CHECK_EXTENT(op, V, C);
  DN_CHECK(dout && tokens, DN_ERR_INVALID, "%s: NULL pointer", op);
  dn_status st = check_tokens(op, tokens, B * T, V);
  if (st != DN_OK) return st;
  /* dout has the activations' dtype; dwte and dwpe the parameter-gradient dtype. */
  dn_dtype gt = dn_grad_dtype(dtype);
  dtype = dn_base_dtype(dtype);
  /* Threads own disjoint channel ranges and walk the tokens in order, so repeated
   * tokens are summed in the same order every time: deterministic, no atomics. */
  const int64_t block = 64;
  int64_t nblocks = (C + block - 1) / block;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (B * T * C > 65536)
  for (int64_t cb = 0; cb < nblocks; cb++) {
    int64_t c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
    float g[64];
    for (int64_t bt = 0; bt < B * T; bt++) {
      dn_load_row(dtype, g, dout, bt * C + c0, c1 - c0);
      if (dwte) dn_accum_row(gt, dwte, (int64_t)tokens[bt] * C + c0, g, c1 - c0);
      if (dwpe) dn_accum_row(gt, dwpe, (bt % T) * C + c0, g, c1 - c0);
    }
  }
  return DN_OK;
}
