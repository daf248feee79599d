/* Shared by the CUDA kernels: error reporting, dtype dispatch, the library stream and
 * device scratch, the counter RNG (bit-identical to kernels/cpu/common.h, so dropout
 * masks and normal draws match the CPU backend), warp and block reductions. */
#ifndef DN_CUDA_COMMON_CUH
#define DN_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "../include/denotron.h"

#include "../shared/checks.h"

const char *dn_dtype_name(dn_dtype dtype);

/* Propagates a failed dn_status. */
#define DN_TRY(expr)                                                                           \
  do {                                                                                         \
    dn_status dn_try_status_ = (expr);                                                         \
    if (dn_try_status_ != DN_OK) return dn_try_status_;                                        \
  } while (0)
/* A failed CUDA runtime call becomes DN_ERR_RUNTIME carrying the CUDA error string. */
#define DN_CUDA(call, op)                                                                      \
  do {                                                                                         \
    cudaError_t dn_cuda_err_ = (call);                                                         \
    if (dn_cuda_err_ != cudaSuccess)                                                           \
      return DN_FAIL(DN_ERR_RUNTIME, "%s: %s failed: %s (%s)", (op), #call,                     \
                     cudaGetErrorString(dn_cuda_err_), cudaGetErrorName(dn_cuda_err_));        \
  } while (0)
/* After a launch: a bad configuration shows up here, a fault at the next sync. */
#define DN_LAUNCHED(op) DN_CUDA(cudaGetLastError(), op)

static inline int dn_is_float(dn_dtype d) { return d == DN_F32 || d == DN_BF16 || d == DN_F16; }
static inline dn_dtype dn_base_dtype(dn_dtype code) { return code & 0xff; }
static inline dn_dtype dn_grad_dtype(dn_dtype code) {
  int32_t g = (code >> 8) & 0xff;
  return g ? g - 1 : (code & 0xff);
}
static inline size_t dn_dtype_size(dn_dtype d) { return d == DN_BF16 || d == DN_F16 ? 2 : 4; }

#define DN_CHECK_FLOAT(code, op)                                                               \
  DN_CHECK(((code) & ~0xffff) == 0 && dn_is_float(dn_base_dtype(code)) &&                      \
               dn_is_float(dn_grad_dtype(code)),                                               \
           DN_ERR_UNSUPPORTED, "%s: dtype %s (code %d) is not a float dtype (f32, bf16, f16)",  \
           (op), dn_dtype_name(dn_base_dtype(code)), (int)(code))

/* ---- runtime (runtime.cu) ---- */

/* Picks the GPU and creates the library stream on first use; fails with a sentence
 * when no CUDA device or driver is present. */
dn_status dn_cuda_init(const char *op);
/* The stream every kernel and copy of this library runs on. */
cudaStream_t dn_stream(void);
/* Device scratch of at least `bytes` bytes from the caching allocator; release with
 * dn_free. Stream-ordered use only. */
dn_status dn_scratch(const char *op, int64_t bytes, void **out);
/* Copies bytes from the host to a fresh device scratch block (stream-ordered). */
dn_status dn_upload(const char *op, const void *host, int64_t bytes, void **out);
/* 1 when the environment variable `name` equals `value`. Switches read it once:
 *   static const int on = dn_env_is("DENOTRON_CUDA_X", "y"); */
int dn_env_is(const char *name, const char *value);
/* What packed and padded sequences need (attention over spans, rotary embedding with
 * per-token positions) runs only with DENOTRON_CUDA_SPANS=1 until the GPU check has passed
 * it: DN_OK then, else DN_ERR_UNSUPPORTED naming the variable. `what` names the feature in
 * the refusal. The variable is read once, at the first call, and no GPU is needed. */
dn_status dn_spans_allowed(const char *op, const char *what);
/* Device int32 flag, reset to INT32_MAX by dn_flag_reset; kernels atomicMin a bad index
 * into it and dn_flag_read syncs and returns it. */
dn_status dn_flag_reset(const char *op, int32_t **flag);
dn_status dn_flag_read(const char *op, int32_t *flag, int32_t *host);
int dn_sm_count(void);

/* ---- storage types ---- */

typedef __nv_bfloat16 bf16;
typedef __half f16;

__device__ __forceinline__ float ldf(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ldf(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ldf(const f16 *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void stf(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void stf(bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void stf(f16 *p, int64_t i, float v) { p[i] = __float2half_rn(v); }
/* p[i] += v with one rounding */
template <typename T> __device__ __forceinline__ void addf(T *p, int64_t i, float v) {
  stf(p, i, ldf(p, i) + v);
}

/* Runs the statements with T the storage type of float dtype dt. */
#define DN_DISPATCH(dt, T, ...)                                                                \
  do {                                                                                         \
    switch (dt) {                                                                              \
    case DN_BF16: {                                                                            \
      typedef bf16 T;                                                                          \
      __VA_ARGS__                                                                              \
    } break;                                                                                   \
    case DN_F16: {                                                                             \
      typedef f16 T;                                                                           \
      __VA_ARGS__                                                                              \
    } break;                                                                                   \
    default: {                                                                                 \
      typedef float T;                                                                         \
      __VA_ARGS__                                                                              \
    } break;                                                                                   \
    }                                                                                          \
  } while (0)

/* Two dtypes: T for activations, G for parameter gradients (DN_DTYPE_WITH_GRAD). */
#define DN_DISPATCH2(code, T, G, ...)                                                          \
  DN_DISPATCH(dn_base_dtype(code), T, DN_DISPATCH(dn_grad_dtype(code), G, __VA_ARGS__);)

/* ---- counter RNG, the same bits as the CPU's ---- */

__host__ __device__ __forceinline__ uint64_t dn_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
__host__ __device__ __forceinline__ uint64_t dn_rand64(uint64_t seed, uint64_t counter) {
  return dn_mix64(dn_mix64(seed + 0x9E3779B97F4A7C15ull) + counter * 0x9E3779B97F4A7C15ull);
}
__host__ __device__ __forceinline__ float dn_uniform(uint64_t seed, uint64_t counter) {
  return (float)(dn_rand64(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

/* ---- reductions ---- */

template <typename V> __device__ __forceinline__ V warp_sum(V v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* Sum over a block of up to 1024 threads (blockDim.x a multiple of 32); every thread
 * gets the result. The order is fixed, so the result is deterministic. */
template <typename V> __device__ V block_sum(V v) {
  __shared__ V part[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) part[w] = v;
  __syncthreads();
  V t = lane < nw ? part[lane] : V(0);
  return warp_sum(t);
}
__device__ __forceinline__ float block_max(float v) {
  __shared__ float part[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) part[w] = v;
  __syncthreads();
  float t = lane < nw ? part[lane] : -INFINITY;
  return warp_max(t);
}

static inline unsigned dn_blocks(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  int64_t cap = (int64_t)dn_sm_count() * 32;
  return (unsigned)(b < cap ? (b < 1 ? 1 : b) : cap);
}

/* Grid-stride loop over [0, n). */
#define DN_GRID_LOOP(i, n)                                                                     \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                    \
       i += (int64_t)gridDim.x * blockDim.x)

/* ---- deterministic column sums ----
 * out(C) (type G) += column sums of an (N,C) matrix whose element (i,c) is f(i,c).
 * Rows are cut into fixed chunks of DN_COLSUM_ROWS; each chunk's fp32 sums land in a
 * scratch row, and a second pass adds the chunks in order, so the result never
 * depends on scheduling (no atomics). */
#define DN_COLSUM_ROWS 256

template <typename F>
__global__ void colsum_partial(float *part, int64_t N, int64_t C, F f) {
  __shared__ float acc[8][33];
  int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
  int64_t r0 = (int64_t)blockIdx.y * DN_COLSUM_ROWS;
  int64_t r1 = r0 + DN_COLSUM_ROWS < N ? r0 + DN_COLSUM_ROWS : N;
  float s = 0.0f;
  if (c < C)
    for (int64_t i = r0 + threadIdx.y; i < r1; i += 8) s += f(i, c);
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.0f;
    for (int k = 0; k < 8; k++) t += acc[k][threadIdx.x];
    part[blockIdx.y * C + c] = t;
  }
}

template <typename G>
__global__ void colsum_finish(G *out, const float *part, int64_t chunks, int64_t C) {
  DN_GRID_LOOP(c, C) {
    float s = 0.0f;
    for (int64_t k = 0; k < chunks; k++) s += part[k * C + c];
    addf(out, c, s);
  }
}


template <typename G, typename F>
dn_status dn_column_sums(const char *op, G *out, int64_t N, int64_t C, F f) {
  int64_t chunks = (N + DN_COLSUM_ROWS - 1) / DN_COLSUM_ROWS;
  void *part;
  DN_TRY(dn_scratch(op, chunks * C * (int64_t)sizeof(float), &part));
  dim3 grid((unsigned)((C + 31) / 32), (unsigned)chunks);
  colsum_partial<<<grid, dim3(32, 8), 0, dn_stream()>>>((float *)part, N, C, f);
  colsum_finish<<<dn_blocks(C, 256), 256, 0, dn_stream()>>>(out, (const float *)part, chunks, C);
  cudaError_t e = cudaGetLastError();
  dn_free(part);
  if (e != cudaSuccess)
    return DN_FAIL(DN_ERR_RUNTIME, "%s: column-sum launch failed: %s", op, cudaGetErrorString(e));
  return DN_OK;
}

#endif
