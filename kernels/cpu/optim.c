/* defines: dn_adamw, dn_norm_sq, dn_scale — each over many tensors in one call */
#include <math.h>
#include "common.h"

static dn_status check_list(const char *op, dn_dtype dtype, int64_t n, const void *ptrs,
                            const int64_t *sizes) {
  DN_CHECK_F32(dtype, op);
  DN_CHECK(n >= 0, DN_ERR_INVALID, "%s: negative tensor count %lld", op, (long long)n);
  if (n == 0) return DN_OK;
  DN_CHECK(ptrs && sizes, DN_ERR_INVALID, "%s: NULL list", op);
  for (int64_t t = 0; t < n; t++) {
    DN_CHECK(sizes[t] >= 0, DN_ERR_INVALID, "%s: tensor %lld has negative size %lld", op,
             (long long)t, (long long)sizes[t]);
  }
  return DN_OK;
}

dn_status dn_adamw(dn_dtype dtype, int64_t n, void *const *params, void *const *grads,
                   float *const *m, float *const *v, const int64_t *sizes,
                   const float *weight_decay, float lr, float beta1, float beta2, float eps,
                   int64_t step, float grad_scale) {
  const char *op = "dn_adamw";
  dn_status st = check_list(op, dtype, n, params, sizes);
  if (st != DN_OK) return st;
  if (n == 0) return DN_OK;
  DN_CHECK(grads && m && v && weight_decay, DN_ERR_INVALID, "%s: NULL list", op);
  DN_CHECK(step >= 1, DN_ERR_INVALID, "%s: step %lld must be >= 1", op, (long long)step);
  DN_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, DN_ERR_INVALID,
           "%s: betas (%g, %g) must be in [0, 1)", op, (double)beta1, (double)beta2);
  DN_CHECK(eps > 0 && lr >= 0, DN_ERR_INVALID, "%s: eps %g must be > 0 and lr %g >= 0", op,
           (double)eps, (double)lr);
  float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
  for (int64_t t = 0; t < n; t++) {
    float *p = params[t];
    const float *g = grads[t];
    float *mt = m[t], *vt = v[t];
    float wd = weight_decay[t];
    int64_t size = sizes[t];
    if (size == 0) continue;
    DN_CHECK(p && g && mt && vt, DN_ERR_INVALID, "%s: tensor %lld has a NULL pointer", op,
             (long long)t);
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (size > 32768)
    for (int64_t i = 0; i < size; i++) {
      float gi = g[i] * grad_scale;
      float mi = beta1 * mt[i] + (1.0f - beta1) * gi;
      float vi = beta2 * vt[i] + (1.0f - beta2) * gi * gi;
      mt[i] = mi;
      vt[i] = vi;
      float update = (mi / bc1) / (sqrtf(vi / bc2) + eps);
      p[i] -= lr * (update + wd * p[i]);
    }
  }
  return DN_OK;
}

dn_status dn_norm_sq(dn_dtype dtype, int64_t n, void *const *tensors, const int64_t *sizes,
                     double *host_out) {
  const char *op = "dn_norm_sq";
  dn_status st = check_list(op, dtype, n, tensors, sizes);
  if (st != DN_OK) return st;
  DN_CHECK_PTR(host_out, op);
  double total = 0.0;
  for (int64_t t = 0; t < n; t++) {
    const float *x = tensors[t];
    int64_t size = sizes[t];
    if (size == 0) continue;
    DN_CHECK(x, DN_ERR_INVALID, "%s: tensor %lld is NULL", op, (long long)t);
    double partial[DN_REDUCE_CHUNKS];
    int64_t per = (size + DN_REDUCE_CHUNKS - 1) / DN_REDUCE_CHUNKS;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (size > 32768)
    for (int c = 0; c < DN_REDUCE_CHUNKS; c++) {
      int64_t lo = c * per, hi = lo + per < size ? lo + per : size;
      double s = 0.0;
      for (int64_t i = lo; i < hi; i++) s += (double)x[i] * (double)x[i];
      partial[c] = s;
    }
    for (int c = 0; c < DN_REDUCE_CHUNKS; c++) total += partial[c];
  }
  *host_out = total;
  return DN_OK;
}

dn_status dn_scale(dn_dtype dtype, int64_t n, void *const *tensors, const int64_t *sizes,
                   float factor) {
  const char *op = "dn_scale";
  dn_status st = check_list(op, dtype, n, tensors, sizes);
  if (st != DN_OK) return st;
  for (int64_t t = 0; t < n; t++) {
    float *x = tensors[t];
    int64_t size = sizes[t];
    if (size == 0) continue;
    DN_CHECK(x, DN_ERR_INVALID, "%s: tensor %lld is NULL", op, (long long)t);
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (size > 32768)
    for (int64_t i = 0; i < size; i++) x[i] *= factor;
  }
  return DN_OK;
}
