/* defines: dn_last_error, dn_abi_version, dn_backend_info, threads, the caching
 * allocator and the memcpy family of the CPU backend. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "common.h"

#ifdef DN_USE_OPENBLAS
void openblas_set_num_threads(int num_threads);
#endif

static _Thread_local char dn_error_buf[1024];

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

dn_status dn_abi_version(int32_t *out) {
  DN_CHECK_PTR(out, "dn_abi_version");
  *out = DN_ABI_VERSION;
  return DN_OK;
}

int dn_threads = 1;

static int default_threads(void) {
#ifdef _OPENMP
  return omp_get_num_procs();
#else
  return 1;
#endif
}

__attribute__((constructor)) static void dn_init_threads(void) {
  const char *env = getenv("DENOTRON_NUM_THREADS");
  int n = env ? atoi(env) : 0;
  dn_threads = n > 0 ? n : default_threads();
#ifdef DN_USE_OPENBLAS
  openblas_set_num_threads(dn_threads);
#endif
}

dn_status dn_set_num_threads(int32_t n) {
  DN_CHECK(n > 0 && n <= 4096, DN_ERR_INVALID, "dn_set_num_threads: %d is not in [1, 4096]",
           (int)n);
  dn_threads = n;
#ifdef DN_USE_OPENBLAS
  openblas_set_num_threads(n);
#endif
  return DN_OK;
}

dn_status dn_get_num_threads(int32_t *out) {
  DN_CHECK_PTR(out, "dn_get_num_threads");
  *out = dn_threads;
  return DN_OK;
}

dn_status dn_backend_info(char *buf, int64_t cap) {
  DN_CHECK_PTR(buf, "dn_backend_info");
  DN_CHECK_POS(cap, "dn_backend_info");
#ifdef DN_USE_OPENBLAS
  const char *gemm = "openblas";
#else
  const char *gemm = "builtin";
#endif
#if defined(__AVX2__) && defined(__FMA__)
  const char *simd = "avx2+fma";
#elif defined(__AVX__)
  const char *simd = "avx";
#else
  const char *simd = "generic";
#endif
#ifdef _OPENMP
  const char *par = "openmp";
#else
  const char *par = "serial";
#endif
  snprintf(buf, (size_t)cap, "cpu gemm=%s threads=%d simd=%s parallel=%s abi=%d", gemm,
           dn_threads, simd, par, DN_ABI_VERSION);
  return DN_OK;
}

/* ---- caching allocator ----------------------------------------------------
 * Blocks are rounded up to a size class (64-byte steps up to 4 KiB, then eight
 * classes per power of two) and returned to a free list of their class on
 * dn_free, so a training loop that allocates the same shapes every step reaches a
 * steady state after its first step. A 64-byte header in front of each block
 * keeps its class. DENOTRON_POISON_ALLOC=1 fills every block handed out with 0xFF bytes
 * (NaN in every float dtype), so tests catch a kernel that reads memory it was meant to
 * overwrite. */

#define DN_HEADER 64
#define DN_CLASSES 512

typedef struct dn_block {
  struct dn_block *next;
  int64_t bytes; /* the rounded size, header excluded */
  int32_t cls;
  int32_t magic;
} dn_block;

#define DN_BLOCK_LIVE 0x4C495645
#define DN_BLOCK_FREE 0x46524545

static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static dn_block *free_lists[DN_CLASSES];
static int64_t stat_in_use, stat_cached, stat_peak, stat_live;

static void size_class(int64_t bytes, int64_t *rounded, int32_t *cls) {
  if (bytes <= 4096) {
    int64_t j = (bytes + 63) / 64;
    if (j == 0) j = 1;
    *rounded = j * 64;
    *cls = (int32_t)j;
    return;
  }
  int k = 63 - __builtin_clzll((unsigned long long)(bytes - 1)); /* 2^k < bytes <= 2^(k+1) */
  int64_t step = (int64_t)1 << (k - 3);
  int64_t j = (bytes + step - 1) / step; /* 9..16 */
  *rounded = j * step;
  *cls = (int32_t)(65 + (k - 12) * 8 + (j - 9));
}

dn_status dn_malloc(int64_t bytes, void **out) {
  DN_CHECK_PTR(out, "dn_malloc");
  DN_CHECK(bytes >= 0 && bytes <= DN_MAX_BYTES, DN_ERR_INVALID,
           "dn_malloc: %lld bytes is not a size in [0, 2^46]", (long long)bytes);
  int64_t rounded;
  int32_t cls;
  size_class(bytes, &rounded, &cls);
  pthread_mutex_lock(&alloc_lock);
  dn_block *b = free_lists[cls];
  if (b) {
    free_lists[cls] = b->next;
    stat_cached -= rounded;
  }
  pthread_mutex_unlock(&alloc_lock);
  if (!b) {
    b = aligned_alloc(64, (size_t)(rounded + DN_HEADER));
    if (!b) {
      dn_empty_cache();
      b = aligned_alloc(64, (size_t)(rounded + DN_HEADER));
    }
    if (!b) {
      return DN_FAIL(DN_ERR_OOM, "dn_malloc: out of host memory allocating %lld bytes",
                     (long long)bytes);
    }
    b->bytes = rounded;
    b->cls = cls;
  }
  b->magic = DN_BLOCK_LIVE;
  b->next = NULL;
  pthread_mutex_lock(&alloc_lock);
  stat_in_use += rounded;
  stat_live += 1;
  if (stat_in_use > stat_peak) stat_peak = stat_in_use;
  pthread_mutex_unlock(&alloc_lock);
  *out = (char *)b + DN_HEADER;
  static int poison = -1;
  if (poison < 0) {
    const char *e = getenv("DENOTRON_POISON_ALLOC");
    poison = e && strcmp(e, "1") == 0;
  }
  if (poison) memset(*out, 0xFF, (size_t)bytes);
  return DN_OK;
}

dn_status dn_free(void *ptr) {
  if (!ptr) return DN_OK;
  dn_block *b = (dn_block *)((char *)ptr - DN_HEADER);
  DN_CHECK(b->magic == DN_BLOCK_LIVE, DN_ERR_INVALID,
           "dn_free: %p is not a live block of this allocator (double free?)", ptr);
  b->magic = DN_BLOCK_FREE;
  pthread_mutex_lock(&alloc_lock);
  b->next = free_lists[b->cls];
  free_lists[b->cls] = b;
  stat_in_use -= b->bytes;
  stat_cached += b->bytes;
  stat_live -= 1;
  pthread_mutex_unlock(&alloc_lock);
  return DN_OK;
}

dn_status dn_empty_cache(void) {
  pthread_mutex_lock(&alloc_lock);
  for (int c = 0; c < DN_CLASSES; c++) {
    dn_block *b = free_lists[c];
    while (b) {
      dn_block *next = b->next;
      stat_cached -= b->bytes;
      free(b);
      b = next;
    }
    free_lists[c] = NULL;
  }
  pthread_mutex_unlock(&alloc_lock);
  return DN_OK;
}

dn_status dn_memory_stats(int64_t *out) {
  DN_CHECK_PTR(out, "dn_memory_stats");
  pthread_mutex_lock(&alloc_lock);
  out[0] = stat_in_use;
  out[1] = stat_cached;
  out[2] = stat_peak;
  out[3] = stat_live;
  pthread_mutex_unlock(&alloc_lock);
  return DN_OK;
}

static dn_status copy_bytes(const char *op, void *dst, const void *src, int64_t bytes) {
  DN_CHECK_EXTENT(op, bytes);
  if (bytes == 0) return DN_OK;
  DN_CHECK(dst && src, DN_ERR_INVALID, "%s: NULL pointer", op);
  memmove(dst, src, (size_t)bytes);
  return DN_OK;
}

dn_status dn_memcpy_h2d(void *dst, const void *host_src, int64_t bytes) {
  return copy_bytes("dn_memcpy_h2d", dst, host_src, bytes);
}
dn_status dn_memcpy_d2h(void *host_dst, const void *src, int64_t bytes) {
  return copy_bytes("dn_memcpy_d2h", host_dst, src, bytes);
}
dn_status dn_memcpy_d2d(void *dst, const void *src, int64_t bytes) {
  return copy_bytes("dn_memcpy_d2d", dst, src, bytes);
}

dn_status dn_memset_zero(void *dst, int64_t bytes) {
  DN_CHECK_EXTENT("dn_memset_zero", bytes);
  if (bytes == 0) return DN_OK;
  DN_CHECK_PTR(dst, "dn_memset_zero");
  /* Large buffers (gradients of a whole model) are cleared by all threads. */
  const int64_t chunk = (int64_t)1 << 20;
  int64_t nchunks = (bytes + chunk - 1) / chunk;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (nchunks > 4)
  for (int64_t c = 0; c < nchunks; c++) {
    int64_t start = c * chunk;
    int64_t len = bytes - start < chunk ? bytes - start : chunk;
    memset((char *)dst + start, 0, (size_t)len);
  }
  return DN_OK;
}

dn_status dn_synchronize(void) { return DN_OK; }

/* ---- timing: one monotonic timestamp per slot ---- */

#define DN_TIMER_SLOTS 65536
static double timer_ms[DN_TIMER_SLOTS];
static unsigned char timer_set[DN_TIMER_SLOTS];

dn_status dn_timer_record(int64_t slot) {
  DN_CHECK(slot >= 0 && slot < DN_TIMER_SLOTS, DN_ERR_INVALID,
           "dn_timer_record: slot %lld is not in [0, %d)", (long long)slot, DN_TIMER_SLOTS);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  timer_ms[slot] = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
  timer_set[slot] = 1;
  return DN_OK;
}

dn_status dn_timer_elapsed(int64_t n, const int64_t *from, const int64_t *to, double *host_ms) {
  DN_CHECK(n >= 0, DN_ERR_INVALID, "dn_timer_elapsed: negative count %lld", (long long)n);
  if (n == 0) return DN_OK;
  DN_CHECK(from && to && host_ms, DN_ERR_INVALID, "dn_timer_elapsed: NULL array");
  for (int64_t i = 0; i < n; i++) {
    int64_t s[2] = {from[i], to[i]};
    for (int k = 0; k < 2; k++)
      DN_CHECK(s[k] >= 0 && s[k] < DN_TIMER_SLOTS && timer_set[s[k]], DN_ERR_INVALID,
               "dn_timer_elapsed: pair %lld names slot %lld, which was never recorded",
               (long long)i, (long long)s[k]);
    host_ms[i] = timer_ms[to[i]] - timer_ms[from[i]];
  }
  return DN_OK;
}
