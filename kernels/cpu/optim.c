/* defines: dn_adamw, dn_norm_sq, dn_scale, dn_grad_check, dn_adamw_mixed — each over
 * many tensors in one call */
#include <math.h>
#include "common.h"

static dn_status check_list(const char *op, dn_dtype dtype, int64_t n, const void *ptrs,
                            const int64_t *sizes) {
  DN_CHECK(dn_is_float(dtype), DN_ERR_UNSUPPORTED, "%s: dtype %s is not a float dtype", op,
           dn_dtype_name(dtype));
  DN_CHECK(n >= 0, DN_ERR_INVALID, "%s: negative tensor count %lld", op, (long long)n);
  if (n == 0) return DN_OK;
  DN_CHECK(ptrs && sizes, DN_ERR_INVALID, "%s: NULL list", op);
  for (int64_t t = 0; t < n; t++) {
    DN_CHECK(sizes[t] >= 0 && sizes[t] <= DN_MAX_BYTES, DN_ERR_INVALID,
             "%s: tensor %lld has size %lld, not in [0, 2^46]", op, (long long)t,
             (long long)sizes[t]);
  }
  return DN_OK;
}

dn_status dn_adamw(dn_dtype dtype, int64_t n, void *const *params, void *const *grads,
                   float *const *m, float *const *v, const int64_t *sizes,
                   const float *weight_decay, float lr, float beta1, float beta2, float eps,
                   int64_t step, float grad_scale) {
  const char *op = "dn_adamw";
  DN_CHECK(dtype == DN_F32, DN_ERR_UNSUPPORTED,
           "%s: dtype %s: 16-bit parameters train through dn_adamw_mixed (fp32 main params)",
           op, dn_dtype_name(dtype));
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
    const void *x = tensors[t];
    int64_t size = sizes[t];
    if (size == 0) continue;
    DN_CHECK(x, DN_ERR_INVALID, "%s: tensor %lld is NULL", op, (long long)t);
    double partial[DN_REDUCE_CHUNKS];
    int64_t per = (size + DN_REDUCE_CHUNKS - 1) / DN_REDUCE_CHUNKS;
    DN_FOR_DTYPE(dtype, {
      _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (size > 32768)")
      for (int c = 0; c < DN_REDUCE_CHUNKS; c++) {
        int64_t lo = c * per, hi = lo + per < size ? lo + per : size;
        /* 16 running sums, element i into sum i mod 16, added up in a fixed order at the
         * end: the same result for any thread count, and the adds are independent
         * enough to vectorise (one sum waits on each add's latency) */
        double lane[16] = {0};
        int64_t i = lo;
        for (; i + 16 <= hi; i += 16) {
          for (int k = 0; k < 16; k++) {
            double v = dn_ld(DT, x, i + k);
            lane[k] += v * v;
          }
        }
        double s = 0.0;
        for (; i < hi; i++) {
          double v = dn_ld(DT, x, i);
          s += v * v;
        }
        for (int k = 0; k < 16; k++) s += lane[k];
        partial[c] = s;
      }
    });
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
    void *x = tensors[t];
    int64_t size = sizes[t];
    if (size == 0) continue;
    DN_CHECK(x, DN_ERR_INVALID, "%s: tensor %lld is NULL", op, (long long)t);
    DN_FOR_DTYPE(dtype, {
      _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (size > 32768)")
      for (int64_t i = 0; i < size; i++) dn_st(DT, x, i, dn_ld(DT, x, i) * factor);
    });
  }
  return DN_OK;
}

dn_status dn_grad_check(dn_dtype dtype, int64_t n, void *const *grads, const int64_t *sizes,
                        float scale, int32_t *host_found_inf, double *host_norm_sq) {
  const char *op = "dn_grad_check";
  dn_status st = check_list(op, dtype, n, grads, sizes);
  if (st != DN_OK) return st;
  DN_CHECK(host_found_inf && host_norm_sq, DN_ERR_INVALID, "%s: NULL output", op);
  double total = 0.0;
  int found = 0;
  for (int64_t t = 0; t < n; t++) {
    const void *x = grads[t];
    int64_t size = sizes[t];
    if (size == 0) continue;
    DN_CHECK(x, DN_ERR_INVALID, "%s: tensor %lld is NULL", op, (long long)t);
    double partial[DN_REDUCE_CHUNKS];
    int bad[DN_REDUCE_CHUNKS];
    int64_t per = (size + DN_REDUCE_CHUNKS - 1) / DN_REDUCE_CHUNKS;
    DN_FOR_DTYPE(dtype, {
      _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (size > 32768)")
      for (int c = 0; c < DN_REDUCE_CHUNKS; c++) {
        int64_t lo = c * per, hi = lo + per < size ? lo + per : size;
        double s = 0.0;
        for (int64_t i = lo; i < hi; i++) {
          double v = (double)(dn_ld(DT, x, i) * scale);
          s += v * v;
        }
        /* Squares of finite floats cannot overflow a double sum, so the sum is inf or
         * NaN exactly when an element is: one test per chunk, not per element. */
        partial[c] = s;
        bad[c] = !isfinite(s);
      }
    });
    for (int c = 0; c < DN_REDUCE_CHUNKS; c++) {
      total += partial[c];
      found |= bad[c];
    }
  }
  *host_found_inf = found;
  *host_norm_sq = found ? INFINITY : total;
  return DN_OK;
}

dn_status dn_adamw_mixed(dn_dtype model_dtype, int64_t n, void *const *model_params,
                         float *const *main_params, float *const *main_grads, float *const *m,
                         float *const *v, const int64_t *sizes, const float *weight_decay,
                         float lr, float beta1, float beta2, float eps, int64_t step,
                         float grad_scale) {
  const char *op = "dn_adamw_mixed";
  dn_status st = check_list(op, model_dtype, n, model_params, sizes);
  if (st != DN_OK) return st;
  if (n == 0) return DN_OK;
  DN_CHECK(main_params && main_grads && m && v && weight_decay, DN_ERR_INVALID, "%s: NULL list",
           op);
  DN_CHECK(step >= 1, DN_ERR_INVALID, "%s: step %lld must be >= 1", op, (long long)step);
  DN_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, DN_ERR_INVALID,
           "%s: betas (%g, %g) must be in [0, 1)", op, (double)beta1, (double)beta2);
  DN_CHECK(eps > 0 && lr >= 0, DN_ERR_INVALID, "%s: eps %g must be > 0 and lr %g >= 0", op,
           (double)eps, (double)lr);
  float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
  for (int64_t t = 0; t < n; t++) {
    void *model = model_params[t];
    float *p = main_params[t], *mt = m[t], *vt = v[t];
    const float *g = main_grads[t];
    float wd = weight_decay[t];
    int64_t size = sizes[t];
    if (size == 0) continue;
    DN_CHECK(model && p && g && mt && vt, DN_ERR_INVALID, "%s: tensor %lld has a NULL pointer",
             op, (long long)t);
    /* The same update as dn_adamw, on the fp32 main params; the model's copy is the
     * main param rounded once. */
    DN_FOR_DTYPE(model_dtype, {
      _Pragma("omp parallel for num_threads(dn_threads) schedule(static) if (size > 32768)")
      for (int64_t i = 0; i < size; i++) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * mt[i] + (1.0f - beta1) * gi;
        float vi = beta2 * vt[i] + (1.0f - beta2) * gi * gi;
        mt[i] = mi;
        vt[i] = vi;
        float update = (mi / bc1) / (sqrtf(vi / bc2) + eps);
        float pi = p[i] - lr * (update + wd * p[i]);
        p[i] = pi;
        dn_st(DT, model, i, pi);
      }
    });
  }
  return DN_OK;
}
