/* defines: dn_last_error, dn_abi_version, dn_backend_info, threads, the caching device
 * allocator (cudaMalloc, no managed memory), memory stats, the memcpy family and the
 * library stream of the CUDA backend.
 *
 * Every kernel and copy runs on one non-blocking stream, created on first use; the
 * GPU is LOCAL_RANK modulo the visible device count (one process per GPU). Copies to
 * and from pageable host memory return once the host buffer may be reused: host to
 * device is staged by the driver, device to host waits for the stream. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common.cuh"

static thread_local char dn_error_buf[1024];

dn_status dn_fail(dn_status code, const char *file, int line, const char *fmt, ...) {
  const char *base = strrchr(file, '/');
  int n = snprintf(dn_error_buf, sizeof dn_error_buf, "%s:%d: ", base ? base + 1 : file, line);
  if (n < 0) n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dn_error_buf + n, sizeof dn_error_buf - (size_t)n, fmt, ap);
  va_end(ap);
  return code;
}

const char *dn_last_error(void) { return dn_error_buf; }

#include "../shared/checks_impl.h"

const char *dn_dtype_name(dn_dtype dtype) {
  switch (dtype) {
  case DN_F32: return "f32";
  case DN_BF16: return "bf16";
  case DN_F16: return "f16";
  case DN_I32: return "i32";
  default: return "unknown";
  }
}

int dn_env_is(const char *name, const char *value) {
  const char *e = getenv(name);
  return e && strcmp(e, value) == 0;
}

dn_status dn_spans_allowed(const char *op, const char *what) {
  static const int on = dn_env_is("DENOTRON_CUDA_SPANS", "1");
  DN_CHECK(on, DN_ERR_UNSUPPORTED,
           "%s: %s is opt-in on CUDA until the GPU check has passed it: set "
           "DENOTRON_CUDA_SPANS=1, or use device 'cpu'",
           op, what);
  return DN_OK;
}

dn_status dn_abi_version(int32_t *out) {
  DN_CHECK_PTR(out, "dn_abi_version");
  *out = DN_ABI_VERSION;
  return DN_OK;
}

/* ---- device and stream ---- */

static std::mutex init_lock;
static int dn_device = -1, dn_sms = 1;
static cudaStream_t stream;
static cudaDeviceProp props;

dn_status dn_cuda_init(const char *op) {
  if (dn_device >= 0) return DN_OK;
  std::lock_guard<std::mutex> g(init_lock);
  if (dn_device >= 0) return DN_OK;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    return DN_FAIL(DN_ERR_RUNTIME,
                   "%s: no usable CUDA GPU: cudaGetDeviceCount reports %d devices (%s). Check "
                   "nvidia-smi, the driver version and CUDA_VISIBLE_DEVICES, or use device 'cpu'",
                   op, count, e == cudaSuccess ? "no error" : cudaGetErrorString(e));
  }
  const char *lr = getenv("LOCAL_RANK");
  int dev = (lr ? atoi(lr) : 0) % count;
  DN_CUDA(cudaSetDevice(dev), op);
  DN_CUDA(cudaGetDeviceProperties(&props, dev), op);
  DN_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), op);
  dn_sms = props.multiProcessorCount;
  dn_device = dev;
  return DN_OK;
}

cudaStream_t dn_stream(void) { return stream; }
int dn_sm_count(void) { return dn_sms; }

static int dn_threads = 1;

dn_status dn_set_num_threads(int32_t n) {
  DN_CHECK(n > 0 && n <= 4096, DN_ERR_INVALID, "dn_set_num_threads: %d is not in [1, 4096]",
           (int)n);
  dn_threads = n; /* host threads only matter on the CPU backend; kept for symmetry */
  return DN_OK;
}

dn_status dn_get_num_threads(int32_t *out) {
  DN_CHECK_PTR(out, "dn_get_num_threads");
  *out = dn_threads;
  return DN_OK;
}

const char *dn_gemm_backend(void); /* matmul.cu */

dn_status dn_backend_info(char *buf, int64_t cap) {
  DN_CHECK_PTR(buf, "dn_backend_info");
  DN_CHECK_POS(cap, "dn_backend_info");
  DN_TRY(dn_cuda_init("dn_backend_info"));
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  snprintf(buf, (size_t)cap,
           "cuda device=%d name=%s sm=%d%d sms=%d mem=%.1fGiB runtime=%d driver=%d gemm=%s "
           "abi=%d",
           dn_device, props.name, props.major, props.minor, props.multiProcessorCount,
           (double)props.totalGlobalMem / (1 << 30), rt, drv, dn_gemm_backend(),
           DN_ABI_VERSION);
  return DN_OK;
}

/* ---- caching allocator ----------------------------------------------------
 * The CPU backend's size classes (256-byte steps up to 4 KiB here, then eight classes
 * per power of two); freed blocks wait in their class's list, so a training loop that
 * allocates the same shapes every step stops calling cudaMalloc after its first step.
 * Device memory cannot carry a header, so a map from pointer to block size does. */

static std::mutex alloc_lock;
static std::map<int64_t, std::vector<void *>> free_lists; /* rounded size -> blocks */
static std::unordered_map<void *, int64_t> live;           /* pointer -> rounded size */
static int64_t stat_in_use, stat_cached, stat_peak;

static int64_t round_size(int64_t bytes) {
  if (bytes <= 4096) return bytes <= 256 ? 256 : (bytes + 255) / 256 * 256;
  int k = 63 - __builtin_clzll((unsigned long long)(bytes - 1));
  int64_t step = (int64_t)1 << (k - 3);
  return (bytes + step - 1) / step * step;
}

static void release_cached_locked(void) {
  for (auto &kv : free_lists) {
    for (void *p : kv.second) {
      cudaFree(p);
      stat_cached -= kv.first;
    }
  }
  free_lists.clear();
}

dn_status dn_malloc(int64_t bytes, void **out) {
  DN_CHECK_PTR(out, "dn_malloc");
  DN_CHECK(bytes >= 0 && bytes <= DN_MAX_BYTES, DN_ERR_INVALID,
           "dn_malloc: %lld bytes is not a size in [0, 2^46]", (long long)bytes);
  DN_TRY(dn_cuda_init("dn_malloc"));
  int64_t rounded = round_size(bytes);
  std::lock_guard<std::mutex> g(alloc_lock);
  void *p = NULL;
  auto it = free_lists.find(rounded);
  if (it != free_lists.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    stat_cached -= rounded;
  } else {
    cudaError_t e = cudaMalloc(&p, (size_t)rounded);
    if (e != cudaSuccess) {
      /* Give the cache back and try once more before reporting. */
      cudaGetLastError();
      cudaStreamSynchronize(stream);
      release_cached_locked();
      e = cudaMalloc(&p, (size_t)rounded);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t fr = 0, tot = 0;
      cudaMemGetInfo(&fr, &tot);
      return DN_FAIL(DN_ERR_OOM,
                     "dn_malloc: out of GPU memory allocating %lld bytes (%s; %.2f GiB in use "
                     "by this process, %.2f of %.2f GiB free on the device)",
                     (long long)bytes, cudaGetErrorString(e), (double)stat_in_use / (1 << 30),
                     (double)fr / (1 << 30), (double)tot / (1 << 30));
    }
  }
  live[p] = rounded;
  stat_in_use += rounded;
  if (stat_in_use > stat_peak) stat_peak = stat_in_use;
  *out = p;
  /* DENOTRON_POISON_ALLOC=1: every block starts as NaN, for tests that catch kernels reading
   * memory they were meant to overwrite */
  static const int poison = dn_env_is("DENOTRON_POISON_ALLOC", "1");
  if (poison && bytes > 0) DN_CUDA(cudaMemsetAsync(p, 0xFF, (size_t)bytes, stream), "dn_malloc");
  return DN_OK;
}

dn_status dn_free(void *ptr) {
  if (!ptr) return DN_OK;
  std::lock_guard<std::mutex> g(alloc_lock);
  auto it = live.find(ptr);
  DN_CHECK(it != live.end(), DN_ERR_INVALID,
           "dn_free: %p is not a live block of this allocator (double free?)", ptr);
  int64_t rounded = it->second;
  live.erase(it);
  /* Stream order makes reuse safe: every later use of the block is queued behind the
   * kernels already queued on the one stream. */
  free_lists[rounded].push_back(ptr);
  stat_in_use -= rounded;
  stat_cached += rounded;
  return DN_OK;
}

dn_status dn_empty_cache(void) {
  if (dn_device >= 0) DN_CUDA(cudaStreamSynchronize(stream), "dn_empty_cache");
  std::lock_guard<std::mutex> g(alloc_lock);
  release_cached_locked();
  return DN_OK;
}

dn_status dn_memory_stats(int64_t *out) {
  DN_CHECK_PTR(out, "dn_memory_stats");
  std::lock_guard<std::mutex> g(alloc_lock);
  out[0] = stat_in_use;
  out[1] = stat_cached;
  out[2] = stat_peak;
  out[3] = (int64_t)live.size();
  return DN_OK;
}

dn_status dn_scratch(const char *op, int64_t bytes, void **out) {
  dn_status st = dn_malloc(bytes, out);
  if (st != DN_OK) return DN_FAIL(st, "%s: scratch of %lld bytes: %s", op, (long long)bytes,
                                  dn_last_error());
  return DN_OK;
}

dn_status dn_upload(const char *op, const void *host, int64_t bytes, void **out) {
  DN_TRY(dn_scratch(op, bytes, out));
  cudaError_t e = cudaMemcpyAsync(*out, host, (size_t)bytes, cudaMemcpyHostToDevice, stream);
  if (e != cudaSuccess) {
    dn_free(*out);
    return DN_FAIL(DN_ERR_RUNTIME, "%s: uploading %lld bytes: %s", op, (long long)bytes,
                   cudaGetErrorString(e));
  }
  return DN_OK;
}

dn_status dn_flag_reset(const char *op, int32_t **flag) {
  static const int32_t none = INT32_MAX;
  return dn_upload(op, &none, 4, (void **)flag);
}

dn_status dn_flag_read(const char *op, int32_t *flag, int32_t *host) {
  cudaError_t e = cudaMemcpyAsync(host, flag, 4, cudaMemcpyDeviceToHost, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
  dn_free(flag);
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: reading the error flag: %s", op,
           cudaGetErrorString(e));
  return DN_OK;
}

static dn_status copy_bytes(const char *op, void *dst, const void *src, int64_t bytes,
                            cudaMemcpyKind kind) {
  DN_CHECK_EXTENT(op, bytes);
  if (bytes == 0) return DN_OK;
  DN_CHECK(dst && src, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  DN_CUDA(cudaMemcpyAsync(dst, src, (size_t)bytes, kind, stream), op);
  if (kind == cudaMemcpyDeviceToHost) DN_CUDA(cudaStreamSynchronize(stream), op);
  return DN_OK;
}

dn_status dn_memcpy_h2d(void *dst, const void *host_src, int64_t bytes) {
  return copy_bytes("dn_memcpy_h2d", dst, host_src, bytes, cudaMemcpyHostToDevice);
}
dn_status dn_memcpy_d2h(void *host_dst, const void *src, int64_t bytes) {
  return copy_bytes("dn_memcpy_d2h", host_dst, src, bytes, cudaMemcpyDeviceToHost);
}
dn_status dn_memcpy_d2d(void *dst, const void *src, int64_t bytes) {
  return copy_bytes("dn_memcpy_d2d", dst, src, bytes, cudaMemcpyDeviceToDevice);
}

dn_status dn_memset_zero(void *dst, int64_t bytes) {
  DN_CHECK_EXTENT("dn_memset_zero", bytes);
  if (bytes == 0) return DN_OK;
  DN_CHECK_PTR(dst, "dn_memset_zero");
  DN_TRY(dn_cuda_init("dn_memset_zero"));
  DN_CUDA(cudaMemsetAsync(dst, 0, (size_t)bytes, stream), "dn_memset_zero");
  return DN_OK;
}

dn_status dn_synchronize(void) {
  DN_TRY(dn_cuda_init("dn_synchronize"));
  DN_CUDA(cudaStreamSynchronize(stream), "dn_synchronize");
  return DN_OK;
}

/* ---- timing: one CUDA event per slot, created on first use ---- */

static const int64_t timer_slots = 65536;
static std::vector<cudaEvent_t> timer_events; /* grown to the highest slot recorded */
static std::vector<unsigned char> timer_set;
static std::mutex timer_lock;

dn_status dn_timer_record(int64_t slot) {
  const char *op = "dn_timer_record";
  DN_CHECK(slot >= 0 && slot < timer_slots, DN_ERR_INVALID, "%s: slot %lld is not in [0, %lld)",
           op, (long long)slot, (long long)timer_slots);
  DN_TRY(dn_cuda_init(op));
  std::lock_guard<std::mutex> g(timer_lock);
  while ((int64_t)timer_events.size() <= slot) {
    cudaEvent_t e;
    DN_CUDA(cudaEventCreate(&e), op);
    timer_events.push_back(e);
    timer_set.push_back(0);
  }
  DN_CUDA(cudaEventRecord(timer_events[slot], stream), op);
  timer_set[slot] = 1;
  return DN_OK;
}

dn_status dn_timer_elapsed(int64_t n, const int64_t *from, const int64_t *to, double *host_ms) {
  const char *op = "dn_timer_elapsed";
  DN_CHECK_EXTENT(op, n);
  if (n == 0) return DN_OK;
  DN_CHECK(from && to && host_ms, DN_ERR_INVALID, "%s: NULL array", op);
  DN_TRY(dn_cuda_init(op));
  std::lock_guard<std::mutex> g(timer_lock);
  for (int64_t i = 0; i < n; i++) {
    int64_t s[2] = {from[i], to[i]};
    for (int k = 0; k < 2; k++)
      DN_CHECK(s[k] >= 0 && s[k] < (int64_t)timer_set.size() && timer_set[s[k]], DN_ERR_INVALID,
               "%s: pair %lld names slot %lld, which was never recorded", op, (long long)i,
               (long long)s[k]);
  }
  DN_CUDA(cudaStreamSynchronize(stream), op);
  for (int64_t i = 0; i < n; i++) {
    float ms = 0;
    DN_CUDA(cudaEventElapsedTime(&ms, timer_events[from[i]], timer_events[to[i]]), op);
    host_ms[i] = ms;
  }
  return DN_OK;
}
