/* defines: dn_fill, dn_fill_normal, dn_add, dn_axpby, dn_cast, dn_sum,
 * dn_dropout_forward, dn_dropout_backward
 * Elementwise kernels are grid-stride loops computing in fp32; random draws use the
 * CPU's counter RNG bit for bit, so a tensor or dropout mask is the same on both
 * backends. */
#include <math.h>
#include "common.cuh"

#define THREADS 256
#define LAUNCH(kernel, n) kernel<<<dn_blocks((n), THREADS), THREADS, 0, dn_stream()>>>

template <typename T> __global__ void fill_k(T *out, int64_t n, float v) {
  DN_GRID_LOOP(i, n) stf(out, i, v);
}

dn_status dn_fill(dn_dtype dtype, void *out, int64_t n, float value) {
  DN_CHECK_FLOAT(dtype, "dn_fill");
  DN_CHECK_EXTENT("dn_fill", n);
  if (n == 0) return DN_OK;
  DN_CHECK_PTR(out, "dn_fill");
  DN_TRY(dn_cuda_init("dn_fill"));
  DN_DISPATCH(dn_base_dtype(dtype), T, LAUNCH(fill_k<T>, n)((T *)out, n, value););
  DN_LAUNCHED("dn_fill");
  return DN_OK;
}

template <typename T>
__global__ void normal_k(T *out, int64_t n, float mean, float sd, uint64_t seed, uint64_t off) {
  DN_GRID_LOOP(i, n) {
    /* Box-Muller in double from one draw, exactly as the CPU backend */
    uint64_t r = dn_rand64(seed, off + (uint64_t)i);
    double u1 = ((double)(r >> 32) + 1.0) * (1.0 / 4294967296.0);
    double u2 = (double)(r & 0xFFFFFFFFu) * (1.0 / 4294967296.0);
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    stf(out, i, mean + sd * (float)z);
  }
}

dn_status dn_fill_normal(dn_dtype dtype, void *out, int64_t n, float mean, float std,
                         uint64_t seed, uint64_t offset) {
  DN_CHECK_FLOAT(dtype, "dn_fill_normal");
  DN_CHECK_EXTENT("dn_fill_normal", n);
  DN_CHECK(std >= 0, DN_ERR_INVALID, "dn_fill_normal: std %g is negative", (double)std);
  if (n == 0) return DN_OK;
  DN_CHECK_PTR(out, "dn_fill_normal");
  DN_TRY(dn_cuda_init("dn_fill_normal"));
  DN_DISPATCH(dn_base_dtype(dtype), T,
              LAUNCH(normal_k<T>, n)((T *)out, n, mean, std, seed, offset););
  DN_LAUNCHED("dn_fill_normal");
  return DN_OK;
}

template <typename T> __global__ void add_k(T *out, const T *a, const T *b, int64_t n) {
  DN_GRID_LOOP(i, n) stf(out, i, ldf(a, i) + ldf(b, i));
}

dn_status dn_add(dn_dtype dtype, void *out, const void *a, const void *b, int64_t n) {
  DN_CHECK_FLOAT(dtype, "dn_add");
  DN_CHECK_EXTENT("dn_add", n);
  if (n == 0) return DN_OK;
  DN_CHECK(out && a && b, DN_ERR_INVALID, "dn_add: NULL pointer");
  DN_TRY(dn_cuda_init("dn_add"));
  DN_DISPATCH(dn_base_dtype(dtype), T,
              LAUNCH(add_k<T>, n)((T *)out, (const T *)a, (const T *)b, n););
  DN_LAUNCHED("dn_add");
  return DN_OK;
}

/* y has type Y, x type X (a 16-bit gradient into an fp32 main gradient, or equal) */
template <typename Y, typename X>
__global__ void axpby_k(Y *y, float alpha, const X *x, float beta, int64_t n) {
  DN_GRID_LOOP(i, n) {
    float yi = beta == 0.0f ? 0.0f : beta * ldf(y, i);
    stf(y, i, alpha * ldf(x, i) + yi);
  }
}

dn_status dn_axpby(dn_dtype dtype, void *y, float alpha, const void *x, float beta, int64_t n) {
  DN_CHECK_FLOAT(dtype, "dn_axpby");
  DN_CHECK_EXTENT("dn_axpby", n);
  if (n == 0) return DN_OK;
  DN_CHECK(x && y, DN_ERR_INVALID, "dn_axpby: NULL pointer");
  DN_TRY(dn_cuda_init("dn_axpby"));
  DN_DISPATCH2(dtype, X, Y, LAUNCH((axpby_k<Y, X>), n)((Y *)y, alpha, (const X *)x, beta, n););
  DN_LAUNCHED("dn_axpby");
  return DN_OK;
}

template <typename D, typename S> __global__ void cast_k(D *dst, const S *src, int64_t n) {
  DN_GRID_LOOP(i, n) stf(dst, i, ldf(src, i));
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
  DN_TRY(dn_cuda_init("dn_cast"));
  if (ints || dst_dtype == src_dtype) {
    DN_CUDA(cudaMemcpyAsync(dst, src, (size_t)n * (ints ? 4 : dn_dtype_size(dst_dtype)),
                            cudaMemcpyDeviceToDevice, dn_stream()),
            "dn_cast");
    return DN_OK;
  }
  DN_DISPATCH(dst_dtype, D,
              DN_DISPATCH(src_dtype, S, LAUNCH((cast_k<D, S>), n)((D *)dst, (const S *)src, n);););
  DN_LAUNCHED("dn_cast");
  return DN_OK;
}

/* A fixed grid of SUM_BLOCKS blocks writes one double each; one block adds them in
 * order: deterministic whatever the GPU. */
#define SUM_BLOCKS 256
template <typename T> __global__ void sum_partial_k(double *part, const T *x, int64_t n) {
  double s = 0.0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    s += (double)ldf(x, i);
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void sum_finish_k(double *part, int n) {
  double s = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
  s = block_sum(s);
  if (threadIdx.x == 0) part[0] = s;
}

dn_status dn_sum(dn_dtype dtype, double *host_out, const void *inp, int64_t n) {
  DN_CHECK_FLOAT(dtype, "dn_sum");
  DN_CHECK_PTR(host_out, "dn_sum");
  DN_CHECK_EXTENT("dn_sum", n);
  if (n == 0) {
    *host_out = 0.0;
    return DN_OK;
  }
  DN_CHECK_PTR(inp, "dn_sum");
  DN_TRY(dn_cuda_init("dn_sum"));
  double *part;
  DN_TRY(dn_scratch("dn_sum", SUM_BLOCKS * sizeof(double), (void **)&part));
  DN_DISPATCH(dn_base_dtype(dtype), T,
              sum_partial_k<T><<<SUM_BLOCKS, THREADS, 0, dn_stream()>>>(part, (const T *)inp, n););
  sum_finish_k<<<1, THREADS, 0, dn_stream()>>>(part, SUM_BLOCKS);
  cudaError_t e = cudaMemcpyAsync(host_out, part, sizeof(double), cudaMemcpyDeviceToHost,
                                  dn_stream());
  if (e == cudaSuccess) e = cudaStreamSynchronize(dn_stream());
  dn_free(part);
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "dn_sum: %s", cudaGetErrorString(e));
  return DN_OK;
}

static dn_status check_dropout(const char *op, dn_dtype dtype, int64_t n, float p) {
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK_EXTENT(op, n);
  DN_CHECK(p >= 0.0f && p < 1.0f, DN_ERR_INVALID, "%s: p = %g is not in [0, 1)", op,
           (double)p);
  return DN_OK;
}

template <typename T>
__global__ void dropout_fwd_k(T *out, const T *inp, int64_t n, float p, float scale,
                              uint64_t seed, uint64_t off) {
  DN_GRID_LOOP(i, n) {
    float v = dn_uniform(seed, off + (uint64_t)i) >= p ? ldf(inp, i) * scale : 0.0f;
    stf(out, i, v);
  }
}
template <typename T>
__global__ void dropout_bwd_k(T *dinp, const T *dout, int64_t n, float p, float scale,
                              uint64_t seed, uint64_t off) {
  DN_GRID_LOOP(i, n) {
    if (dn_uniform(seed, off + (uint64_t)i) >= p) addf(dinp, i, ldf(dout, i) * scale);
  }
}

dn_status dn_dropout_forward(dn_dtype dtype, void *out, const void *inp, int64_t n, float p,
                             uint64_t seed, uint64_t offset) {
  DN_TRY(check_dropout("dn_dropout_forward", dtype, n, p));
  if (n == 0) return DN_OK;
  DN_CHECK(out && inp, DN_ERR_INVALID, "dn_dropout_forward: NULL pointer");
  DN_TRY(dn_cuda_init("dn_dropout_forward"));
  float scale = 1.0f / (1.0f - p);
  DN_DISPATCH(dn_base_dtype(dtype), T,
              LAUNCH(dropout_fwd_k<T>, n)((T *)out, (const T *)inp, n, p, scale, seed,
                                          offset););
  DN_LAUNCHED("dn_dropout_forward");
  return DN_OK;
}

dn_status dn_dropout_backward(dn_dtype dtype, void *dinp, const void *dout, int64_t n, float p,
                              uint64_t seed, uint64_t offset) {
  DN_TRY(check_dropout("dn_dropout_backward", dtype, n, p));
  if (n == 0) return DN_OK;
  DN_CHECK(dinp && dout, DN_ERR_INVALID, "dn_dropout_backward: NULL pointer");
  DN_TRY(dn_cuda_init("dn_dropout_backward"));
  float scale = 1.0f / (1.0f - p);
  DN_DISPATCH(dn_base_dtype(dtype), T,
              LAUNCH(dropout_bwd_k<T>, n)((T *)dinp, (const T *)dout, n, p, scale, seed,
                                          offset););
  DN_LAUNCHED("dn_dropout_backward");
  return DN_OK;
}
