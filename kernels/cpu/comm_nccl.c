/* defines: dn_comm_nccl_unique_id, dn_comm_nccl_open — NCCL process groups exist only
 * in the CUDA library (kernels/cuda/comm_nccl.cu); the CPU library exports the same
 * symbols so that one FFI table opens both, and says where to go instead. */
#include "common.h"

dn_status dn_comm_nccl_unique_id(uint8_t *host_id) {
  (void)host_id;
  return DN_FAIL(DN_ERR_UNSUPPORTED,
                 "dn_comm_nccl_unique_id: NCCL groups need the CUDA backend; CPU ranks use the "
                 "shared-memory backend (dn_comm_shm_open)");
}

dn_status dn_comm_nccl_open(const uint8_t *host_id, int32_t rank, int32_t size,
                            int64_t timeout_ms, void **out) {
  (void)host_id;
  (void)rank;
  (void)size;
  (void)timeout_ms;
  (void)out;
  return DN_FAIL(DN_ERR_UNSUPPORTED,
                 "dn_comm_nccl_open: NCCL groups need the CUDA backend; CPU ranks use the "
                 "shared-memory backend (dn_comm_shm_open)");
}
