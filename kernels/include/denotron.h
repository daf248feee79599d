/*
 * denotron.h — the one C ABI of Denotron.
 *
 * Implemented twice: kernels/cpu (libdenotron_cpu.so) and kernels/cuda
 * (libdenotron_cuda.so). ffi/symbols.ts mirrors every DN_API line below; a test
 * parses this header and fails when the two drift apart.
 *
 * Conventions
 * - Every function returns a dn_status. On failure dn_last_error() returns a
 *   sentence with file:line. The library never exits or aborts on bad input.
 * - Pointers named like tensors ("out", "inp", ...) point to device memory from
 *   dn_malloc. Shapes are in the comment beside each argument, row-major.
 * - dtype selects the element type of the floating-point tensors of a call.
 *   Index tensors (tokens, targets) are always int32.
 * - Mixed precision: f32, bf16 and f16 are accepted everywhere a float dtype is. 16-bit
 *   tensors are storage only: the CPU kernels compute in fp32 and round to nearest
 *   even on every store. A float dtype argument may also be DN_DTYPE_WITH_GRAD(dtype,
 *   grad_dtype): the parameter gradients a backward kernel accumulates into (dweight,
 *   dbias, dwte, dwpe; C and bias of dn_matmul; y of dn_axpby) then have grad_dtype,
 *   so bf16 weights can accumulate fp32 "main" gradients directly.
 * - Backward kernels ACCUMULATE into every gradient they produce (+=), so that
 *   gradient accumulation across micro-batches and across uses of a tensor needs
 *   no extra pass. Callers zero a fresh gradient buffer once.
 * - Every kernel runs on the calling thread's stream: on the CPU calls are
 *   synchronous, using up to dn_get_num_threads() threads.
 * - Sizes: every count and byte count, and the extent of every buffer a call indexes (the
 *   product of its sizes, formed with overflow checks), is at most DN_MAX_BYTES; larger
 *   or negative sizes fail with DN_ERR_INVALID before any memory is touched, so no
 *   product can wrap around to a small allocation or a short loop.
 */
#ifndef DENOTRON_H
#define DENOTRON_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DN_API __attribute__((visibility("default")))

/* Bumped whenever a prototype below changes. */
#define DN_ABI_VERSION 6

/* The largest count, byte count or buffer extent any call accepts: 2^46 (64 TiB). */
#define DN_MAX_BYTES ((int64_t)1 << 46)

typedef int32_t dn_status;
enum {
  DN_OK = 0,
  DN_ERR_INVALID = 1,     /* a bad argument: shape, range, null pointer */
  DN_ERR_OOM = 2,         /* the allocator could not get memory */
  DN_ERR_UNSUPPORTED = 3, /* e.g. a dtype this backend does not implement yet */
  DN_ERR_RUNTIME = 4      /* the device or a library below us failed */
};

typedef int32_t dn_dtype;
enum { DN_F32 = 0, DN_BF16 = 1, DN_F16 = 2, DN_I32 = 3 };
/* A float dtype whose parameter-gradient outputs have grad_dtype (see the conventions). */
#define DN_DTYPE_WITH_GRAD(dtype, grad_dtype) ((dtype) | (((grad_dtype) + 1) << 8))

/* ---- library ------------------------------------------------------------ */

/* The message of the last failed call on this thread ("" if none). */
DN_API const char *dn_last_error(void);
/* out[0] = DN_ABI_VERSION */
DN_API dn_status dn_abi_version(int32_t *out);
/* Writes a NUL-terminated description ("cpu gemm=openblas threads=2") into buf. */
DN_API dn_status dn_backend_info(char *buf, int64_t cap);
DN_API dn_status dn_set_num_threads(int32_t n);
DN_API dn_status dn_get_num_threads(int32_t *out);

/* ---- memory: a caching allocator per device ------------------------------ */

/* *out = a 64-byte aligned block of at least `bytes` bytes (contents undefined). */
DN_API dn_status dn_malloc(int64_t bytes, void **out);
/* Returns a block to the cache. NULL is ignored. */
DN_API dn_status dn_free(void *ptr);
/* Gives every cached, unused block back to the system. */
DN_API dn_status dn_empty_cache(void);
/* out[0] bytes in use, out[1] bytes cached (free), out[2] peak in use, out[3] live blocks */
DN_API dn_status dn_memory_stats(int64_t *out);
DN_API dn_status dn_memcpy_h2d(void *dst, const void *host_src, int64_t bytes);
DN_API dn_status dn_memcpy_d2h(void *host_dst, const void *src, int64_t bytes);
DN_API dn_status dn_memcpy_d2d(void *dst, const void *src, int64_t bytes);
DN_API dn_status dn_memset_zero(void *dst, int64_t bytes);
DN_API dn_status dn_synchronize(void);

/* ---- timing --------------------------------------------------------------- */

/* Timestamp slot `slot` (0 <= slot < 65536) := the moment the calling thread's stream
 * reaches this call: on the CPU the monotonic clock now; on CUDA an event recorded on the
 * stream, so nothing waits for the kernels queued before it. */
DN_API dn_status dn_timer_record(int64_t slot);
/* host_ms(n)[i] = milliseconds from slot from(n)[i] to slot to(n)[i]; waits until the
 * stream has reached every slot named. Fails naming a slot never recorded. */
DN_API dn_status dn_timer_elapsed(int64_t n, const int64_t *from, const int64_t *to,
                                  double *host_ms);

/* ---- elementwise --------------------------------------------------------- */

/* out(n) = value */
DN_API dn_status dn_fill(dn_dtype dtype, void *out, int64_t n, float value);
/* out(n) ~ Normal(mean, std); element i draws from counter (seed, offset + i), so the
 * values do not depend on the thread count or on how a tensor is split. */
DN_API dn_status dn_fill_normal(dn_dtype dtype, void *out, int64_t n, float mean, float std,
                                uint64_t seed, uint64_t offset);
/* out(n) = a(n) + b(n); out may alias a or b */
DN_API dn_status dn_add(dn_dtype dtype, void *out, const void *a, const void *b, int64_t n);
/* y(n) = alpha * x(n) + beta * y(n) */
DN_API dn_status dn_axpby(dn_dtype dtype, void *y, float alpha, const void *x, float beta,
                          int64_t n);
/* Converts n elements between dtypes (same dtype: a copy). */
DN_API dn_status dn_cast(dn_dtype dst_dtype, void *dst, dn_dtype src_dtype, const void *src,
                         int64_t n);
/* out[0] = sum of inp(n), accumulated in double */
DN_API dn_status dn_sum(dn_dtype dtype, double *host_out, const void *inp, int64_t n);

/* Dropout with a counter-based RNG: element i is kept when
 * uniform(seed, offset + i) >= p, and scaled by 1/(1-p). The mask is a pure
 * function of (seed, offset + i): the same for any thread count, and backward
 * recomputes it instead of storing it. */
DN_API dn_status dn_dropout_forward(dn_dtype dtype, void *out, const void *inp, int64_t n,
                                    float p, uint64_t seed, uint64_t offset);
/* dinp(n) += dout(n) * mask / (1-p) */
DN_API dn_status dn_dropout_backward(dn_dtype dtype, void *dinp, const void *dout, int64_t n,
                                     float p, uint64_t seed, uint64_t offset);

/* ---- matmul -------------------------------------------------------------- */

/* For each batch b < batch:
 *   C_b(M,N) = alpha * op(A_b) @ op(B_b) + beta * C_b + bias(N)
 * op(A_b) is (M,K): A_b is (M,K) with lda >= K, or (K,M) with lda >= M when trans_a.
 * op(B_b) is (K,N): B_b is (K,N) with ldb >= N, or (N,K) with ldb >= K when trans_b.
 * X_b = X + b * stride_x elements. bias may be NULL; it is added once, unscaled. */
DN_API dn_status dn_matmul(dn_dtype dtype, int32_t trans_a, int32_t trans_b, int64_t M,
                           int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
                           int64_t stride_a, const void *B, int64_t ldb, int64_t stride_b,
                           float beta, void *C, int64_t ldc, int64_t stride_c, const void *bias,
                           int64_t batch);
/* A linear layer and an activation (DN_ACT_*, below) in one call: pre(M,N) = inp(M,K) @
 * weight(N,K)^T + bias(N) (bias may be NULL), out(M,N) = act(pre). pre is kept for backward
 * (dn_bias_act_backward with inp = pre and bias NULL). On CUDA with cuBLASLt the tanh GELU
 * is one GEMM whose epilogue writes both; the other activations are a GEMM and a pass. */
DN_API dn_status dn_linear_act_forward(dn_dtype dtype, int32_t act, void *out, void *pre,
                                       const void *inp, const void *weight, const void *bias,
                                       int64_t M, int64_t N, int64_t K);
/* dbias(N) += sum over rows of dout(M,N) */
DN_API dn_status dn_bias_backward(dn_dtype dtype, void *dbias, const void *dout, int64_t M,
                                  int64_t N);

/* ---- embedding ----------------------------------------------------------- */

/* out(B,T,C) = wte[tokens(B,T)] + wpe[t] (wpe NULL: no position table, as with rotary
 * positions); fails naming the first token outside [0,V). */
DN_API dn_status dn_embedding_forward(dn_dtype dtype, void *out, const int32_t *tokens,
                                      const void *wte, const void *wpe, int64_t B, int64_t T,
                                      int64_t C, int64_t V);
/* dwte(V,C) += scatter of dout by token; dwpe(T,C) += sum over batch. Deterministic. */
DN_API dn_status dn_embedding_backward(dn_dtype dtype, void *dwte, void *dwpe, const void *dout,
                                       const int32_t *tokens, int64_t B, int64_t T, int64_t C,
                                       int64_t V);

/* ---- layernorm ----------------------------------------------------------- */

/* out(N,C) = (inp - mean) * rstd * weight(C) + bias(C); mean(N), rstd(N) are fp32 and
 * kept for backward. */
DN_API dn_status dn_layernorm_forward(dn_dtype dtype, void *out, float *mean, float *rstd,
                                      const void *inp, const void *weight, const void *bias,
                                      int64_t N, int64_t C, float eps);
/* dinp(N,C) += ..., dweight(C) += ..., dbias(C) += ... */
DN_API dn_status dn_layernorm_backward(dn_dtype dtype, void *dinp, void *dweight, void *dbias,
                                       const void *dout, const void *inp, const void *weight,
                                       const float *mean, const float *rstd, int64_t N,
                                       int64_t C);

/* ---- bias + activation: GELU (tanh approximation or exact), tanh ---------- */

/* The `act` argument of the activation kernels. */
enum {
  DN_ACT_GELU_TANH = 0, /* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): GPT-2's GELU */
  DN_ACT_GELU_ERF = 1,  /* x Phi(x) = x/2 (1 + erf(x/sqrt 2)): the exact GELU (BERT's) */
  DN_ACT_TANH = 2       /* tanh(x) (BERT's pooler) */
};

/* out(N,C) = act(inp(N,C) + bias(C)); bias may be NULL */
DN_API dn_status dn_bias_act_forward(dn_dtype dtype, int32_t act, void *out, const void *inp,
                                     const void *bias, int64_t N, int64_t C);
/* dinp(N,C) += dout * act'(inp + bias) (accumulate = 0: dinp = that, so a fresh buffer
 * needs no zeroing); dbias(C) += column sums of that (if not NULL) */
DN_API dn_status dn_bias_act_backward(dn_dtype dtype, int32_t act, void *dinp, void *dbias,
                                      const void *dout, const void *inp, const void *bias,
                                      int64_t N, int64_t C, int32_t accumulate);

/* ---- Llama-family blocks: RMSNorm, rotary embedding, SwiGLU --------------- */

/* out(N,C) = inp * rstd * weight(C), rstd(N) = 1/sqrt(mean over C of inp^2 + eps): no mean
 * subtraction, no bias. rstd is fp32 and kept for backward. */
DN_API dn_status dn_rmsnorm_forward(dn_dtype dtype, void *out, float *rstd, const void *inp,
                                    const void *weight, int64_t N, int64_t C, float eps);
/* dinp(N,C) += ..., dweight(C) += ... (either may be NULL), given the forward's rstd(N) */
DN_API dn_status dn_rmsnorm_backward(dn_dtype dtype, void *dinp, void *dweight,
                                     const void *dout, const void *inp, const void *weight,
                                     const float *rstd, int64_t N, int64_t C);
/* Rotary position embedding, "rotate half" (Hugging Face Llama, Megatron's default).
 * qkv(B,T,(NH+2*NKV)*HS) is the packed attention projection: each token holds NH query
 * heads, then NKV key heads, then NKV value heads, each of size HS (even). out(same
 * shape) = qkv with every query and key head rotated and the value heads copied: for
 * j < HS/2 the pair (x_j, x_{j+HS/2}) of token t becomes
 *   (x_j cos a - x_{j+HS/2} sin a, x_{j+HS/2} cos a + x_j sin a), a = (pos0 + t) * inv_freq[j].
 * inv_freq(HS/2) is fp32 (a scaled RoPE such as Llama 3's is just other frequencies); the
 * angles and their sines and cosines are computed in double and rounded once to fp32, so
 * large positions keep their precision. out and qkv must not overlap. */
DN_API dn_status dn_rope_forward(dn_dtype dtype, void *out, const void *qkv,
                                 const float *inv_freq, int64_t B, int64_t T, int64_t NH,
                                 int64_t NKV, int64_t HS, int64_t pos0);
/* dqkv(B,T,(NH+2*NKV)*HS) += dout rotated back by -a (value heads: += dout); accumulate =
 * 0: dqkv = that, so a fresh buffer needs no zeroing. dqkv and dout must not overlap. */
DN_API dn_status dn_rope_backward(dn_dtype dtype, void *dqkv, const void *dout,
                                  const float *inv_freq, int64_t B, int64_t T, int64_t NH,
                                  int64_t NKV, int64_t HS, int64_t pos0, int32_t accumulate);
/* The same with each token's own position: positions(B,T) int32, each >= 0, in place of
 * pos0 + t (packed documents restart at 0). The CPU library refuses a negative position;
 * the CUDA library keeps the positions on the device unchecked and reads a negative one as
 * 0, and runs these only with DENOTRON_CUDA_SPANS=1 (as the attention over spans) until the
 * GPU check has passed them: without it, DN_ERR_UNSUPPORTED naming the variable. */
DN_API dn_status dn_rope_positions_forward(dn_dtype dtype, void *out, const void *qkv,
                                           const float *inv_freq, const int32_t *positions,
                                           int64_t B, int64_t T, int64_t NH, int64_t NKV,
                                           int64_t HS);
DN_API dn_status dn_rope_positions_backward(dn_dtype dtype, void *dqkv, const void *dout,
                                            const float *inv_freq, const int32_t *positions,
                                            int64_t B, int64_t T, int64_t NH, int64_t NKV,
                                            int64_t HS, int32_t accumulate);
/* SwiGLU on the fused gate/up projection: inp(N,2F) holds gate in columns [0,F) and up in
 * columns [F,2F) of each row (one linear of width 2F, [gate | up] side by side).
 * out(N,F) = silu(gate) * up, silu(g) = g / (1 + e^-g). */
DN_API dn_status dn_swiglu_forward(dn_dtype dtype, void *out, const void *inp, int64_t N,
                                   int64_t F);
/* dinp(N,2F) += [dout * up * silu'(gate) | dout * silu(gate)] (accumulate = 0: dinp = that) */
DN_API dn_status dn_swiglu_backward(dn_dtype dtype, void *dinp, const void *dout,
                                    const void *inp, int64_t N, int64_t F, int32_t accumulate);

/* ---- causal self-attention ----------------------------------------------- */

/* Grouped-query attention: NH query heads share NKV key/value heads (NKV divides NH;
 * NKV = NH is multi-head attention, NKV = 1 multi-query), all of size HS.
 * qkv(B,T,(NH+2*NKV)*HS) is the packed projection: each token holds its NH query heads,
 * then NKV key heads, then NKV value heads. Query head h attends with key/value head
 * h / (NH/NKV), read in place (no repeated copy is formed).
 * out(B,T,NH*HS) = softmax(q k^T / sqrt(HS) + causal mask) v, per query head.
 * lse(B,NH,T) (fp32) keeps each row's log-sum-exp; backward recomputes the
 * probabilities from it, so no (T,T) matrix is kept between the passes. */
DN_API dn_status dn_attention_forward(dn_dtype dtype, void *out, float *lse, const void *qkv,
                                      int64_t B, int64_t T, int64_t NH, int64_t NKV,
                                      int64_t HS);
/* dqkv(B,T,(NH+2*NKV)*HS) += gradient given dout(B,T,NH*HS), and the forward's out and
 * lse; each key/value head gets the sum over the query heads of its group. */
DN_API dn_status dn_attention_backward(dn_dtype dtype, void *dqkv, const void *dout,
                                       const void *qkv, const void *out, const float *lse,
                                       int64_t B, int64_t T, int64_t NH, int64_t NKV,
                                       int64_t HS);

/* The same with each query's own key range: spans(B,T,2) int32 holds [lo, hi) for every
 * query (0 <= lo <= hi <= T), so a query of a packed sequence reads only its document
 * ([start, i + 1)) and an encoder's token reads the valid tokens ([0, n)); a query with an
 * empty range gets out = 0 (lse 0) and no gradient. With spans [0, i + 1) they are
 * dn_attention_forward/_backward. On CUDA they are opt-in until the GPU check has passed
 * them: without DENOTRON_CUDA_SPANS=1 the CUDA library returns DN_ERR_UNSUPPORTED. */
DN_API dn_status dn_attention_spans_forward(dn_dtype dtype, void *out, float *lse,
                                            const void *qkv, const int32_t *spans, int64_t B,
                                            int64_t T, int64_t NH, int64_t NKV, int64_t HS);
DN_API dn_status dn_attention_spans_backward(dn_dtype dtype, void *dqkv, const void *dout,
                                             const void *qkv, const void *out,
                                             const float *lse, const int32_t *spans,
                                             int64_t B, int64_t T, int64_t NH, int64_t NKV,
                                             int64_t HS);

/* ---- softmax cross-entropy fused with the logits ------------------------- */

/* logits(N,ld), ld >= V: the first V columns of each row are the classes; the other
 * ld - V are padding (a vocabulary padded for aligned GEMMs), never read.
 * losses(N) (fp32) = logsumexp(logits[:, :V]) - logits[target]; lse(N) (fp32) kept for
 * backward. Rows whose target is -1 are ignored (loss 0). *host_mean = the mean over
 * the rows that count, *host_count = how many rows count. Fails naming the first
 * target outside [-1,V). */
DN_API dn_status dn_crossentropy_forward(dn_dtype dtype, float *losses, float *lse,
                                         const void *logits, const int32_t *targets, int64_t N,
                                         int64_t V, int64_t ld, double *host_mean,
                                         int64_t *host_count);
/* With accumulate: dlogits(N,ld)[:, :V] += (softmax(logits) - onehot(target)) * dloss
 * for each counted row, everything else left as it is (the convention of every backward
 * kernel). Without: dlogits is overwritten, those values in counted rows and zero in the
 * rest (ignored rows, padding columns), so a fresh buffer needs no zeroing first. The
 * probabilities are formed once, here, from logits and lse. */
DN_API dn_status dn_crossentropy_backward(dn_dtype dtype, void *dlogits, const void *logits,
                                          const float *lse, const int32_t *targets, int64_t N,
                                          int64_t V, int64_t ld, float dloss,
                                          int32_t accumulate);

/* ---- optimizer ----------------------------------------------------------- */

/* AdamW over n tensors in one call. params, grads, m, v are arrays of n pointers
 * (host arrays of device pointers); sizes(n) element counts; weight_decay(n) per
 * tensor (0 for biases and norms). Grads are multiplied by grad_scale first (use it
 * for clipping and loss-scale unscaling). step counts from 1 (bias correction).
 * m and v are fp32; params and grads have dtype. */
DN_API dn_status dn_adamw(dn_dtype dtype, int64_t n, void *const *params, void *const *grads,
                          float *const *m, float *const *v, const int64_t *sizes,
                          const float *weight_decay, float lr, float beta1, float beta2,
                          float eps, int64_t step, float grad_scale);
/* *host_out = sum of squares of n tensors (fp64 accumulation). */
DN_API dn_status dn_norm_sq(dn_dtype dtype, int64_t n, void *const *tensors,
                            const int64_t *sizes, double *host_out);
/* Multiplies n tensors in place by factor. */
DN_API dn_status dn_scale(dn_dtype dtype, int64_t n, void *const *tensors, const int64_t *sizes,
                          float factor);

/* ---- incremental decoding with a key/value cache ------------------------- */

/* Copies the NKV key and value heads of Tn new positions from qkv(B,Tn,(NH+2*NKV)*HS)
 * (laid out as in dn_attention_forward) into k_cache(B,max_T,NKV*HS) and
 * v_cache(B,max_T,NKV*HS) at positions [pos, pos+Tn): the caches hold the key/value heads
 * only. Fails unless 0 <= pos and pos+Tn <= max_T. */
DN_API dn_status dn_kv_append(dn_dtype dtype, void *k_cache, void *v_cache, const void *qkv,
                              int64_t B, int64_t Tn, int64_t NH, int64_t NKV, int64_t HS,
                              int64_t max_T, int64_t pos);
/* out(B,Tn,NH*HS) = causal attention of the Tn new queries in qkv(B,Tn,(NH+2*NKV)*HS), at
 * positions pos..pos+Tn-1, over k_cache/v_cache(B,max_T,NKV*HS) positions [0, pos+i] for
 * query i (query head h reads cache head h / (NH/NKV)). Call dn_kv_append for the same
 * positions first. With pos = 0 and Tn = T it equals dn_attention_forward's out. */
DN_API dn_status dn_attention_decode(dn_dtype dtype, void *out, const void *qkv,
                                     const void *k_cache, const void *v_cache, int64_t B,
                                     int64_t Tn, int64_t NH, int64_t NKV, int64_t HS,
                                     int64_t max_T, int64_t pos);

/* ---- process groups: shared memory (CPU ranks on one machine) ------------ */

/* A group of `size` processes on one machine meeting in the POSIX shared-memory
 * segment `name` ("/denotron-..."). Rank 0 creates it (it must not exist); the other
 * ranks open it after rank 0 returned (the caller orders that, e.g. through the
 * rendezvous store). One slot of slot_bytes (a multiple of 4096) per rank carries the
 * data; larger slots mean fewer rounds per collective. Every blocking call fails after
 * timeout_ms, or as soon as a rank it waits for has exited, naming the group, the
 * operation and the peer. *out = the group handle. */
DN_API dn_status dn_comm_shm_open(const char *name, int32_t rank, int32_t size,
                                  int64_t slot_bytes, int64_t timeout_ms, void **out);
/* Removes the segment's name (mapped ranks keep it); call once every rank has opened it,
 * so nothing is left behind even if a rank crashes. Missing names are not an error. */
DN_API dn_status dn_comm_shm_unlink(const char *name);
/* Unmaps the segment and frees the handle. */
DN_API dn_status dn_comm_close(void *comm);
/* Marks the group failed: every rank waiting in it (now or later) gets an error. */
DN_API dn_status dn_comm_abort(void *comm);
/* Returns once every rank of the group has called it. */
DN_API dn_status dn_comm_barrier(void *comm);
/* recv(n) = send_0(n) op ... op send_{size-1}(n), ranks combined in rank order so that
 * every rank gets bit-identical values. op: 0 sum, 1 max, 2 min. dtype f32, i32, or
 * bf16/f16 (combined in fp32 in rank order, rounded once).
 * send == recv is allowed (in place). */
DN_API dn_status dn_comm_allreduce(void *comm, dn_dtype dtype, int32_t op, const void *send,
                                   void *recv, int64_t n);
/* The in-place all-reduce of dn_comm_allreduce, started but not waited for, so that it
 * can overlap the compute that follows (data-parallel gradient buckets during backward).
 * NCCL: it waits for the work queued so far on the library stream, runs on the group's
 * own stream, and the library stream orders after it at dn_comm_wait. Shared memory: it
 * is the blocking call (its work is done when it returns). buf must not be read or
 * written until dn_comm_wait. */
DN_API dn_status dn_comm_allreduce_start(void *comm, dn_dtype dtype, int32_t op, void *buf,
                                         int64_t n);
/* Orders the library stream after every dn_comm_allreduce_start of the group so far
 * (NCCL: without blocking the host); shared memory: nothing to wait for. */
DN_API dn_status dn_comm_wait(void *comm);
/* Shard q of n elements is [n*q/size, n*(q+1)/size) (floor division), so n need not be
 * a multiple of size. recv(shard length of this rank) = the reduction, as in
 * dn_comm_allreduce, of this rank's shard of every rank's send(n). */
DN_API dn_status dn_comm_reduce_scatter(void *comm, dn_dtype dtype, int32_t op,
                                        const void *send, void *recv, int64_t n);
/* recv(n) = the shards of all ranks side by side; send holds this rank's shard (shards as
 * in dn_comm_reduce_scatter). send may point into recv at this rank's shard. Any dtype. */
DN_API dn_status dn_comm_all_gather(void *comm, dn_dtype dtype, const void *send, void *recv,
                                    int64_t n);
/* buf(n) on every rank = buf(n) of rank root. Any dtype. */
DN_API dn_status dn_comm_broadcast(void *comm, dn_dtype dtype, void *buf, int64_t n,
                                   int32_t root);
/* Sends buf(n) to rank peer; returns once peer has received it (a synchronous send: two
 * ranks must not send to each other at the same time). Any dtype. */
DN_API dn_status dn_comm_send(void *comm, dn_dtype dtype, const void *buf, int64_t n,
                              int32_t peer);
/* Receives buf(n) from rank peer's matching dn_comm_send. */
DN_API dn_status dn_comm_recv(void *comm, dn_dtype dtype, void *buf, int64_t n, int32_t peer);

/* ---- mixed precision ------------------------------------------------------ */

/* One pass over n gradient tensors (dtype): *host_found_inf = 1 if any element of
 * scale * grad is inf or NaN, else 0; *host_norm_sq = sum of (scale * grad)^2 in fp64
 * (inf when found_inf). With scale = 1/loss_scale this is the overflow check and the
 * unscaled gradient norm of the loss-scaled step, from one read of the gradients. */
DN_API dn_status dn_grad_check(dn_dtype dtype, int64_t n, void *const *grads,
                               const int64_t *sizes, float scale, int32_t *host_found_inf,
                               double *host_norm_sq);
/* AdamW of the mixed-precision optimizer over n tensors (one bucket) in one call:
 * g = main_grads * grad_scale (unscale and clip), the AdamW update of dn_adamw on the
 * fp32 main_params with fp32 m and v, then model_params (model_dtype) = main_params
 * rounded. Every array holds n pointers; sizes(n), weight_decay(n) as in dn_adamw. */
DN_API dn_status dn_adamw_mixed(dn_dtype model_dtype, int64_t n, void *const *model_params,
                                float *const *main_params, float *const *main_grads,
                                float *const *m, float *const *v, const int64_t *sizes,
                                const float *weight_decay, float lr, float beta1, float beta2,
                                float eps, int64_t step, float grad_scale);

/* ---- process groups: NCCL (CUDA ranks) ------------------------------------ */

/* host_id(128 bytes) = a fresh NCCL unique id; one rank calls it and shares the bytes
 * with the others (e.g. through the rendezvous store). CUDA library only: the CPU
 * library returns DN_ERR_UNSUPPORTED. NCCL is opened at run time (DENOTRON_NCCL_LIB). */
DN_API dn_status dn_comm_nccl_unique_id(uint8_t *host_id);
/* Joins rank `rank` of a group of `size` GPU processes meeting through host_id(128).
 * *out = a handle for the dn_comm_* calls of the CUDA library (close, abort, barrier and
 * the collectives, which run on the library's stream). Every wait of the group (barrier,
 * send, recv, close) fails after timeout_ms with the communicator aborted, or at once on
 * NCCL's asynchronous error. CUDA library only. */
DN_API dn_status dn_comm_nccl_open(const uint8_t *host_id, int32_t rank, int32_t size,
                                   int64_t timeout_ms, void **out);

#ifdef __cplusplus
}
#endif
#endif /* DENOTRON_H */
