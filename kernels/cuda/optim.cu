/* defines: dn_adamw, dn_norm_sq, dn_scale, dn_grad_check, dn_adamw_mixed — each over
 * many tensors in one launch. The host lists (pointers, sizes, weight decays) are cut
 * into chunks of CHUNK elements and uploaded once per call as one packed block; block
 * k of the grid handles chunk k. Reductions write one double per chunk and a single
 * block adds them in order, so norms are deterministic. */
#include <math.h>
#include <string.h>

#include <vector>

#include "common.cuh"

#define CHUNK 65536
#define THREADS 256

struct Chunk {
  int32_t tensor;
  int32_t pad;
  int64_t start;
};

/* The device copy of one call's lists: `lists` arrays of n pointers, then sizes(n),
 * wd(n) (as doubles, to keep alignment simple), then the chunk table. */
struct Lists {
  void *const *ptr[5];
  const int64_t *sizes;
  const double *wd;
  const Chunk *chunks;
  int64_t nchunks;
  void *block; /* to free */
};

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

/* Uploads `nlists` pointer lists of n entries (a NULL entry in a non-empty tensor is an
 * error naming the tensor), sizes, optional weight decays, and the chunk table. */
static dn_status upload_lists(const char *op, int64_t n, int nlists, void *const *const *lists,
                              const int64_t *sizes, const float *wd, Lists *out) {
  std::vector<Chunk> chunks;
  for (int64_t t = 0; t < n; t++) {
    if (sizes[t] == 0) continue;
    for (int l = 0; l < nlists; l++)
      DN_CHECK(lists[l][t], DN_ERR_INVALID, "%s: tensor %lld has a NULL pointer", op,
               (long long)t);
    for (int64_t s = 0; s < sizes[t]; s += CHUNK) chunks.push_back({(int32_t)t, 0, s});
  }
  size_t bytes = (size_t)n * 8 * (size_t)(nlists + 2) + chunks.size() * sizeof(Chunk);
  std::vector<char> host(bytes > 0 ? bytes : 8);
  char *p = host.data();
  for (int l = 0; l < nlists; l++, p += n * 8) memcpy(p, lists[l], (size_t)n * 8);
  memcpy(p, sizes, (size_t)n * 8);
  p += n * 8;
  for (int64_t t = 0; t < n; t++) ((double *)p)[t] = wd ? wd[t] : 0.0;
  p += n * 8;
  memcpy(p, chunks.data(), chunks.size() * sizeof(Chunk));
  void *dev;
  DN_TRY(dn_upload(op, host.data(), (int64_t)host.size(), &dev));
  char *d = (char *)dev;
  for (int l = 0; l < 5; l++) out->ptr[l] = l < nlists ? (void *const *)(d + l * n * 8) : NULL;
  out->sizes = (const int64_t *)(d + nlists * n * 8);
  out->wd = (const double *)(d + (nlists + 1) * n * 8);
  out->chunks = (const Chunk *)(d + (nlists + 2) * n * 8);
  out->nchunks = (int64_t)chunks.size();
  out->block = dev;
  return DN_OK;
}

/* The element range of block k's chunk. */
#define CHUNK_RANGE(L, t, lo, hi)                                                              \
  Chunk ch_ = (L).chunks[blockIdx.x];                                                          \
  int64_t t = ch_.tensor, lo = ch_.start,                                                      \
          hi = lo + CHUNK < (L).sizes[t] ? lo + CHUNK : (L).sizes[t]

__device__ __forceinline__ float adam_step(float g, float *m, float *v, float p, float lr,
                                           float b1, float b2, float eps, float bc1, float bc2,
                                           float wd) {
  float mi = b1 * *m + (1.0f - b1) * g;
  float vi = b2 * *v + (1.0f - b2) * g * g;
  *m = mi;
  *v = vi;
  float update = (mi / bc1) / (sqrtf(vi / bc2) + eps);
  return p - lr * (update + wd * p);
}

/* lists: params, grads, m, v */
__global__ void adamw_k(Lists L, float lr, float b1, float b2, float eps, float bc1, float bc2,
                        float gs) {
  CHUNK_RANGE(L, t, lo, hi);
  float *p = (float *)L.ptr[0][t], *m = (float *)L.ptr[2][t], *v = (float *)L.ptr[3][t];
  const float *g = (const float *)L.ptr[1][t];
  float wd = (float)L.wd[t];
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
    p[i] = adam_step(g[i] * gs, m + i, v + i, p[i], lr, b1, b2, eps, bc1, bc2, wd);
}

/* lists: model params (T), main params, main grads, m, v */
template <typename T>
__global__ void adamw_mixed_k(Lists L, float lr, float b1, float b2, float eps, float bc1,
                              float bc2, float gs) {
  CHUNK_RANGE(L, t, lo, hi);
  T *model = (T *)L.ptr[0][t];
  float *p = (float *)L.ptr[1][t], *m = (float *)L.ptr[3][t], *v = (float *)L.ptr[4][t];
  const float *g = (const float *)L.ptr[2][t];
  float wd = (float)L.wd[t];
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    float pi = adam_step(g[i] * gs, m + i, v + i, p[i], lr, b1, b2, eps, bc1, bc2, wd);
    p[i] = pi;
    stf(model, i, pi);
  }
}

template <typename T> __global__ void scale_k(Lists L, float factor) {
  CHUNK_RANGE(L, t, lo, hi);
  T *x = (T *)L.ptr[0][t];
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) stf(x, i, ldf(x, i) * factor);
}

/* part[k] = sum over chunk k of (scale * x)^2 in double */
template <typename T> __global__ void normsq_k(Lists L, float scale, double *part) {
  CHUNK_RANGE(L, t, lo, hi);
  const T *x = (const T *)L.ptr[0][t];
  double s = 0.0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    double v = (double)(ldf(x, i) * scale);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* part[0] = sum of part(n) in order (non-finite exactly when an element was) */
__global__ void finish_k(double *part, int64_t n) {
  __shared__ double acc[THREADS];
  int64_t per = (n + THREADS - 1) / THREADS;
  double s = 0.0;
  for (int64_t i = threadIdx.x * per; i < (threadIdx.x + 1) * per && i < n; i++) s += part[i];
  acc[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int k = 0; k < THREADS; k++) total += acc[k];
    part[0] = total;
  }
}

static dn_status check_adam(const char *op, int64_t step, float beta1, float beta2, float eps,
                            float lr) {
  DN_CHECK(step >= 1, DN_ERR_INVALID, "%s: step %lld must be >= 1", op, (long long)step);
  DN_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, DN_ERR_INVALID,
           "%s: betas (%g, %g) must be in [0, 1)", op, (double)beta1, (double)beta2);
  DN_CHECK(eps > 0 && lr >= 0, DN_ERR_INVALID, "%s: eps %g must be > 0 and lr %g >= 0", op,
           (double)eps, (double)lr);
  return DN_OK;
}

static dn_status finish_launch(const char *op, Lists *L) {
  cudaError_t e = cudaGetLastError();
  dn_free(L->block);
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: launch failed: %s", op, cudaGetErrorString(e));
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
  DN_TRY(check_list(op, dtype, n, params, sizes));
  if (n == 0) return DN_OK;
  DN_CHECK(grads && m && v && weight_decay, DN_ERR_INVALID, "%s: NULL list", op);
  DN_TRY(check_adam(op, step, beta1, beta2, eps, lr));
  DN_TRY(dn_cuda_init(op));
  void *const *lists[4] = {params, grads, (void *const *)m, (void *const *)v};
  Lists L;
  DN_TRY(upload_lists(op, n, 4, lists, sizes, weight_decay, &L));
  float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
  if (L.nchunks > 0)
    adamw_k<<<(unsigned)L.nchunks, THREADS, 0, dn_stream()>>>(L, lr, beta1, beta2, eps, bc1, bc2,
                                                              grad_scale);
  return finish_launch(op, &L);
}

dn_status dn_adamw_mixed(dn_dtype model_dtype, int64_t n, void *const *model_params,
                         float *const *main_params, float *const *main_grads, float *const *m,
                         float *const *v, const int64_t *sizes, const float *weight_decay,
                         float lr, float beta1, float beta2, float eps, int64_t step,
                         float grad_scale) {
  const char *op = "dn_adamw_mixed";
  DN_TRY(check_list(op, model_dtype, n, model_params, sizes));
  if (n == 0) return DN_OK;
  DN_CHECK(main_params && main_grads && m && v && weight_decay, DN_ERR_INVALID, "%s: NULL list",
           op);
  DN_TRY(check_adam(op, step, beta1, beta2, eps, lr));
  DN_TRY(dn_cuda_init(op));
  void *const *lists[5] = {model_params, (void *const *)main_params, (void *const *)main_grads,
                           (void *const *)m, (void *const *)v};
  Lists L;
  DN_TRY(upload_lists(op, n, 5, lists, sizes, weight_decay, &L));
  float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
  if (L.nchunks > 0)
    DN_DISPATCH(model_dtype, T,
                adamw_mixed_k<T><<<(unsigned)L.nchunks, THREADS, 0, dn_stream()>>>(
                    L, lr, beta1, beta2, eps, bc1, bc2, grad_scale););
  return finish_launch(op, &L);
}

dn_status dn_scale(dn_dtype dtype, int64_t n, void *const *tensors, const int64_t *sizes,
                   float factor) {
  const char *op = "dn_scale";
  DN_TRY(check_list(op, dtype, n, tensors, sizes));
  if (n == 0) return DN_OK;
  DN_TRY(dn_cuda_init(op));
  Lists L;
  DN_TRY(upload_lists(op, n, 1, &tensors, sizes, NULL, &L));
  if (L.nchunks > 0)
    DN_DISPATCH(dtype, T, scale_k<T><<<(unsigned)L.nchunks, THREADS, 0, dn_stream()>>>(L, factor););
  return finish_launch(op, &L);
}

/* *host = sum over all tensors of (scale * x)^2 */
static dn_status norm_of(const char *op, dn_dtype dtype, int64_t n, void *const *tensors,
                         const int64_t *sizes, float scale, double *host) {
  *host = 0.0;
  if (n == 0) return DN_OK;
  DN_TRY(dn_cuda_init(op));
  Lists L;
  DN_TRY(upload_lists(op, n, 1, &tensors, sizes, NULL, &L));
  if (L.nchunks == 0) return finish_launch(op, &L);
  double *part;
  dn_status st = dn_scratch(op, L.nchunks * 8, (void **)&part);
  if (st != DN_OK) {
    dn_free(L.block);
    return st;
  }
  DN_DISPATCH(dtype, T,
              normsq_k<T><<<(unsigned)L.nchunks, THREADS, 0, dn_stream()>>>(L, scale, part););
  finish_k<<<1, THREADS, 0, dn_stream()>>>(part, L.nchunks);
  cudaError_t e = cudaMemcpyAsync(host, part, 8, cudaMemcpyDeviceToHost, dn_stream());
  if (e == cudaSuccess) e = cudaStreamSynchronize(dn_stream());
  dn_free(part);
  dn_free(L.block);
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: %s", op, cudaGetErrorString(e));
  return DN_OK;
}

dn_status dn_norm_sq(dn_dtype dtype, int64_t n, void *const *tensors, const int64_t *sizes,
                     double *host_out) {
  const char *op = "dn_norm_sq";
  DN_TRY(check_list(op, dtype, n, tensors, sizes));
  DN_CHECK_PTR(host_out, op);
  return norm_of(op, dtype, n, tensors, sizes, 1.0f, host_out);
}

dn_status dn_grad_check(dn_dtype dtype, int64_t n, void *const *grads, const int64_t *sizes,
                        float scale, int32_t *host_found_inf, double *host_norm_sq) {
  const char *op = "dn_grad_check";
  DN_TRY(check_list(op, dtype, n, grads, sizes));
  DN_CHECK(host_found_inf && host_norm_sq, DN_ERR_INVALID, "%s: NULL output", op);
  double s = 0.0;
  DN_TRY(norm_of(op, dtype, n, grads, sizes, scale, &s));
  /* squares of finite floats cannot overflow a double sum: it is finite exactly when
   * every element is */
  *host_found_inf = !isfinite(s);
  *host_norm_sq = isfinite(s) ? s : INFINITY;
  return DN_OK;
}
