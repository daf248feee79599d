/* defines: dn_crossentropy_forward, dn_crossentropy_backward
 * Softmax and cross-entropy in one pass over the logits: forward keeps only the
 * log-sum-exp per row, and backward forms the probabilities once, straight into
 * the gradient, so the (N,V) probability matrix is never stored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"

static dn_status check_targets(const char *op, const int32_t *targets, int64_t N, int64_t V) {
  for (int64_t i = 0; i < N; i++) {
    DN_CHECK(targets[i] >= -1 && targets[i] < V, DN_ERR_INVALID,
             "%s: target %d at row %lld is outside [-1, %lld) (-1 means ignore)", op,
             (int)targets[i], (long long)i, (long long)V);
  }
  return DN_OK;
}

dn_status dn_crossentropy_forward(dn_dtype dtype, float *losses, float *lse, const void *logits,
                                  const int32_t *targets, int64_t N, int64_t V, int64_t ld,
                                  double *host_mean, int64_t *host_count) {
  const char *op = "dn_crossentropy_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(N > 0 && V > 0, DN_ERR_INVALID, "%s: sizes must be positive (N=%lld V=%lld)", op,
           (long long)N, (long long)V);
  DN_CHECK_EXTENT(op, N, ld);
  DN_CHECK(ld >= V, DN_ERR_INVALID, "%s: row stride ld=%lld is less than V=%lld", op,
           (long long)ld, (long long)V);
  DN_CHECK(losses && lse && logits && targets && host_mean && host_count, DN_ERR_INVALID,
           "%s: NULL pointer", op);
  dn_status st = check_targets(op, targets, N, V);
  if (st != DN_OK) return st;
  dtype = dn_base_dtype(dtype);
  /* 16-bit logits are widened one row at a time into a per-thread fp32 row. */
  int nt = dn_threads;
  float *rows = dtype == DN_F32 ? NULL : malloc(sizeof(float) * (size_t)(V * nt));
  DN_CHECK(dtype == DN_F32 || rows, DN_ERR_OOM, "%s: out of memory for %d rows of %lld", op, nt,
           (long long)V);
#pragma omp parallel for num_threads(nt) schedule(static) if (N * V > 65536)
  for (int64_t i = 0; i < N; i++) {
    const float *zi = (const float *)logits + i * ld;
    if (rows) {
      float *r = rows + (int64_t)dn_thread_index() * V;
      dn_load_row(dtype, r, logits, i * ld, V);
      zi = r;
    }
    float mx = -INFINITY;
    for (int64_t j = 0; j < V; j++) mx = zi[j] > mx ? zi[j] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; j++) sum += dn_expf(zi[j] - mx);
    float l = mx + logf(sum);
    lse[i] = l;
    losses[i] = targets[i] < 0 ? 0.0f : l - zi[targets[i]];
  }
  free(rows);
  double total = 0.0;
  int64_t count = 0;
  for (int64_t i = 0; i < N; i++) {
    if (targets[i] >= 0) {
      total += losses[i];
      count++;
    }
  }
  *host_mean = count ? total / (double)count : 0.0;
  *host_count = count;
  return DN_OK;
}

dn_status dn_crossentropy_backward(dn_dtype dtype, void *dlogits, const void *logits,
                                   const float *lse, const int32_t *targets, int64_t N,
                                   int64_t V, int64_t ld, float dloss, int32_t accumulate) {
  const char *op = "dn_crossentropy_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(N > 0 && V > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, N, ld);
  DN_CHECK(ld >= V, DN_ERR_INVALID, "%s: row stride ld=%lld is less than V=%lld", op,
           (long long)ld, (long long)V);
  DN_CHECK(dlogits && logits && lse && targets, DN_ERR_INVALID, "%s: NULL pointer", op);
  dn_status st = check_targets(op, targets, N, V);
  if (st != DN_OK) return st;
  dtype = dn_base_dtype(dtype);
  int nt = dn_threads;
  float *rows = dtype == DN_F32 ? NULL : malloc(sizeof(float) * (size_t)(2 * V * nt));
  DN_CHECK(dtype == DN_F32 || rows, DN_ERR_OOM, "%s: out of memory for %d rows of %lld", op, nt,
           (long long)V);
  size_t es = dtype == DN_F32 ? 4 : 2;
#pragma omp parallel for num_threads(nt) schedule(static) if (N * V > 65536)
  for (int64_t i = 0; i < N; i++) {
    char *row = (char *)dlogits + (size_t)(i * ld) * es;
    if (targets[i] < 0) {
      if (!accumulate) memset(row, 0, (size_t)ld * es);
      continue;
    }
    if (!accumulate && ld > V) memset(row + (size_t)V * es, 0, (size_t)(ld - V) * es);
    const float *zi = (const float *)logits + i * ld;
    float *di = (float *)dlogits + i * ld;
    if (rows) { /* the logits and the gradient row, widened; the gradient is rounded once */
      float *r = rows + (int64_t)dn_thread_index() * 2 * V;
      dn_load_row(dtype, r, logits, i * ld, V);
      if (accumulate) dn_load_row(dtype, r + V, dlogits, i * ld, V);
      zi = r;
      di = r + V;
    }
    float l = lse[i];
    if (accumulate) {
#pragma omp simd
      for (int64_t j = 0; j < V; j++) di[j] += dn_expf(zi[j] - l) * dloss;
    } else {
#pragma omp simd
      for (int64_t j = 0; j < V; j++) di[j] = dn_expf(zi[j] - l) * dloss;
    }
    di[targets[i]] -= dloss;
    if (rows) dn_store_row(dtype, dlogits, i * ld, di, V);
  }
  free(rows);
  return DN_OK;
}
