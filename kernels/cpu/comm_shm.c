/* defines: the shared-memory process group of the CPU backend — dn_comm_shm_open,
 * dn_comm_shm_unlink, dn_comm_close, dn_comm_abort, dn_comm_barrier, dn_comm_allreduce,
 * dn_comm_allreduce_start, dn_comm_wait, dn_comm_reduce_scatter, dn_comm_all_gather,
 * dn_comm_broadcast, dn_comm_send, dn_comm_recv.
 *
 * One POSIX shared-memory segment per group:
 *
 *   header (4 KiB-aligned)  magic, size, slot size, futex word, abort flag,
 *                           per-rank phase counters and pids, per-pair send/recv counters
 *                           and the byte count of the message in flight (a recv that
 *                           expects another size fails at once instead of timing out)
 *   slots (size, slot_bytes) one slot per rank; each is an "in" half and an "out" half
 *
 * Every collective moves data in rounds that fit a slot. A round is: each rank copies
 * its pieces into its own "in" half; barrier; work; barrier. Reductions sum the ranks
 * in rank order 0, 1, ..., size-1 for every element, so every rank gets bit-identical
 * results and the result does not depend on timing.
 *
 * Waiting spins briefly, then sleeps on a futex in the segment (ranks usually
 * outnumber cores on a CPU machine). Every wait has a deadline, and while it waits it
 * checks that the ranks it waits for are still alive, so a dead peer is an error that
 * names the group, the operation and the peer — never a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "convert.h"

#define COMM_MAGIC 0x31304d4d4f434e44ull /* "DNCOMM01" */
#define COMM_MAX_RANKS 1024
#define COMM_HEADER_FIXED 256

enum { OP_SUM = 0, OP_MAX = 1, OP_MIN = 2 };

typedef struct {
  _Alignas(64) _Atomic uint64_t phase; /* barriers this rank has entered */
  _Atomic int32_t pid;
} rank_state; /* 64 bytes */

typedef struct {
  uint64_t magic;
  int32_t size;
  int32_t reserved;
  int64_t slot_bytes;
  _Alignas(64) _Atomic uint32_t wake;     /* futex word: bumped on every progress */
  _Atomic int32_t sleepers;               /* ranks sleeping on wake */
  _Alignas(64) _Atomic int32_t abort_rank; /* -1, or the rank that called dn_comm_abort */
} seg_header;

typedef struct {
  seg_header *hdr;
  rank_state *ranks;        /* (size) */
  _Atomic uint64_t *sent;   /* (size, size): [src][dst] chunks sent */
  _Atomic uint64_t *recvd;  /* (size, size): [src][dst] chunks received */
  _Atomic uint64_t *msg;    /* (size, size): [src][dst] bytes of the message being sent */
  char *slots;              /* (size, slot_bytes) */
  size_t map_bytes;
  int32_t rank, size;
  int64_t slot_bytes, timeout_ms;
  uint64_t phase;
  char name[128];
} comm;

static size_t header_bytes(int32_t size) {
  size_t b = COMM_HEADER_FIXED + (size_t)size * sizeof(rank_state) +
             3 * (size_t)size * (size_t)size * sizeof(uint64_t);
  return (b + 4095) & ~(size_t)4095;
}

static void layout(comm *c) {
  char *base = (char *)c->hdr;
  c->ranks = (rank_state *)(base + COMM_HEADER_FIXED);
  c->sent = (_Atomic uint64_t *)(base + COMM_HEADER_FIXED + (size_t)c->size * sizeof(rank_state));
  c->recvd = c->sent + (size_t)c->size * (size_t)c->size;
  c->msg = c->recvd + (size_t)c->size * (size_t)c->size;
  c->slots = base + header_bytes(c->size);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void wake_all(comm *c) {
  atomic_fetch_add(&c->hdr->wake, 1u);
  if (atomic_load(&c->hdr->sleepers) > 0) {
    syscall(SYS_futex, (uint32_t *)&c->hdr->wake, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
  }
}

/* Returns -1 when the condition holds, else a rank still being waited for. */
typedef int32_t (*pending_fn)(comm *c, const void *ctx);

static int32_t peer_alive(comm *c, int32_t peer) {
  int32_t pid = atomic_load(&c->ranks[peer].pid);
  if (pid <= 0) return 1;
  return !(kill(pid, 0) != 0 && errno == ESRCH);
}

static dn_status wait_until(comm *c, const char *op, pending_fn pending, const void *ctx) {
  int32_t who = pending(c, ctx);
  if (who < 0) return DN_OK;
  for (int i = 0; i < 2000 && who >= 0; i++) {
    __asm__ __volatile__("" ::: "memory");
    if ((i & 63) == 63) sched_yield();
    who = pending(c, ctx);
  }
  double start = now_ms(), last_check = start;
  while (who >= 0) {
    int32_t ab = atomic_load(&c->hdr->abort_rank);
    if (ab >= 0) {
      return DN_FAIL(DN_ERR_RUNTIME, "process group '%s': %s on rank %d: rank %d aborted the group",
                     c->name, op, c->rank, ab);
    }
    double t = now_ms();
    if (t - last_check >= 50) {
      last_check = t;
      if (!peer_alive(c, who)) {
        return DN_FAIL(DN_ERR_RUNTIME,
                       "process group '%s': %s on rank %d: peer rank %d (pid %d) has exited",
                       c->name, op, c->rank, who, (int)atomic_load(&c->ranks[who].pid));
      }
    }
    if (t - start >= (double)c->timeout_ms) {
      return DN_FAIL(DN_ERR_RUNTIME,
                     "process group '%s': %s on rank %d timed out after %lld ms waiting for "
                     "rank %d",
                     c->name, op, c->rank, (long long)c->timeout_ms, who);
    }
    atomic_fetch_add(&c->hdr->sleepers, 1);
    uint32_t w = atomic_load(&c->hdr->wake);
    who = pending(c, ctx);
    if (who >= 0) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      syscall(SYS_futex, (uint32_t *)&c->hdr->wake, FUTEX_WAIT, w, &ts, NULL, 0);
      who = pending(c, ctx);
    }
    atomic_fetch_sub(&c->hdr->sleepers, 1);
  }
  return DN_OK;
}

static int32_t pending_phase(comm *c, const void *ctx) {
  uint64_t target = *(const uint64_t *)ctx;
  for (int32_t q = 0; q < c->size; q++) {
    if (atomic_load(&c->ranks[q].phase) < target) return q;
  }
  return -1;
}

static dn_status barrier(comm *c, const char *op) {
  uint64_t target = ++c->phase;
  atomic_store(&c->ranks[c->rank].phase, target);
  wake_all(c);
  return wait_until(c, op, pending_phase, &target);
}

/* ---- lifecycle ----------------------------------------------------------- */

dn_status dn_comm_shm_open(const char *name, int32_t rank, int32_t size, int64_t slot_bytes,
                           int64_t timeout_ms, void **out) {
  DN_CHECK_PTR(name, "dn_comm_shm_open");
  DN_CHECK_PTR(out, "dn_comm_shm_open");
  DN_CHECK(size >= 1 && size <= COMM_MAX_RANKS, DN_ERR_INVALID,
           "dn_comm_shm_open: size %d is not in [1, %d]", (int)size, COMM_MAX_RANKS);
  DN_CHECK(rank >= 0 && rank < size, DN_ERR_INVALID,
           "dn_comm_shm_open: rank %d is not in [0, %d)", (int)rank, (int)size);
  DN_CHECK(slot_bytes >= 4096 && slot_bytes % 4096 == 0, DN_ERR_INVALID,
           "dn_comm_shm_open: slot_bytes %lld must be a positive multiple of 4096",
           (long long)slot_bytes);
  DN_CHECK_POS(timeout_ms, "dn_comm_shm_open");
  DN_CHECK(name[0] == '/' && strlen(name) < 100, DN_ERR_INVALID,
           "dn_comm_shm_open: segment name '%s' must start with '/' and be under 100 bytes",
           name);
  size_t map_bytes = header_bytes(size) + (size_t)size * (size_t)slot_bytes;
  int fd = rank == 0 ? shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600) : shm_open(name, O_RDWR, 0);
  if (fd < 0) {
    return DN_FAIL(DN_ERR_RUNTIME, "dn_comm_shm_open: shm_open('%s') on rank %d: %s", name,
                   (int)rank, strerror(errno));
  }
  if (rank == 0 && ftruncate(fd, (off_t)map_bytes) != 0) {
    int e = errno;
    close(fd);
    shm_unlink(name);
    return DN_FAIL(DN_ERR_RUNTIME, "dn_comm_shm_open: sizing '%s' to %zu bytes: %s", name,
                   map_bytes, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || (size_t)st.st_size != map_bytes) {
    close(fd);
    return DN_FAIL(DN_ERR_RUNTIME,
                   "dn_comm_shm_open: segment '%s' has %lld bytes, rank %d expects %zu "
                   "(do all ranks agree on the group size and slot size?)",
                   name, (long long)st.st_size, (int)rank, map_bytes);
  }
  void *base = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) {
    return DN_FAIL(DN_ERR_RUNTIME, "dn_comm_shm_open: mmap of '%s' (%zu bytes): %s", name,
                   map_bytes, strerror(errno));
  }
  comm *c = calloc(1, sizeof *c);
  if (!c) {
    munmap(base, map_bytes);
    return DN_FAIL(DN_ERR_OOM, "dn_comm_shm_open: out of host memory");
  }
  c->hdr = base;
  c->map_bytes = map_bytes;
  c->rank = rank;
  c->size = size;
  c->slot_bytes = slot_bytes;
  c->timeout_ms = timeout_ms;
  snprintf(c->name, sizeof c->name, "%s", name + 1);
  layout(c);
  if (rank == 0) {
    /* ftruncate zeroed everything; publish the header last. */
    c->hdr->size = size;
    c->hdr->slot_bytes = slot_bytes;
    atomic_store(&c->hdr->abort_rank, -1);
    atomic_thread_fence(memory_order_seq_cst);
    c->hdr->magic = COMM_MAGIC;
    atomic_thread_fence(memory_order_seq_cst);
  } else {
    atomic_thread_fence(memory_order_seq_cst);
    if (c->hdr->magic != COMM_MAGIC || c->hdr->size != size ||
        c->hdr->slot_bytes != slot_bytes) {
      munmap(base, map_bytes);
      free(c);
      return DN_FAIL(DN_ERR_RUNTIME,
                     "dn_comm_shm_open: segment '%s' is not an initialised group of %d ranks "
                     "with %lld-byte slots (open it on rank 0 first)",
                     name, (int)size, (long long)slot_bytes);
    }
  }
  atomic_store(&c->ranks[rank].pid, (int32_t)getpid());
  *out = c;
  return DN_OK;
}

dn_status dn_comm_shm_unlink(const char *name) {
  DN_CHECK_PTR(name, "dn_comm_shm_unlink");
  if (shm_unlink(name) != 0 && errno != ENOENT) {
    return DN_FAIL(DN_ERR_RUNTIME, "dn_comm_shm_unlink('%s'): %s", name, strerror(errno));
  }
  return DN_OK;
}

dn_status dn_comm_close(void *handle) {
  DN_CHECK_PTR(handle, "dn_comm_close");
  comm *c = handle;
  munmap(c->hdr, c->map_bytes);
  free(c);
  return DN_OK;
}

dn_status dn_comm_abort(void *handle) {
  DN_CHECK_PTR(handle, "dn_comm_abort");
  comm *c = handle;
  int32_t none = -1;
  atomic_compare_exchange_strong(&c->hdr->abort_rank, &none, c->rank);
  wake_all(c);
  return DN_OK;
}

dn_status dn_comm_barrier(void *handle) {
  DN_CHECK_PTR(handle, "dn_comm_barrier");
  return barrier(handle, "barrier");
}

/* ---- collectives --------------------------------------------------------- */

static int64_t elem_size(dn_dtype dtype) {
  switch (dtype) {
  case DN_F32:
  case DN_I32: return 4;
  case DN_BF16:
  case DN_F16: return 2;
  default: return 0;
  }
}

/* Shard q of n elements split among size ranks: [n*q/size, n*(q+1)/size). */
static int64_t shard_start(int64_t n, int32_t q, int32_t size) { return n * q / size; }
static int64_t shard_len(int64_t n, int32_t q, int32_t size) {
  return shard_start(n, q + 1, size) - shard_start(n, q, size);
}

/* Elements per rank per round: a slot's half split among the ranks, 64-byte aligned. */
static int64_t piece_elems(const comm *c, int64_t esz) {
  int64_t p = (c->slot_bytes / 2 / c->size) / esz;
  p -= p % (64 / esz);
  return p > 0 ? p : 1;
}

static char *in_half(comm *c, int32_t q) { return c->slots + (size_t)q * (size_t)c->slot_bytes; }
static char *out_half(comm *c, int32_t q) { return in_half(c, q) + c->slot_bytes / 2; }

static dn_status check_common(comm *c, dn_dtype dtype, int64_t n, const char *op) {
  DN_CHECK(c != NULL, DN_ERR_INVALID, "%s: the group handle is NULL (closed?)", op);
  DN_CHECK(elem_size(dtype) > 0, DN_ERR_INVALID, "%s: unknown dtype code %d", op, (int)dtype);
  DN_CHECK_EXTENT(op, n);
  return DN_OK;
}

static dn_status check_reduce(dn_dtype dtype, int32_t op, const char *name) {
  DN_CHECK(op >= OP_SUM && op <= OP_MIN, DN_ERR_INVALID,
           "%s: unknown reduction %d (0 sum, 1 max, 2 min)", name, (int)op);
  (void)dtype;
  (void)name;
  return DN_OK;
}

/* out(len) = in_0 op in_1 op ... op in_{size-1}, in rank order, each in_q at
 * in_half(q) + offset. */
static float combine(int32_t op, float a, float b) {
  return op == OP_SUM ? a + b : op == OP_MAX ? fmaxf(a, b) : fminf(a, b);
}

static float load16(dn_dtype dtype, const uint16_t *p, int64_t i) {
  return dtype == DN_BF16 ? dn_bf16_to_f32(p[i]) : dn_f16_to_f32(p[i]);
}

/* bf16/f16: each element is combined in fp32, in rank order, and rounded once. */
static void reduce_piece16(comm *c, dn_dtype dtype, int32_t op, int64_t offset, int64_t len,
                           uint16_t *out) {
  for (int64_t i = 0; i < len; i++) {
    float acc = load16(dtype, (const uint16_t *)in_half(c, 0) + offset, i);
    for (int32_t q = 1; q < c->size; q++) {
      acc = combine(op, acc, load16(dtype, (const uint16_t *)in_half(c, q) + offset, i));
    }
    out[i] = dtype == DN_BF16 ? dn_f32_to_bf16(acc) : dn_f32_to_f16(acc);
  }
}

static void reduce_piece(comm *c, dn_dtype dtype, int32_t op, int64_t offset, int64_t len,
                         void *out) {
  if (len <= 0) return;
  if (dtype == DN_BF16 || dtype == DN_F16) {
    reduce_piece16(c, dtype, op, offset, len, out);
    return;
  }
  int64_t esz = elem_size(dtype);
  memcpy(out, in_half(c, 0) + offset * esz, (size_t)(len * esz));
  for (int32_t q = 1; q < c->size; q++) {
    const void *src = in_half(c, q) + offset * esz;
    if (dtype == DN_F32) {
      float *o = out;
      const float *s = src;
      if (op == OP_SUM) {
        for (int64_t i = 0; i < len; i++) o[i] += s[i];
      } else if (op == OP_MAX) {
        for (int64_t i = 0; i < len; i++) o[i] = fmaxf(o[i], s[i]);
      } else {
        for (int64_t i = 0; i < len; i++) o[i] = fminf(o[i], s[i]);
      }
    } else {
      int32_t *o = out;
      const int32_t *s = src;
      if (op == OP_SUM) {
        for (int64_t i = 0; i < len; i++) o[i] = (int32_t)((uint32_t)o[i] + (uint32_t)s[i]);
      } else if (op == OP_MAX) {
        for (int64_t i = 0; i < len; i++) o[i] = o[i] > s[i] ? o[i] : s[i];
      } else {
        for (int64_t i = 0; i < len; i++) o[i] = o[i] < s[i] ? o[i] : s[i];
      }
    }
  }
}

/* The length of round j's piece of shard q. */
static int64_t piece_len(int64_t n, int32_t q, int32_t size, int64_t j, int64_t p) {
  int64_t len = shard_len(n, q, size) - j * p;
  return len < 0 ? 0 : (len < p ? len : p);
}

/* Copies round j's pieces of every shard of send(n) into this rank's in-half. */
static void stage_pieces(comm *c, int64_t esz, const char *send, int64_t n, int64_t j,
                         int64_t p) {
  for (int32_t q = 0; q < c->size; q++) {
    int64_t len = piece_len(n, q, c->size, j, p);
    if (len > 0) {
      memcpy(in_half(c, c->rank) + q * p * esz, send + (shard_start(n, q, c->size) + j * p) * esz,
             (size_t)(len * esz));
    }
  }
}

static int64_t rounds(int64_t n, int32_t size, int64_t p) {
  int64_t longest = (n + size - 1) / size;
  return (longest + p - 1) / p;
}

dn_status dn_comm_allreduce(void *handle, dn_dtype dtype, int32_t op, const void *send,
                            void *recv, int64_t n) {
  comm *c = handle;
  dn_status s = check_common(c, dtype, n, "dn_comm_allreduce");
  if (s) return s;
  if ((s = check_reduce(dtype, op, "dn_comm_allreduce"))) return s;
  if (n == 0) return DN_OK;
  DN_CHECK(send && recv, DN_ERR_INVALID, "dn_comm_allreduce: NULL buffer");
  int64_t esz = elem_size(dtype), p = piece_elems(c, esz), R = rounds(n, c->size, p);
  for (int64_t j = 0; j < R; j++) {
    stage_pieces(c, esz, send, n, j, p);
    if ((s = barrier(c, "all_reduce"))) return s;
    reduce_piece(c, dtype, op, c->rank * p, piece_len(n, c->rank, c->size, j, p),
                 out_half(c, c->rank));
    if ((s = barrier(c, "all_reduce"))) return s;
    for (int32_t q = 0; q < c->size; q++) {
      int64_t len = piece_len(n, q, c->size, j, p);
      if (len > 0) {
        memcpy((char *)recv + (shard_start(n, q, c->size) + j * p) * esz, out_half(c, q),
               (size_t)(len * esz));
      }
    }
  }
  /* No trailing barrier: the next collective writes out-halves only after its first
   * barrier, which every rank reaches after reading these. */
  return DN_OK;
}

dn_status dn_comm_reduce_scatter(void *handle, dn_dtype dtype, int32_t op, const void *send,
                                 void *recv, int64_t n) {
  comm *c = handle;
  dn_status s = check_common(c, dtype, n, "dn_comm_reduce_scatter");
  if (s) return s;
  if ((s = check_reduce(dtype, op, "dn_comm_reduce_scatter"))) return s;
  if (n == 0) return DN_OK;
  DN_CHECK(send && recv, DN_ERR_INVALID, "dn_comm_reduce_scatter: NULL buffer");
  int64_t esz = elem_size(dtype), p = piece_elems(c, esz), R = rounds(n, c->size, p);
  for (int64_t j = 0; j < R; j++) {
    stage_pieces(c, esz, send, n, j, p);
    if ((s = barrier(c, "reduce_scatter"))) return s;
    reduce_piece(c, dtype, op, c->rank * p, piece_len(n, c->rank, c->size, j, p),
                 (char *)recv + j * p * esz);
    if ((s = barrier(c, "reduce_scatter"))) return s;
  }
  return DN_OK;
}

dn_status dn_comm_all_gather(void *handle, dn_dtype dtype, const void *send, void *recv,
                             int64_t n) {
  comm *c = handle;
  dn_status s = check_common(c, dtype, n, "dn_comm_all_gather");
  if (s) return s;
  if (n == 0) return DN_OK;
  DN_CHECK(send && recv, DN_ERR_INVALID, "dn_comm_all_gather: NULL buffer");
  int64_t esz = elem_size(dtype), p = piece_elems(c, esz) * c->size, R = rounds(n, c->size, p);
  for (int64_t j = 0; j < R; j++) {
    int64_t mine = piece_len(n, c->rank, c->size, j, p);
    if (mine > 0) memcpy(in_half(c, c->rank), (const char *)send + j * p * esz, (size_t)(mine * esz));
    if ((s = barrier(c, "all_gather"))) return s;
    for (int32_t q = 0; q < c->size; q++) {
      int64_t len = piece_len(n, q, c->size, j, p);
      char *dst = (char *)recv + (shard_start(n, q, c->size) + j * p) * esz;
      if (len > 0) memcpy(dst, in_half(c, q), (size_t)(len * esz));
    }
    if ((s = barrier(c, "all_gather"))) return s;
  }
  return DN_OK;
}

dn_status dn_comm_broadcast(void *handle, dn_dtype dtype, void *buf, int64_t n, int32_t root) {
  comm *c = handle;
  dn_status s = check_common(c, dtype, n, "dn_comm_broadcast");
  if (s) return s;
  DN_CHECK(root >= 0 && root < c->size, DN_ERR_INVALID,
           "dn_comm_broadcast: root %d is not a rank of group '%s' (size %d)", (int)root,
           c->name, (int)c->size);
  if (n == 0) return DN_OK;
  DN_CHECK_PTR(buf, "dn_comm_broadcast");
  int64_t esz = elem_size(dtype), p = (c->slot_bytes / 2) / esz;
  for (int64_t off = 0; off < n; off += p) {
    int64_t len = n - off < p ? n - off : p;
    if (c->rank == root) memcpy(in_half(c, root), (char *)buf + off * esz, (size_t)(len * esz));
    if ((s = barrier(c, "broadcast"))) return s;
    if (c->rank != root) memcpy((char *)buf + off * esz, in_half(c, root), (size_t)(len * esz));
    if ((s = barrier(c, "broadcast"))) return s;
  }
  return DN_OK;
}

/* ---- point to point ------------------------------------------------------ */

typedef struct {
  _Atomic uint64_t *counter;
  uint64_t target;
  int32_t peer;
} counter_wait;

static int32_t pending_counter(comm *c, const void *ctx) {
  (void)c;
  const counter_wait *w = ctx;
  return atomic_load(w->counter) >= w->target ? -1 : w->peer;
}

static dn_status check_p2p(comm *c, dn_dtype dtype, const void *buf, int64_t n, int32_t peer,
                           const char *op) {
  dn_status s = check_common(c, dtype, n, op);
  if (s) return s;
  DN_CHECK(peer >= 0 && peer < c->size && peer != c->rank, DN_ERR_INVALID,
           "%s: peer %d is not another rank of group '%s' (size %d, this rank %d)", op,
           (int)peer, c->name, (int)c->size, (int)c->rank);
  DN_CHECK(n == 0 || buf != NULL, DN_ERR_INVALID, "%s: NULL buffer", op);
  return DN_OK;
}

dn_status dn_comm_send(void *handle, dn_dtype dtype, const void *buf, int64_t n, int32_t peer) {
  comm *c = handle;
  dn_status s = check_p2p(c, dtype, buf, n, peer, "dn_comm_send");
  if (s) return s;
  int64_t esz = elem_size(dtype), p = (c->slot_bytes / 2) / esz;
  size_t pair = (size_t)c->rank * (size_t)c->size + (size_t)peer;
  /* read by the receiver with the first chunk; the previous message was received whole */
  atomic_store(&c->msg[pair], (uint64_t)(n * esz));
  for (int64_t off = 0; off < n; off += p) {
    int64_t len = n - off < p ? n - off : p;
    memcpy(in_half(c, c->rank), (const char *)buf + off * esz, (size_t)(len * esz));
    uint64_t k = atomic_load(&c->sent[pair]) + 1;
    atomic_store(&c->sent[pair], k);
    wake_all(c);
    /* The slot is reused by the next chunk and by the next collective: wait until the
     * peer has copied it out. */
    counter_wait w = {&c->recvd[pair], k, peer};
    if ((s = wait_until(c, "send", pending_counter, &w))) return s;
  }
  return DN_OK;
}

dn_status dn_comm_recv(void *handle, dn_dtype dtype, void *buf, int64_t n, int32_t peer) {
  comm *c = handle;
  dn_status s = check_p2p(c, dtype, buf, n, peer, "dn_comm_recv");
  if (s) return s;
  int64_t esz = elem_size(dtype), p = (c->slot_bytes / 2) / esz;
  size_t pair = (size_t)peer * (size_t)c->size + (size_t)c->rank;
  for (int64_t off = 0; off < n; off += p) {
    int64_t len = n - off < p ? n - off : p;
    uint64_t k = atomic_load(&c->recvd[pair]) + 1;
    counter_wait w = {&c->sent[pair], k, peer};
    if ((s = wait_until(c, "recv", pending_counter, &w))) return s;
    uint64_t sent_bytes = atomic_load(&c->msg[pair]);
    if (off == 0 && sent_bytes != (uint64_t)(n * esz)) {
      /* Chunk counts would differ and both ranks wait out the timeout: fail now, and
       * abort the group so that the sender stops waiting too. */
      int32_t none = -1;
      atomic_compare_exchange_strong(&c->hdr->abort_rank, &none, c->rank);
      wake_all(c);
      return DN_FAIL(DN_ERR_INVALID,
                     "process group '%s': recv on rank %d: rank %d sent %llu bytes, this recv "
                     "takes %lld (%lld %s elements): the send and recv differ in shape or dtype",
                     c->name, (int)c->rank, (int)peer, (unsigned long long)sent_bytes,
                     (long long)(n * esz), (long long)n, dn_dtype_name(dtype));
    }
    memcpy((char *)buf + off * esz, in_half(c, peer), (size_t)(len * esz));
    atomic_store(&c->recvd[pair], k);
    wake_all(c);
  }
  return DN_OK;
}

/* Shared memory has no stream to overlap on: the started all-reduce is the blocking one,
 * done when it returns, and there is nothing left to wait for. */
dn_status dn_comm_allreduce_start(void *handle, dn_dtype dtype, int32_t op, void *buf,
                                  int64_t n) {
  return dn_comm_allreduce(handle, dtype, op, buf, buf, n);
}

dn_status dn_comm_wait(void *handle) {
  DN_CHECK_PTR(handle, "dn_comm_wait");
  return DN_OK;
}
