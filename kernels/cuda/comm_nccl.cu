/* defines: the process groups of the CUDA backend — dn_comm_nccl_unique_id,
 * dn_comm_nccl_open, and dn_comm_close, dn_comm_abort, dn_comm_barrier,
 * dn_comm_allreduce, dn_comm_allreduce_start, dn_comm_wait, dn_comm_reduce_scatter,
 * dn_comm_all_gather, dn_comm_broadcast,
 * dn_comm_send, dn_comm_recv over NCCL (opened at run time, DENOTRON_NCCL_LIB).
 * dn_comm_shm_open / dn_comm_shm_unlink are the CPU backend's and fail here.
 *
 * Collectives are queued on the library stream like kernels (stream order keeps them
 * consistent with the surrounding compute); barrier, send and recv wait for the GPU,
 * as their CPU counterparts' contracts say. Every such wait polls the stream and the
 * communicator's asynchronous error against the group's deadline: a dead or silent peer
 * becomes an error naming the operation and the peer, with the communicator aborted, not
 * a hang (the shm backend's contract). dn_comm_abort aborts NCCL's communicator and leaves
 * the handle for dn_comm_close to free. Shards follow the CPU backend's floor
 * division, so uneven sizes work: equal shards go to ncclReduceScatter/ncclAllGather,
 * uneven ones to an all-reduce plus a copy, or one broadcast per rank. NCCL sums in its
 * own ring order, not rank order: every rank still gets identical values. */
#include <cstdio>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>

#include "common.cuh"
#include "dynload.h"
#include "nccl_api.h"

static struct {
  ncclGetUniqueId_fn get_id;
  ncclCommInitRank_fn init_rank;
  ncclCommDestroy_fn destroy;
  ncclCommAbort_fn abort;
  ncclCommGetAsyncError_fn async_error;
  ncclGetErrorString_fn error_string;
  ncclAllReduce_fn all_reduce;
  ncclReduceScatter_fn reduce_scatter;
  ncclAllGather_fn all_gather;
  ncclBroadcast_fn broadcast;
  ncclSend_fn send;
  ncclRecv_fn recv;
  ncclGroupStart_fn group_start;
  ncclGroupEnd_fn group_end;
  int loaded;
  dn_status error;
  char message[1024];
} nccl;
static std::mutex nccl_lock;

#define SYM(field, name)                                                                       \
  do {                                                                                         \
    void *f_;                                                                                  \
    DN_TRY(dn_dynsym(op, h, "libnccl", name, &f_));                                            \
    nccl.field = (decltype(nccl.field))f_;                                                     \
  } while (0)

static dn_status load_nccl(const char *op) {
  static const char *names[] = {"libnccl.so.2", "libnccl.so", NULL};
  void *h;
  DN_TRY(dn_dynload(op, "DENOTRON_NCCL_LIB", names, "nccl", NULL,
                    "Install NCCL (pip install nvidia-nccl-cu12, or apt-get install libnccl2)",
                    &h));
  SYM(get_id, "ncclGetUniqueId");
  SYM(init_rank, "ncclCommInitRank");
  SYM(destroy, "ncclCommDestroy");
  SYM(abort, "ncclCommAbort");
  SYM(async_error, "ncclCommGetAsyncError");
  SYM(error_string, "ncclGetErrorString");
  SYM(all_reduce, "ncclAllReduce");
  SYM(reduce_scatter, "ncclReduceScatter");
  SYM(all_gather, "ncclAllGather");
  SYM(broadcast, "ncclBroadcast");
  SYM(send, "ncclSend");
  SYM(recv, "ncclRecv");
  SYM(group_start, "ncclGroupStart");
  SYM(group_end, "ncclGroupEnd");
  return DN_OK;
}

static dn_status ensure_nccl(const char *op) {
  DN_TRY(dn_cuda_init(op));
  if (!nccl.loaded) {
    std::lock_guard<std::mutex> g(nccl_lock);
    if (!nccl.loaded) {
      nccl.error = load_nccl(op);
      if (nccl.error != DN_OK) snprintf(nccl.message, sizeof nccl.message, "%s", dn_last_error());
      nccl.loaded = 1;
    }
  }
  if (nccl.error != DN_OK) return DN_FAIL(nccl.error, "%s", nccl.message);
  return DN_OK;
}

#define NCCL_CALL(call, what)                                                                  \
  do {                                                                                         \
    ncclResult_t r_ = (call);                                                                  \
    if (r_ != 0)                                                                               \
      return DN_FAIL(DN_ERR_RUNTIME, "%s: %s failed: %s (ncclResult %d)", op, what,             \
                     nccl.error_string(r_), r_);                                               \
  } while (0)

#define COMM_MAGIC 0x4E43434C

typedef struct {
  int32_t magic;
  int32_t rank, size;
  ncclComm_t comm; /* NULL once aborted */
  int64_t timeout_ms;
  int32_t *scratch;      /* one int for the barrier */
  cudaStream_t stream;   /* the group's own: started all-reduces overlap the library stream */
  cudaEvent_t queued;    /* the library stream's work before a started all-reduce */
  cudaEvent_t finished;  /* the last started all-reduce */
  int started;           /* started since the last dn_comm_wait */
} comm;

static dn_status get_comm(const char *op, void *handle, comm **out) {
  DN_CHECK_PTR(handle, op);
  comm *c = (comm *)handle;
  DN_CHECK(c->magic == COMM_MAGIC, DN_ERR_INVALID,
           "%s: %p is not an open NCCL group of the CUDA library", op, handle);
  DN_CHECK(c->comm != NULL, DN_ERR_RUNTIME, "%s: the group was aborted", op);
  *out = c;
  return DN_OK;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Waits for the library stream, or fails: when the communicator reports an asynchronous
 * error, or when nothing finishes within the group's deadline (a peer died or never came).
 * Either way NCCL's communicator is aborted, so the kernels waiting on it return. */
static dn_status wait_stream(const char *op, comm *c, int32_t peer) {
  const double start = now_ms();
  for (;;) {
    cudaError_t q = cudaStreamQuery(dn_stream());
    if (q == cudaSuccess) return DN_OK;
    if (q != cudaErrorNotReady) DN_CUDA(q, op);
    ncclResult_t async = 0;
    ncclResult_t r = nccl.async_error(c->comm, &async);
    if (r != 0 || (async != 0 && async != DN_NCCL_IN_PROGRESS)) {
      ncclResult_t bad = r != 0 ? r : async;
      nccl.abort(c->comm);
      c->comm = NULL;
      return DN_FAIL(DN_ERR_RUNTIME, "%s: NCCL failed (rank %d of %d%s): %s; group aborted", op,
                     (int)c->rank, (int)c->size, peer >= 0 ? ", with its peer" : "",
                     nccl.error_string(bad));
    }
    if (now_ms() - start > (double)c->timeout_ms) {
      nccl.abort(c->comm);
      c->comm = NULL;
      if (peer >= 0)
        return DN_FAIL(DN_ERR_RUNTIME,
                       "%s: peer %d did not answer rank %d within %lld ms; group aborted", op,
                       (int)peer, (int)c->rank, (long long)c->timeout_ms);
      return DN_FAIL(DN_ERR_RUNTIME,
                     "%s: rank %d of %d: a peer did not answer within %lld ms; group aborted", op,
                     (int)c->rank, (int)c->size, (long long)c->timeout_ms);
    }
    struct timespec pause = {0, 50 * 1000}; /* 50 us: a wait, not a spin */
    nanosleep(&pause, NULL);
  }
}

static dn_status nccl_type(const char *op, dn_dtype dtype, int *out) {
  switch (dtype) {
  case DN_F32: *out = DN_NCCL_FLOAT32; return DN_OK;
  case DN_BF16: *out = DN_NCCL_BFLOAT16; return DN_OK;
  case DN_F16: *out = DN_NCCL_FLOAT16; return DN_OK;
  case DN_I32: *out = DN_NCCL_INT32; return DN_OK;
  default:
    return DN_FAIL(DN_ERR_UNSUPPORTED, "%s: dtype code %d is not f32, bf16, f16 or i32", op,
                   (int)dtype);
  }
}

static dn_status nccl_op(const char *op, int32_t reduce, int *out) {
  DN_CHECK(reduce >= 0 && reduce <= 2, DN_ERR_INVALID, "%s: op %d is not 0 (sum), 1 (max), 2 (min)",
           op, (int)reduce);
  *out = reduce == 0 ? DN_NCCL_SUM : reduce == 1 ? DN_NCCL_MAX : DN_NCCL_MIN;
  return DN_OK;
}

static inline int64_t shard_lo(int64_t n, int q, int size) { return n * q / size; }

/* Orders the library stream after the group's started all-reduces (one event suffices:
 * the group's stream runs them in order). Every other operation of the group calls it
 * first: NCCL runs one communicator's operations in the order they are issued, so none
 * may overtake them on another stream. */
static dn_status join_started(const char *op, comm *c) {
  if (!c->started) return DN_OK;
  DN_CUDA(cudaStreamWaitEvent(dn_stream(), c->finished, 0), op);
  c->started = 0;
  return DN_OK;
}

dn_status dn_comm_nccl_unique_id(uint8_t *host_id) {
  const char *op = "dn_comm_nccl_unique_id";
  DN_CHECK_PTR(host_id, op);
  DN_TRY(ensure_nccl(op));
  ncclUniqueId id;
  NCCL_CALL(nccl.get_id(&id), "ncclGetUniqueId");
  memcpy(host_id, &id, sizeof id);
  return DN_OK;
}

dn_status dn_comm_nccl_open(const uint8_t *host_id, int32_t rank, int32_t size,
                            int64_t timeout_ms, void **out) {
  const char *op = "dn_comm_nccl_open";
  DN_CHECK(host_id && out, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_CHECK(timeout_ms >= 1, DN_ERR_INVALID, "%s: timeout %lld ms must be >= 1", op,
           (long long)timeout_ms);
  DN_CHECK(size >= 1, DN_ERR_INVALID, "%s: size %d must be >= 1", op, (int)size);
  DN_CHECK(rank >= 0 && rank < size, DN_ERR_INVALID, "%s: rank %d is not in [0, %d)", op,
           (int)rank, (int)size);
  DN_TRY(ensure_nccl(op));
  ncclUniqueId id;
  memcpy(&id, host_id, sizeof id);
  comm *c = (comm *)calloc(1, sizeof(comm));
  DN_CHECK(c, DN_ERR_OOM, "%s: out of host memory", op);
  dn_status st = dn_malloc(4, (void **)&c->scratch);
  if (st != DN_OK) {
    free(c);
    return st;
  }
  ncclResult_t r = nccl.init_rank(&c->comm, size, id, rank);
  if (r != 0) {
    dn_free(c->scratch);
    free(c);
    return DN_FAIL(DN_ERR_RUNTIME, "%s: ncclCommInitRank (rank %d of %d) failed: %s", op,
                   (int)rank, (int)size, nccl.error_string(r));
  }
  c->magic = COMM_MAGIC;
  c->rank = rank;
  c->size = size;
  c->timeout_ms = timeout_ms;
  if (cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking) != cudaSuccess ||
      cudaEventCreateWithFlags(&c->queued, cudaEventDisableTiming) != cudaSuccess ||
      cudaEventCreateWithFlags(&c->finished, cudaEventDisableTiming) != cudaSuccess) {
    nccl.destroy(c->comm);
    dn_free(c->scratch);
    free(c);
    return DN_FAIL(DN_ERR_RUNTIME, "%s: cannot create the group's stream and events", op);
  }
  *out = c;
  return DN_OK;
}

dn_status dn_comm_shm_open(const char *name, int32_t rank, int32_t size, int64_t slot_bytes,
                           int64_t timeout_ms, void **out) {
  (void)name;
  (void)rank;
  (void)size;
  (void)slot_bytes;
  (void)timeout_ms;
  (void)out;
  return DN_FAIL(DN_ERR_UNSUPPORTED,
                 "dn_comm_shm_open: shared-memory groups are the CPU backend's; use the nccl "
                 "backend on CUDA devices (dn_comm_nccl_open)");
}

dn_status dn_comm_shm_unlink(const char *name) {
  (void)name;
  return DN_FAIL(DN_ERR_UNSUPPORTED,
                 "dn_comm_shm_unlink: shared-memory groups are the CPU backend's; use the nccl "
                 "backend on CUDA devices");
}

dn_status dn_comm_close(void *handle) {
  const char *op = "dn_comm_close";
  DN_CHECK_PTR(handle, op);
  comm *c = (comm *)handle;
  DN_CHECK(c->magic == COMM_MAGIC, DN_ERR_INVALID,
           "%s: %p is not an open NCCL group of the CUDA library", op, handle);
  c->magic = 0;
  ncclResult_t r = 0;
  dn_status st = DN_OK;
  if (c->comm) {
    /* pending work first, within the deadline; an aborted group has none that can finish */
    if (c->started) cudaStreamWaitEvent(dn_stream(), c->finished, 0);
    st = wait_stream(op, c, -1);
    if (st == DN_OK) r = nccl.destroy(c->comm);
  }
  cudaEventDestroy(c->queued);
  cudaEventDestroy(c->finished);
  cudaStreamDestroy(c->stream);
  dn_free(c->scratch);
  free(c);
  if (st != DN_OK) return st;
  DN_CHECK(r == 0, DN_ERR_RUNTIME, "%s: ncclCommDestroy failed: %s", op, nccl.error_string(r));
  return DN_OK;
}

dn_status dn_comm_abort(void *handle) {
  const char *op = "dn_comm_abort";
  DN_CHECK_PTR(handle, op);
  comm *c = (comm *)handle;
  DN_CHECK(c->magic == COMM_MAGIC, DN_ERR_INVALID,
           "%s: %p is not an open NCCL group of the CUDA library", op, handle);
  if (!c->comm) return DN_OK; /* already aborted */
  ncclComm_t comm = c->comm;
  c->comm = NULL;
  NCCL_CALL(nccl.abort(comm), "ncclCommAbort");
  return DN_OK;
}

dn_status dn_comm_barrier(void *handle) {
  const char *op = "dn_comm_barrier";
  comm *c = NULL;
  DN_TRY(get_comm(op, handle, &c));
  DN_TRY(join_started(op, c));
  NCCL_CALL(nccl.all_reduce(c->scratch, c->scratch, 1, DN_NCCL_INT32, DN_NCCL_SUM, c->comm,
                            (void *)dn_stream()),
            "ncclAllReduce (barrier)");
  return wait_stream(op, c, -1);
}

dn_status dn_comm_allreduce(void *handle, dn_dtype dtype, int32_t reduce, const void *send,
                            void *recv, int64_t n) {
  const char *op = "dn_comm_allreduce";
  comm *c = NULL;
  DN_TRY(get_comm(op, handle, &c));
  DN_TRY(join_started(op, c));
  int t = 0, o = 0;
  DN_TRY(nccl_type(op, dtype, &t));
  DN_TRY(nccl_op(op, reduce, &o));
  DN_CHECK_EXTENT(op, n);
  if (n == 0) return DN_OK;
  DN_CHECK(send && recv, DN_ERR_INVALID, "%s: NULL buffer", op);
  NCCL_CALL(nccl.all_reduce(send, recv, (size_t)n, t, o, c->comm, (void *)dn_stream()),
            "ncclAllReduce");
  return DN_OK;
}

dn_status dn_comm_allreduce_start(void *handle, dn_dtype dtype, int32_t reduce, void *buf,
                                  int64_t n) {
  const char *op = "dn_comm_allreduce_start";
  comm *c = NULL;
  DN_TRY(get_comm(op, handle, &c));
  int t = 0, o = 0;
  DN_TRY(nccl_type(op, dtype, &t));
  DN_TRY(nccl_op(op, reduce, &o));
  DN_CHECK_EXTENT(op, n);
  if (n == 0) return DN_OK;
  DN_CHECK_PTR(buf, op);
  /* the group's stream starts once the library stream has produced buf */
  DN_CUDA(cudaEventRecord(c->queued, dn_stream()), op);
  DN_CUDA(cudaStreamWaitEvent(c->stream, c->queued, 0), op);
  NCCL_CALL(nccl.all_reduce(buf, buf, (size_t)n, t, o, c->comm, (void *)c->stream),
            "ncclAllReduce");
  DN_CUDA(cudaEventRecord(c->finished, c->stream), op);
  c->started = 1;
  return DN_OK;
}

dn_status dn_comm_wait(void *handle) {
  const char *op = "dn_comm_wait";
  comm *c = NULL;
  DN_TRY(get_comm(op, handle, &c));
  return join_started(op, c);
}

dn_status dn_comm_reduce_scatter(void *handle, dn_dtype dtype, int32_t reduce, const void *send,
                                 void *recv, int64_t n) {
  const char *op = "dn_comm_reduce_scatter";
  comm *c = NULL;
  DN_TRY(get_comm(op, handle, &c));
  DN_TRY(join_started(op, c));
  int t = 0, o = 0;
  DN_TRY(nccl_type(op, dtype, &t));
  DN_TRY(nccl_op(op, reduce, &o));
  DN_CHECK_EXTENT(op, n);
  if (n == 0) return DN_OK;
  DN_CHECK(send && recv, DN_ERR_INVALID, "%s: NULL buffer", op);
  size_t es = dn_dtype_size(dtype);
  if (n % c->size == 0) {
    NCCL_CALL(nccl.reduce_scatter(send, recv, (size_t)(n / c->size), t, o, c->comm,
                                  (void *)dn_stream()),
              "ncclReduceScatter");
    return DN_OK;
  }
  void *tmp;
  DN_TRY(dn_scratch(op, n * (int64_t)es, &tmp));
  ncclResult_t r = nccl.all_reduce(send, tmp, (size_t)n, t, o, c->comm, (void *)dn_stream());
  int64_t lo = shard_lo(n, c->rank, c->size), hi = shard_lo(n, c->rank + 1, c->size);
  cudaError_t e = r == 0 ? cudaMemcpyAsync(recv, (char *)tmp + lo * es, (size_t)(hi - lo) * es,
                                           cudaMemcpyDeviceToDevice, dn_stream())
                         : cudaSuccess;
  dn_free(tmp);
  DN_CHECK(r == 0, DN_ERR_RUNTIME, "%s: ncclAllReduce failed: %s", op, nccl.error_string(r));
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: %s", op, cudaGetErrorString(e));
  return DN_OK;
}

dn_status dn_comm_all_gather(void *handle, dn_dtype dtype, const void *send, void *recv,
                             int64_t n) {
  const char *op = "dn_comm_all_gather";
  comm *c = NULL;
  DN_TRY(get_comm(op, handle, &c));
  DN_TRY(join_started(op, c));
  int t = 0;
  DN_TRY(nccl_type(op, dtype, &t));
  DN_CHECK_EXTENT(op, n);
  if (n == 0) return DN_OK;
  DN_CHECK(send && recv, DN_ERR_INVALID, "%s: NULL buffer", op);
  size_t es = dn_dtype_size(dtype);
  if (n % c->size == 0) {
    NCCL_CALL(nccl.all_gather(send, recv, (size_t)(n / c->size), t, c->comm, (void *)dn_stream()),
              "ncclAllGather");
    return DN_OK;
  }
  NCCL_CALL(nccl.group_start(), "ncclGroupStart");
  for (int q = 0; q < c->size; q++) {
    int64_t lo = shard_lo(n, q, c->size), hi = shard_lo(n, q + 1, c->size);
    const void *src = q == c->rank ? send : (const char *)recv + lo * es;
    NCCL_CALL(nccl.broadcast(src, (char *)recv + lo * es, (size_t)(hi - lo), t, q, c->comm,
                             (void *)dn_stream()),
              "ncclBroadcast");
  }
  NCCL_CALL(nccl.group_end(), "ncclGroupEnd");
  return DN_OK;
}

dn_status dn_comm_broadcast(void *handle, dn_dtype dtype, void *buf, int64_t n, int32_t root) {
  const char *op = "dn_comm_broadcast";
  comm *c = NULL;
  DN_TRY(get_comm(op, handle, &c));
  DN_TRY(join_started(op, c));
  int t = 0;
  DN_TRY(nccl_type(op, dtype, &t));
  DN_CHECK(root >= 0 && root < c->size, DN_ERR_INVALID, "%s: root %d is not in [0, %d)", op,
           (int)root, (int)c->size);
  DN_CHECK_EXTENT(op, n);
  if (n == 0) return DN_OK;
  DN_CHECK_PTR(buf, op);
  NCCL_CALL(nccl.broadcast(buf, buf, (size_t)n, t, root, c->comm, (void *)dn_stream()),
            "ncclBroadcast");
  return DN_OK;
}

static dn_status point_to_point(const char *op, void *handle, dn_dtype dtype, void *buf,
                                int64_t n, int32_t peer, int sending) {
  comm *c = NULL;
  DN_TRY(get_comm(op, handle, &c));
  DN_TRY(join_started(op, c));
  int t = 0;
  DN_TRY(nccl_type(op, dtype, &t));
  DN_CHECK(peer >= 0 && peer < c->size && peer != c->rank, DN_ERR_INVALID,
           "%s: peer %d is not another rank of [0, %d)", op, (int)peer, (int)c->size);
  DN_CHECK_EXTENT(op, n);
  if (n == 0) return DN_OK;
  DN_CHECK_PTR(buf, op);
  if (sending)
    NCCL_CALL(nccl.send(buf, (size_t)n, t, peer, c->comm, (void *)dn_stream()), "ncclSend");
  else
    NCCL_CALL(nccl.recv(buf, (size_t)n, t, peer, c->comm, (void *)dn_stream()), "ncclRecv");
  return wait_stream(op, c, peer);
}

dn_status dn_comm_send(void *handle, dn_dtype dtype, const void *buf, int64_t n, int32_t peer) {
  return point_to_point("dn_comm_send", handle, dtype, (void *)buf, n, peer, 1);
}

dn_status dn_comm_recv(void *handle, dn_dtype dtype, void *buf, int64_t n, int32_t peer) {
  return point_to_point("dn_comm_recv", handle, dtype, buf, n, peer, 0);
}
