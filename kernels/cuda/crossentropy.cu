/* defines: dn_crossentropy_forward, dn_crossentropy_backward
 * One block per row of logits (N,V): forward keeps only the log-sum-exp, backward
 * writes softmax - onehot straight into dlogits, so the (N,V) probabilities are never
 * stored. Targets live on the device, so a bad one is flagged by the kernel and
 * reported after it (the forward waits for the GPU anyway, to return the mean). */
#include <math.h>
#include "common.cuh"

#define THREADS 512

/* Thread 0 of row i's block, once l = logsumexp of the row is known: lse, the loss, and
 * a target outside [-1, V) flagged (and ignored). */
template <typename T>
__device__ __forceinline__ void ce_finish_row(float *losses, float *lse, const T *z,
                                              const int32_t *targets, int64_t i, int64_t V,
                                              float l, int32_t *bad) {
  int32_t t = targets[i];
  lse[i] = l;
  if (t < -1 || t >= V) {
    atomicMin(bad, (int32_t)i);
    t = -1;
  }
  losses[i] = t < 0 ? 0.0f : l - ldf(z, t);
}

template <typename T>
__global__ void ce_fwd_k(float *losses, float *lse, const T *logits, const int32_t *targets,
                         int64_t V, int64_t ld, int32_t *bad) {
  int64_t i = blockIdx.x;
  const T *z = logits + i * ld;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, ldf(z, j));
  mx = block_max(mx);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += __expf(ldf(z, j) - mx);
  s = block_sum(s);
  if (threadIdx.x == 0) ce_finish_row(losses, lse, z, targets, i, V, mx + logf(s), bad);
}

/* The same in one read of the row (online softmax): each thread keeps the running maximum
 * of its columns and its sum of exp relative to it, rescaled when the maximum moves; the
 * block then takes the overall maximum and the rescaled sums. Opt-in
 * (DENOTRON_CUDA_CE=online) until a GPU check has passed with it. */
template <typename T>
__global__ void ce_fwd_online_k(float *losses, float *lse, const T *logits,
                                const int32_t *targets, int64_t V, int64_t ld, int32_t *bad) {
  int64_t i = blockIdx.x;
  const T *z = logits + i * ld;
  float m = -INFINITY, s = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float x = ldf(z, j);
    if (x > m) {
      s = s * __expf(m - x) + 1.0f; /* m = -inf at first: 0 * 0 + 1 */
      m = x;
    } else if (m > -INFINITY) {
      s += __expf(x - m);
    }
  }
  float mx = block_max(m);
  float part = m > -INFINITY ? s * __expf(m - mx) : 0.0f;
  float sum = block_sum(part);
  if (threadIdx.x == 0) ce_finish_row(losses, lse, z, targets, i, V, mx + logf(sum), bad);
}

static int ce_online_enabled(void) {
  static const int on = dn_env_is("DENOTRON_CUDA_CE", "online");
  return on;
}

/* out[0] = sum of counted losses (double, fixed order), out[1] = their count */
__global__ void ce_mean_k(double *out, const float *losses, const int32_t *targets, int64_t N) {
  double s = 0.0, c = 0.0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    if (targets[i] >= 0) {
      s += losses[i];
      c += 1.0;
    }
  }
  s = block_sum(s);
  c = block_sum(c);
  if (threadIdx.x == 0) {
    out[0] = s;
    out[1] = c;
  }
}

static dn_status bad_target(const char *op, const int32_t *targets, int32_t row, int64_t V) {
  int32_t t = 0;
  cudaMemcpy(&t, targets + row, 4, cudaMemcpyDeviceToHost);
  return DN_FAIL(DN_ERR_INVALID,
                 "%s: target %d at row %lld is outside [-1, %lld) (-1 means ignore)", op, (int)t,
                 (long long)row, (long long)V);
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
  DN_CHECK(N < ((int64_t)1 << 31), DN_ERR_INVALID, "%s: N=%lld exceeds 2^31", op, (long long)N);
  DN_TRY(dn_cuda_init(op));
  int32_t *flag;
  DN_TRY(dn_flag_reset(op, &flag));
  if (ce_online_enabled()) {
    DN_DISPATCH(dn_base_dtype(dtype), T,
                ce_fwd_online_k<T><<<(unsigned)N, THREADS, 0, dn_stream()>>>(
                    losses, lse, (const T *)logits, targets, V, ld, flag););
  } else {
    DN_DISPATCH(dn_base_dtype(dtype), T,
                ce_fwd_k<T><<<(unsigned)N, THREADS, 0, dn_stream()>>>(
                    losses, lse, (const T *)logits, targets, V, ld, flag););
  }
  double *sums;
  dn_status st = dn_scratch(op, 2 * sizeof(double), (void **)&sums);
  if (st != DN_OK) {
    dn_free(flag);
    return st;
  }
  ce_mean_k<<<1, 1024, 0, dn_stream()>>>(sums, losses, targets, N);
  double host[2] = {0, 0};
  cudaError_t e = cudaMemcpyAsync(host, sums, sizeof host, cudaMemcpyDeviceToHost, dn_stream());
  dn_free(sums);
  int32_t bad = INT32_MAX;
  DN_TRY(dn_flag_read(op, flag, &bad));
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: %s", op, cudaGetErrorString(e));
  if (bad != INT32_MAX) return bad_target(op, targets, bad, V);
  *host_count = (int64_t)host[1];
  *host_mean = host[1] > 0 ? host[0] / host[1] : 0.0;
  return DN_OK;
}

template <typename T>
__global__ void ce_bwd_k(T *dlogits, const T *logits, const float *lse, const int32_t *targets,
                         int64_t V, int64_t ld, float dloss, int32_t accumulate,
                         int32_t *bad) {
  int64_t i = blockIdx.x;
  int32_t t = targets[i];
  if (t < -1 || t >= V) {
    if (threadIdx.x == 0) atomicMin(bad, (int32_t)i);
    return;
  }
  T *d = dlogits + i * ld;
  if (!accumulate) { /* overwrite: zero where no gradient is written */
    for (int64_t j = t < 0 ? threadIdx.x : V + threadIdx.x; j < ld; j += blockDim.x)
      stf(d, j, 0.0f);
  }
  if (t < 0) return;
  const T *z = logits + i * ld;
  float l = lse[i];
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float v = __expf(ldf(z, j) - l) * dloss - (j == t ? dloss : 0.0f);
    if (accumulate)
      addf(d, j, v);
    else
      stf(d, j, v);
  }
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
  DN_CHECK(N < ((int64_t)1 << 31), DN_ERR_INVALID, "%s: N=%lld exceeds 2^31", op, (long long)N);
  DN_TRY(dn_cuda_init(op));
  int32_t *flag;
  DN_TRY(dn_flag_reset(op, &flag));
  DN_DISPATCH(dn_base_dtype(dtype), T,
              ce_bwd_k<T><<<(unsigned)N, THREADS, 0, dn_stream()>>>(
                  (T *)dlogits, (const T *)logits, lse, targets, V, ld, dloss, accumulate,
                  flag););
  int32_t bad = INT32_MAX;
  DN_TRY(dn_flag_read(op, flag, &bad));
  if (bad != INT32_MAX) return bad_target(op, targets, bad, V);
  return DN_OK;
}
