/**
 * The Deno mirror of `kernels/include/denotron.h`: one entry per `DN_API` function,
 * with the C prototype beside it. Device memory travels as `"pointer"`, host arrays
 * that the call reads or fills (lists of pointers, sizes, out-parameters) as
 * `"buffer"`. `tests/ffi_test.ts` parses the header and fails when the two drift.
 *
 * @module
 */

/** DN_ABI_VERSION of the header this mirror matches. */
export const ABI_VERSION = 6;

/** One entry per DN_API function of the header: Deno.dlopen symbol definitions. */
export const symbols = {
  // const char *dn_last_error(void)
  dn_last_error: { parameters: [], result: "pointer" },
  // dn_status dn_abi_version(int32_t *out)
  dn_abi_version: { parameters: ["buffer"], result: "i32" },
  // dn_status dn_backend_info(char *buf, int64_t cap)
  dn_backend_info: { parameters: ["buffer", "i64"], result: "i32" },
  // dn_status dn_set_num_threads(int32_t n)
  dn_set_num_threads: { parameters: ["i32"], result: "i32" },
  // dn_status dn_get_num_threads(int32_t *out)
  dn_get_num_threads: { parameters: ["buffer"], result: "i32" },

  // dn_status dn_malloc(int64_t bytes, void **out)
  dn_malloc: { parameters: ["i64", "buffer"], result: "i32" },
  // dn_status dn_free(void *ptr)
  dn_free: { parameters: ["pointer"], result: "i32" },
  // dn_status dn_empty_cache(void)
  dn_empty_cache: { parameters: [], result: "i32" },
  // dn_status dn_memory_stats(int64_t *out)
  dn_memory_stats: { parameters: ["buffer"], result: "i32" },
  // dn_status dn_memcpy_h2d(void *dst, const void *host_src, int64_t bytes)
  dn_memcpy_h2d: { parameters: ["pointer", "buffer", "i64"], result: "i32" },
  // dn_status dn_memcpy_d2h(void *host_dst, const void *src, int64_t bytes)
  dn_memcpy_d2h: { parameters: ["buffer", "pointer", "i64"], result: "i32" },
  // dn_status dn_memcpy_d2d(void *dst, const void *src, int64_t bytes)
  dn_memcpy_d2d: { parameters: ["pointer", "pointer", "i64"], result: "i32" },
  // dn_status dn_memset_zero(void *dst, int64_t bytes)
  dn_memset_zero: { parameters: ["pointer", "i64"], result: "i32" },
  // dn_status dn_synchronize(void)
  dn_synchronize: { parameters: [], result: "i32" },
  // dn_status dn_timer_record(int64_t slot)
  dn_timer_record: { parameters: ["i64"], result: "i32" },
  // dn_status dn_timer_elapsed(int64_t n, const int64_t *from, const int64_t *to,
  //                            double *host_ms)
  dn_timer_elapsed: { parameters: ["i64", "buffer", "buffer", "buffer"], result: "i32" },

  // dn_status dn_fill(dn_dtype dtype, void *out, int64_t n, float value)
  dn_fill: { parameters: ["i32", "pointer", "i64", "f32"], result: "i32" },
  // dn_status dn_fill_normal(dn_dtype dtype, void *out, int64_t n, float mean, float std,
  //                          uint64_t seed, uint64_t offset)
  dn_fill_normal: {
    parameters: ["i32", "pointer", "i64", "f32", "f32", "u64", "u64"],
    result: "i32",
  },
  // dn_status dn_add(dn_dtype dtype, void *out, const void *a, const void *b, int64_t n)
  dn_add: { parameters: ["i32", "pointer", "pointer", "pointer", "i64"], result: "i32" },
  // dn_status dn_axpby(dn_dtype dtype, void *y, float alpha, const void *x, float beta, int64_t n)
  dn_axpby: { parameters: ["i32", "pointer", "f32", "pointer", "f32", "i64"], result: "i32" },
  // dn_status dn_cast(dn_dtype dst_dtype, void *dst, dn_dtype src_dtype, const void *src, int64_t n)
  dn_cast: { parameters: ["i32", "pointer", "i32", "pointer", "i64"], result: "i32" },
  // dn_status dn_sum(dn_dtype dtype, double *host_out, const void *inp, int64_t n)
  dn_sum: { parameters: ["i32", "buffer", "pointer", "i64"], result: "i32" },
  // dn_status dn_dropout_forward(dn_dtype dtype, void *out, const void *inp, int64_t n, float p,
  //                              uint64_t seed, uint64_t offset)
  dn_dropout_forward: {
    parameters: ["i32", "pointer", "pointer", "i64", "f32", "u64", "u64"],
    result: "i32",
  },
  // dn_status dn_dropout_backward(dn_dtype dtype, void *dinp, const void *dout, int64_t n,
  //                               float p, uint64_t seed, uint64_t offset)
  dn_dropout_backward: {
    parameters: ["i32", "pointer", "pointer", "i64", "f32", "u64", "u64"],
    result: "i32",
  },

  // dn_status dn_matmul(dn_dtype dtype, int32_t trans_a, int32_t trans_b, int64_t M, int64_t N,
  //   int64_t K, float alpha, const void *A, int64_t lda, int64_t stride_a, const void *B,
  //   int64_t ldb, int64_t stride_b, float beta, void *C, int64_t ldc, int64_t stride_c,
  //   const void *bias, int64_t batch)
  dn_matmul: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i64",
      "i64",
      "i64",
      "f32",
      "pointer",
      "i64",
      "i64",
      "pointer",
      "i64",
      "i64",
      "f32",
      "pointer",
      "i64",
      "i64",
      "pointer",
      "i64",
    ],
    result: "i32",
  },
  // dn_status dn_linear_act_forward(dn_dtype dtype, int32_t act, void *out, void *pre,
  //                                 const void *inp, const void *weight, const void *bias,
  //                                 int64_t M, int64_t N, int64_t K)
  dn_linear_act_forward: {
    parameters: [
      "i32",
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
    ],
    result: "i32",
  },
  // dn_status dn_bias_backward(dn_dtype dtype, void *dbias, const void *dout, int64_t M, int64_t N)
  dn_bias_backward: { parameters: ["i32", "pointer", "pointer", "i64", "i64"], result: "i32" },

  // dn_status dn_embedding_forward(dn_dtype dtype, void *out, const int32_t *tokens,
  //   const void *wte, const void *wpe, int64_t B, int64_t T, int64_t C, int64_t V)
  dn_embedding_forward: {
    parameters: ["i32", "pointer", "pointer", "pointer", "pointer", "i64", "i64", "i64", "i64"],
    result: "i32",
  },
  // dn_status dn_embedding_backward(dn_dtype dtype, void *dwte, void *dwpe, const void *dout,
  //   const int32_t *tokens, int64_t B, int64_t T, int64_t C, int64_t V)
  dn_embedding_backward: {
    parameters: ["i32", "pointer", "pointer", "pointer", "pointer", "i64", "i64", "i64", "i64"],
    result: "i32",
  },

  // dn_status dn_layernorm_forward(dn_dtype dtype, void *out, float *mean, float *rstd,
  //   const void *inp, const void *weight, const void *bias, int64_t N, int64_t C, float eps)
  dn_layernorm_forward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "f32",
    ],
    result: "i32",
  },
  // dn_status dn_layernorm_backward(dn_dtype dtype, void *dinp, void *dweight, void *dbias,
  //   const void *dout, const void *inp, const void *weight, const float *mean,
  //   const float *rstd, int64_t N, int64_t C)
  dn_layernorm_backward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
    ],
    result: "i32",
  },

  // dn_status dn_bias_act_forward(dn_dtype dtype, int32_t act, void *out, const void *inp,
  //   const void *bias, int64_t N, int64_t C)
  dn_bias_act_forward: {
    parameters: ["i32", "i32", "pointer", "pointer", "pointer", "i64", "i64"],
    result: "i32",
  },
  // dn_status dn_bias_act_backward(dn_dtype dtype, int32_t act, void *dinp, void *dbias,
  //   const void *dout, const void *inp, const void *bias, int64_t N, int64_t C,
  //   int32_t accumulate)
  dn_bias_act_backward: {
    parameters: [
      "i32",
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i32",
    ],
    result: "i32",
  },

  // dn_status dn_rmsnorm_forward(dn_dtype dtype, void *out, float *rstd, const void *inp,
  //   const void *weight, int64_t N, int64_t C, float eps)
  dn_rmsnorm_forward: {
    parameters: ["i32", "pointer", "pointer", "pointer", "pointer", "i64", "i64", "f32"],
    result: "i32",
  },
  // dn_status dn_rmsnorm_backward(dn_dtype dtype, void *dinp, void *dweight, const void *dout,
  //   const void *inp, const void *weight, const float *rstd, int64_t N, int64_t C)
  dn_rmsnorm_backward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
    ],
    result: "i32",
  },
  // dn_status dn_rope_forward(dn_dtype dtype, void *out, const void *qkv, const float *inv_freq,
  //   int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, int64_t pos0)
  dn_rope_forward: {
    parameters: ["i32", "pointer", "pointer", "pointer", "i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i32",
  },
  // dn_status dn_rope_backward(dn_dtype dtype, void *dqkv, const void *dout,
  //   const float *inv_freq, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
  //   int64_t pos0, int32_t accumulate)
  dn_rope_backward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
      "i32",
    ],
    result: "i32",
  },
  // dn_status dn_rope_positions_forward(dn_dtype dtype, void *out, const void *qkv,
  //   const float *inv_freq, const int32_t *positions, int64_t B, int64_t T, int64_t NH,
  //   int64_t NKV, int64_t HS)
  dn_rope_positions_forward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
    ],
    result: "i32",
  },
  // dn_status dn_rope_positions_backward(dn_dtype dtype, void *dqkv, const void *dout,
  //   const float *inv_freq, const int32_t *positions, int64_t B, int64_t T, int64_t NH,
  //   int64_t NKV, int64_t HS, int32_t accumulate)
  dn_rope_positions_backward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
      "i32",
    ],
    result: "i32",
  },
  // dn_status dn_swiglu_forward(dn_dtype dtype, void *out, const void *inp, int64_t N, int64_t F)
  dn_swiglu_forward: { parameters: ["i32", "pointer", "pointer", "i64", "i64"], result: "i32" },
  // dn_status dn_swiglu_backward(dn_dtype dtype, void *dinp, const void *dout, const void *inp,
  //   int64_t N, int64_t F, int32_t accumulate)
  dn_swiglu_backward: {
    parameters: ["i32", "pointer", "pointer", "pointer", "i64", "i64", "i32"],
    result: "i32",
  },

  // dn_status dn_attention_forward(dn_dtype dtype, void *out, float *lse, const void *qkv,
  //   int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS)
  dn_attention_forward: {
    parameters: ["i32", "pointer", "pointer", "pointer", "i64", "i64", "i64", "i64", "i64"],
    result: "i32",
  },
  // dn_status dn_attention_backward(dn_dtype dtype, void *dqkv, const void *dout,
  //   const void *qkv, const void *out, const float *lse, int64_t B, int64_t T, int64_t NH,
  //   int64_t NKV, int64_t HS)
  dn_attention_backward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
    ],
    result: "i32",
  },
  // dn_status dn_attention_spans_forward(dn_dtype dtype, void *out, float *lse,
  //   const void *qkv, const int32_t *spans, int64_t B, int64_t T, int64_t NH, int64_t NKV,
  //   int64_t HS)
  dn_attention_spans_forward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
    ],
    result: "i32",
  },
  // dn_status dn_attention_spans_backward(dn_dtype dtype, void *dqkv, const void *dout,
  //   const void *qkv, const void *out, const float *lse, const int32_t *spans, int64_t B,
  //   int64_t T, int64_t NH, int64_t NKV, int64_t HS)
  dn_attention_spans_backward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
    ],
    result: "i32",
  },

  // dn_status dn_crossentropy_forward(dn_dtype dtype, float *losses, float *lse,
  //   const void *logits, const int32_t *targets, int64_t N, int64_t V, int64_t ld,
  //   double *host_mean, int64_t *host_count)
  dn_crossentropy_forward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  // dn_status dn_crossentropy_backward(dn_dtype dtype, void *dlogits, const void *logits,
  //   const float *lse, const int32_t *targets, int64_t N, int64_t V, int64_t ld, float dloss,
  //   int32_t accumulate)
  dn_crossentropy_backward: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "f32",
      "i32",
    ],
    result: "i32",
  },

  // dn_status dn_adamw(dn_dtype dtype, int64_t n, void *const *params, void *const *grads,
  //   float *const *m, float *const *v, const int64_t *sizes, const float *weight_decay,
  //   float lr, float beta1, float beta2, float eps, int64_t step, float grad_scale)
  dn_adamw: {
    parameters: [
      "i32",
      "i64",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "f32",
      "f32",
      "f32",
      "f32",
      "i64",
      "f32",
    ],
    result: "i32",
  },
  // dn_status dn_norm_sq(dn_dtype dtype, int64_t n, void *const *tensors, const int64_t *sizes,
  //   double *host_out)
  dn_norm_sq: { parameters: ["i32", "i64", "buffer", "buffer", "buffer"], result: "i32" },
  // dn_status dn_scale(dn_dtype dtype, int64_t n, void *const *tensors, const int64_t *sizes,
  //   float factor)
  dn_scale: { parameters: ["i32", "i64", "buffer", "buffer", "f32"], result: "i32" },

  // dn_status dn_kv_append(dn_dtype dtype, void *k_cache, void *v_cache, const void *qkv,
  //   int64_t B, int64_t Tn, int64_t NH, int64_t NKV, int64_t HS, int64_t max_T, int64_t pos)
  dn_kv_append: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
    ],
    result: "i32",
  },
  // dn_status dn_attention_decode(dn_dtype dtype, void *out, const void *qkv,
  //   const void *k_cache, const void *v_cache, int64_t B, int64_t Tn, int64_t NH,
  //   int64_t NKV, int64_t HS, int64_t max_T, int64_t pos)
  dn_attention_decode: {
    parameters: [
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
      "i64",
    ],
    result: "i32",
  },

  // ---- process groups: shared memory ----
  // dn_status dn_comm_shm_open(const char *name, int32_t rank, int32_t size,
  //                            int64_t slot_bytes, int64_t timeout_ms, void **out)
  dn_comm_shm_open: { parameters: ["buffer", "i32", "i32", "i64", "i64", "buffer"], result: "i32" },
  // dn_status dn_comm_shm_unlink(const char *name)
  dn_comm_shm_unlink: { parameters: ["buffer"], result: "i32" },
  // dn_status dn_comm_close(void *comm)
  dn_comm_close: { parameters: ["pointer"], result: "i32" },
  // dn_status dn_comm_abort(void *comm)
  dn_comm_abort: { parameters: ["pointer"], result: "i32" },
  // dn_status dn_comm_barrier(void *comm)
  dn_comm_barrier: { parameters: ["pointer"], result: "i32" },
  // dn_status dn_comm_allreduce(void *comm, dn_dtype dtype, int32_t op, const void *send,
  //                             void *recv, int64_t n)
  dn_comm_allreduce: {
    parameters: ["pointer", "i32", "i32", "pointer", "pointer", "i64"],
    result: "i32",
  },
  // dn_status dn_comm_allreduce_start(void *comm, dn_dtype dtype, int32_t op, void *buf,
  //                                   int64_t n)
  dn_comm_allreduce_start: {
    parameters: ["pointer", "i32", "i32", "pointer", "i64"],
    result: "i32",
  },
  // dn_status dn_comm_wait(void *comm)
  dn_comm_wait: { parameters: ["pointer"], result: "i32" },
  // dn_status dn_comm_reduce_scatter(void *comm, dn_dtype dtype, int32_t op, const void *send,
  //                                  void *recv, int64_t n)
  dn_comm_reduce_scatter: {
    parameters: ["pointer", "i32", "i32", "pointer", "pointer", "i64"],
    result: "i32",
  },
  // dn_status dn_comm_all_gather(void *comm, dn_dtype dtype, const void *send, void *recv,
  //                              int64_t n)
  dn_comm_all_gather: {
    parameters: ["pointer", "i32", "pointer", "pointer", "i64"],
    result: "i32",
  },
  // dn_status dn_comm_broadcast(void *comm, dn_dtype dtype, void *buf, int64_t n, int32_t root)
  dn_comm_broadcast: { parameters: ["pointer", "i32", "pointer", "i64", "i32"], result: "i32" },
  // dn_status dn_comm_send(void *comm, dn_dtype dtype, const void *buf, int64_t n, int32_t peer)
  dn_comm_send: { parameters: ["pointer", "i32", "pointer", "i64", "i32"], result: "i32" },
  // dn_status dn_comm_recv(void *comm, dn_dtype dtype, void *buf, int64_t n, int32_t peer)
  dn_comm_recv: { parameters: ["pointer", "i32", "pointer", "i64", "i32"], result: "i32" },
  // dn_status dn_grad_check(dn_dtype dtype, int64_t n, void *const *grads,
  //   const int64_t *sizes, float scale, int32_t *host_found_inf, double *host_norm_sq)
  dn_grad_check: {
    parameters: ["i32", "i64", "buffer", "buffer", "f32", "buffer", "buffer"],
    result: "i32",
  },
  // dn_status dn_adamw_mixed(dn_dtype model_dtype, int64_t n, void *const *model_params,
  //   float *const *main_params, float *const *main_grads, float *const *m, float *const *v,
  //   const int64_t *sizes, const float *weight_decay, float lr, float beta1, float beta2,
  //   float eps, int64_t step, float grad_scale)
  dn_adamw_mixed: {
    parameters: [
      "i32",
      "i64",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "f32",
      "f32",
      "f32",
      "f32",
      "i64",
      "f32",
    ],
    result: "i32",
  },
  // dn_status dn_comm_nccl_unique_id(uint8_t *host_id)
  dn_comm_nccl_unique_id: { parameters: ["buffer"], result: "i32" },
  // dn_status dn_comm_nccl_open(const uint8_t *host_id, int32_t rank, int32_t size,
  //                             int64_t timeout_ms, void **out)
  dn_comm_nccl_open: { parameters: ["buffer", "i32", "i32", "i64", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The symbol table's type, as opened by `Deno.dlopen`. */
export type NativeSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];
