/* The bf16 tensor-core attention path (attention_mma.cu), called by attention.cu. */
#ifndef DN_CUDA_ATTENTION_MMA_H
#define DN_CUDA_ATTENTION_MMA_H

#include <stdint.h>

#include "../include/denotron.h"

/* 1 when the tensor-core path serves this call: bf16, head size HS = 64, every pointer in
 * ptr_bits (their bitwise OR) 16-byte aligned, and DENOTRON_CUDA_ATTENTION is not
 * "simple" (read once per process). */
int dn_attention_mma_enabled(dn_dtype dtype, int64_t HS, uintptr_t ptr_bits);
/* out(B,T,NH*64) bf16, lse(B,NH,T) fp32 natural log, from qkv(B,T,(NH+2*NKV)*64) bf16 */
dn_status dn_attention_mma_forward(void *out, float *lse, const void *qkv, int64_t B, int64_t T,
                                   int64_t NH, int64_t NKV);
/* dqkv(B,T,(NH+2*NKV)*64) += gradients, given dout(B,T,NH*64), lse and
 * delta = rowsum(dout*out) (B,NH,T) fp32 */
dn_status dn_attention_mma_backward(void *dqkv, const void *dout, const void *qkv,
                                    const float *lse, const float *delta, int64_t B, int64_t T,
                                    int64_t NH, int64_t NKV);

#endif
