/* defines: dn_fill, dn_fill_normal, dn_add, dn_axpby, dn_cast, dn_sum,
 * dn_dropout_forward, dn_dropout_backward */
#include <math.h>
#include <string.h>
#include "common.h"

#define PAR_FOR _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (n > 32768)")

dn_status dn_fill(dn_dtype dtype, void *out, int64_t n, float value) {
  DN_CHECK_FLOAT(dtype, "dn_fill");
  DN_CHECK_EXTENT("dn_fill", n);
  if (n == 0) return DN_OK;
  DN_CHECK_PTR(out, "dn_fill");
  DN_FOR_DTYPE(dtype, {
    PAR_FOR
    for (int64_t i = 0; i < n; i++) dn_st(DT, out, i, value);
  });
  return DN_OK;
}

dn_status dn_fill_normal(dn_dtype dtype, void *out, int64_t n, float mean, float std,
                         uint64_t seed, uint64_t offset) {
  DN_CHECK_FLOAT(dtype, "dn_fill_normal");
  DN_CHECK_EXTENT("dn_fill_normal", n);
  DN_CHECK(std >= 0, DN_ERR_INVALID, "dn_fill_normal: std %g is negative", (double)std);
  if (n == 0) return DN_OK;
  DN_CHECK_PTR(out, "dn_fill_normal");
  /* Drawn in fp32 and rounded, so a 16-bit tensor holds the fp32 draw's rounding. */
  DN_FOR_DTYPE(dtype, {
    PAR_FOR
    for (int64_t i = 0; i < n; i++) {
      /* Box-Muller from the two 32-bit halves of one draw: u1 in (0,1], u2 in [0,1). */
      uint64_t r = dn_rand64(seed, offset + (uint64_t)i);
      double u1 = ((double)(r >> 32) + 1.0) * (1.0 / 4294967296.0);
      double u2 = (double)(r & 0xFFFFFFFFu) * (1.0 / 4294967296.0);
      double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
      dn_st(DT, out, i, mean + std * (float)z);
    }
  });
  return DN_OK;
}

dn_status dn_add(dn_dtype dtype, void *out, const void *a, const void *b, int64_t n) {
  DN_CHECK_FLOAT(dtype, "dn_add");
  DN_CHECK_EXTENT("dn_add", n);
  if (n == 0) return DN_OK;
  DN_CHECK(out && a && b, DN_ERR_INVALID, "dn_add: NULL pointer");
  DN_FOR_DTYPE(dtype, {
    PAR_FOR
    for (int64_t i = 0; i < n; i++) dn_st(DT, out, i, dn_ld(DT, a, i) + dn_ld(DT, b, i));
  });
  return DN_OK;
}

dn_status dn_axpby(dn_dtype dtype, void *y, float alpha, const void *x, float beta, int64_t n) {
  DN_CHECK_FLOAT(dtype, "dn_axpby");
  DN_CHECK_EXTENT("dn_axpby", n);
  if (n == 0) return DN_OK;
  DN_CHECK(x && y, DN_ERR_INVALID, "dn_axpby: NULL pointer");
  dn_dtype xt = dn_base_dtype(dtype), yt = dn_grad_dtype(dtype);
  if (xt != yt) {
    /* Mixed: a 16-bit gradient added into an fp32 main gradient (or back). */
    PAR_FOR
    for (int64_t i = 0; i < n; i++) {
      float yi = beta == 0.0f ? 0.0f : beta * dn_ld(yt, y, i);
      dn_st(yt, y, i, alpha * dn_ld(xt, x, i) + yi);
    }
    return DN_OK;
  }
  DN_FOR_DTYPE(xt, {
    if (beta == 0.0f) {
      PAR_FOR
      for (int64_t i = 0; i < n; i++) dn_st(DT, y, i, alpha * dn_ld(DT, x, i));
    } else {
      PAR_FOR
      for (int64_t i = 0; i < n; i++)
        dn_st(DT, y, i, alpha * dn_ld(DT, x, i) + beta * dn_ld(DT, y, i));
    }
  });
  return DN_OK;
}

dn_status dn_cast(dn_dtype dst_dtype, void *dst, dn_dtype src_dtype, const void *src,
                  int64_t n) {
  DN_CHECK_EXTENT("dn_cast", n);
  int ints = dst_dtype == DN_I32 && src_dtype == DN_I32;
  DN_CHECK(ints || (dn_is_float(dst_dtype) && dn_is_float(src_dtype)), DN_ERR_UNSUPPORTED,
           "dn_cast: %s -> %s is not supported (float dtypes convert among themselves, i32 "
           "only copies)",
           dn_dtype_name(src_dtype), dn_dtype_name(dst_dtype));
  if (n == 0) return DN_OK;
  DN_CHECK(dst && src, DN_ERR_INVALID, "dn_cast: NULL pointer");
  if (ints || dst_dtype == src_dtype) {
    memmove(dst, src, (size_t)n * (dst_dtype == DN_F32 || ints ? 4 : 2));
    return DN_OK;
  }
  /* Chunks of one row each, through the vectorised row converters. */
  const int64_t chunk = 4096;
  int64_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (n > 32768)
  for (int64_t c = 0; c < chunks; c++) {
    float buf[4096];
    int64_t lo = c * chunk, len = n - lo < chunk ? n - lo : chunk;
    if (src_dtype == DN_F32) {
      dn_store_row(dst_dtype, dst, lo, (const float *)src + lo, len);
    } else if (dst_dtype == DN_F32) {
      dn_load_row(src_dtype, (float *)dst + lo, src, lo, len);
    } else {
      dn_load_row(src_dtype, buf, src, lo, len);
      dn_store_row(dst_dtype, dst, lo, buf, len);
    }
  }
  return DN_OK;
}

dn_status dn_sum(dn_dtype dtype, double *host_out, const void *inp, int64_t n) {
  DN_CHECK_FLOAT(dtype, "dn_sum");
  DN_CHECK_PTR(host_out, "dn_sum");
  DN_CHECK_EXTENT("dn_sum", n);
  if (n > 0) DN_CHECK_PTR(inp, "dn_sum");
  double partial[DN_REDUCE_CHUNKS];
  int64_t per = (n + DN_REDUCE_CHUNKS - 1) / DN_REDUCE_CHUNKS;
  DN_FOR_DTYPE(dtype, {
    PAR_FOR
    for (int c = 0; c < DN_REDUCE_CHUNKS; c++) {
      int64_t lo = c * per, hi = lo + per < n ? lo + per : n;
      double s = 0;
      for (int64_t i = lo; i < hi; i++) s += dn_ld(DT, inp, i);
      partial[c] = s;
    }
  });
  double s = 0;
  for (int c = 0; c < DN_REDUCE_CHUNKS; c++) s += partial[c];
  *host_out = s;
  return DN_OK;
}

static dn_status check_dropout(const char *op, dn_dtype dtype, int64_t n, float p) {
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_EXTENT(op, n);
  DN_CHECK(p >= 0.0f && p < 1.0f, DN_ERR_INVALID, "%s: p = %g is not in [0, 1)", op,
           (double)p);
  return DN_OK;
}

dn_status dn_dropout_forward(dn_dtype dtype, void *out, const void *inp, int64_t n, float p,
                             uint64_t seed, uint64_t offset) {
  dn_status st = check_dropout("dn_dropout_forward", dtype, n, p);
  if (st != DN_OK) return st;
  if (n == 0) return DN_OK;
  DN_CHECK(out && inp, DN_ERR_INVALID, "dn_dropout_forward: NULL pointer");
  float scale = 1.0f / (1.0f - p);
  DN_FOR_DTYPE(dtype, {
    PAR_FOR
    for (int64_t i = 0; i < n; i++) {
      float v = dn_uniform(seed, offset + (uint64_t)i) >= p ? dn_ld(DT, inp, i) * scale : 0.0f;
      dn_st(DT, out, i, v);
    }
  });
  return DN_OK;
}

dn_status dn_dropout_backward(dn_dtype dtype, void *dinp, const void *dout, int64_t n, float p,
                              uint64_t seed, uint64_t offset) {
  dn_status st = check_dropout("dn_dropout_backward", dtype, n, p);
  if (st != DN_OK) return st;
  if (n == 0) return DN_OK;
  DN_CHECK(dinp && dout, DN_ERR_INVALID, "dn_dropout_backward: NULL pointer");
  float scale = 1.0f / (1.0f - p);
  DN_FOR_DTYPE(dtype, {
    PAR_FOR
    for (int64_t i = 0; i < n; i++) {
      if (dn_uniform(seed, offset + (uint64_t)i) >= p)
        dn_st(DT, dinp, i, dn_ld(DT, dinp, i) + dn_ld(DT, dout, i) * scale);
    }
  });
  return DN_OK;
}
