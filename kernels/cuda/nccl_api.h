/* The part of the NCCL API that comm_nccl.cu calls, declared from NCCL's documented
 * interface; resolved with dlsym at run time (dynload.cu). */
#ifndef DN_NCCL_API_H
#define DN_NCCL_API_H

#include <stddef.h>

#define DN_NCCL_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[DN_NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;
typedef struct ncclComm *ncclComm_t;
typedef int ncclResult_t; /* ncclSuccess = 0 */
#define DN_NCCL_IN_PROGRESS 7
typedef int ncclDataType_t;
typedef int ncclRedOp_t;

enum { DN_NCCL_INT32 = 2, DN_NCCL_FLOAT16 = 6, DN_NCCL_FLOAT32 = 7, DN_NCCL_BFLOAT16 = 9 };
enum { DN_NCCL_SUM = 0, DN_NCCL_MAX = 2, DN_NCCL_MIN = 3 };

typedef ncclResult_t (*ncclGetUniqueId_fn)(ncclUniqueId *id);
typedef ncclResult_t (*ncclCommInitRank_fn)(ncclComm_t *comm, int nranks, ncclUniqueId id,
                                            int rank);
typedef ncclResult_t (*ncclCommDestroy_fn)(ncclComm_t comm);
typedef ncclResult_t (*ncclCommAbort_fn)(ncclComm_t comm);
/* *async = the communicator's asynchronous error: ncclSuccess, ncclInProgress (7), or a
 * failure (a peer vanished, a network error) that makes every pending operation hang */
typedef ncclResult_t (*ncclCommGetAsyncError_fn)(ncclComm_t comm, ncclResult_t *async);
typedef const char *(*ncclGetErrorString_fn)(ncclResult_t result);
typedef ncclResult_t (*ncclGetVersion_fn)(int *version);
typedef ncclResult_t (*ncclAllReduce_fn)(const void *send, void *recv, size_t count,
                                         ncclDataType_t dt, ncclRedOp_t op, ncclComm_t comm,
                                         void *stream);
typedef ncclResult_t (*ncclReduceScatter_fn)(const void *send, void *recv, size_t recvcount,
                                             ncclDataType_t dt, ncclRedOp_t op, ncclComm_t comm,
                                             void *stream);
typedef ncclResult_t (*ncclAllGather_fn)(const void *send, void *recv, size_t sendcount,
                                         ncclDataType_t dt, ncclComm_t comm, void *stream);
typedef ncclResult_t (*ncclBroadcast_fn)(const void *send, void *recv, size_t count,
                                         ncclDataType_t dt, int root, ncclComm_t comm,
                                         void *stream);
typedef ncclResult_t (*ncclSend_fn)(const void *buf, size_t count, ncclDataType_t dt, int peer,
                                    ncclComm_t comm, void *stream);
typedef ncclResult_t (*ncclRecv_fn)(void *buf, size_t count, ncclDataType_t dt, int peer,
                                    ncclComm_t comm, void *stream);
typedef ncclResult_t (*ncclGroupStart_fn)(void);
typedef ncclResult_t (*ncclGroupEnd_fn)(void);

#endif
