/* defines: dn_embedding_forward, dn_embedding_backward
 * Backward is deterministic without atomics: the positions are sorted by token with a
 * stable radix sort (CUB), then one block per run of equal tokens adds that run's rows
 * of dout in position order, the same order as the CPU backend. */
#include <cub/device/device_radix_sort.cuh>
#include "common.cuh"

__global__ void check_tokens_k(const int32_t *tokens, int64_t n, int64_t V, int32_t *bad) {
  DN_GRID_LOOP(i, n) {
    if (tokens[i] < 0 || tokens[i] >= V) atomicMin(bad, (int32_t)i);
  }
}

static dn_status check_tokens(const char *op, const int32_t *tokens, int64_t n, int64_t V) {
  DN_CHECK(n < ((int64_t)1 << 31), DN_ERR_INVALID, "%s: %lld tokens exceed 2^31", op,
           (long long)n);
  int32_t *flag, bad = INT32_MAX;
  DN_TRY(dn_flag_reset(op, &flag));
  check_tokens_k<<<dn_blocks(n, 256), 256, 0, dn_stream()>>>(tokens, n, V, flag);
  DN_TRY(dn_flag_read(op, flag, &bad));
  if (bad == INT32_MAX) return DN_OK;
  int32_t t = 0;
  cudaMemcpy(&t, tokens + bad, 4, cudaMemcpyDeviceToHost);
  return DN_FAIL(DN_ERR_INVALID,
                 "%s: token %d at flat index %lld is outside the vocabulary [0, %lld)", op,
                 (int)t, (long long)bad, (long long)V);
}

template <typename T>
__global__ void emb_fwd_k(T *out, const int32_t *tokens, const T *wte, const T *wpe, int64_t T_,
                          int64_t C, int64_t n) {
  DN_GRID_LOOP(k, n * C) {
    int64_t bt = k / C, c = k % C;
    stf(out, k, ldf(wte, (int64_t)tokens[bt] * C + c) + (wpe ? ldf(wpe, (bt % T_) * C + c) : 0.0f));
  }
}

dn_status dn_embedding_forward(dn_dtype dtype, void *out, const int32_t *tokens, const void *wte,
                               const void *wpe, int64_t B, int64_t T, int64_t C, int64_t V) {
  const char *op = "dn_embedding_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(B > 0 && T > 0 && C > 0 && V > 0, DN_ERR_INVALID,
           "%s: sizes must be positive (B=%lld T=%lld C=%lld V=%lld)", op, (long long)B,
           (long long)T, (long long)C, (long long)V);
  DN_CHECK_EXTENT(op, B, T, C);
  DN_CHECK_EXTENT(op, V, C);
  DN_CHECK(out && tokens && wte, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  DN_TRY(check_tokens(op, tokens, B * T, V));
  DN_DISPATCH(dn_base_dtype(dtype), TT,
              emb_fwd_k<TT><<<dn_blocks(B * T * C, 256), 256, 0, dn_stream()>>>(
                  (TT *)out, tokens, (const TT *)wte, (const TT *)wpe, T, C, B * T););
  DN_LAUNCHED(op);
  return DN_OK;
}

__global__ void iota_k(int32_t *x, int64_t n) { DN_GRID_LOOP(i, n) x[i] = (int32_t)i; }

/* Block k: if sorted position k starts a run of equal tokens, dwte[token] += the rows of
 * dout of that run, in position order. */
template <typename T, typename G>
__global__ void emb_wte_k(G *dwte, const T *dout, const int32_t *keys, const int32_t *pos,
                          int64_t n, int64_t C) {
  int64_t k = blockIdx.x;
  if (k > 0 && keys[k] == keys[k - 1]) return;
  int64_t end = k + 1;
  while (end < n && keys[end] == keys[k]) end++;
  int64_t row = (int64_t)keys[k] * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float s = 0.0f;
    for (int64_t r = k; r < end; r++) s += ldf(dout, (int64_t)pos[r] * C + c);
    addf(dwte, row + c, s);
  }
}

/* dwpe(t,c) += sum over b of dout(b,t,c) */
template <typename T, typename G>
__global__ void emb_wpe_k(G *dwpe, const T *dout, int64_t B, int64_t T_, int64_t C) {
  DN_GRID_LOOP(k, T_ * C) {
    float s = 0.0f;
    for (int64_t b = 0; b < B; b++) s += ldf(dout, b * T_ * C + k);
    addf(dwpe, k, s);
  }
}

dn_status dn_embedding_backward(dn_dtype dtype, void *dwte, void *dwpe, const void *dout,
                                const int32_t *tokens, int64_t B, int64_t T, int64_t C,
                                int64_t V) {
  const char *op = "dn_embedding_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(B > 0 && T > 0 && C > 0 && V > 0, DN_ERR_INVALID, "%s: sizes must be positive", op);
  DN_CHECK_EXTENT(op, B, T, C);
  DN_CHECK_EXTENT(op, V, C);
  DN_CHECK(dout && tokens, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  int64_t n = B * T;
  DN_TRY(check_tokens(op, tokens, n, V));
  if (dwte) {
    int end_bit = 1;
    while (end_bit < 31 && ((int64_t)1 << end_bit) < V) end_bit++;
    size_t temp_bytes = 0;
    cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, (const int32_t *)NULL, (int32_t *)NULL,
                                    (const int32_t *)NULL, (int32_t *)NULL, (int)n, 0, end_bit,
                                    dn_stream());
    char *buf;
    DN_TRY(dn_scratch(op, (int64_t)temp_bytes + 3 * n * 4 + 256, (void **)&buf));
    int32_t *pos_in = (int32_t *)buf, *keys = pos_in + n, *pos = keys + n;
    void *temp = (void *)(((uintptr_t)(pos + n) + 255) & ~(uintptr_t)255);
    iota_k<<<dn_blocks(n, 256), 256, 0, dn_stream()>>>(pos_in, n);
    cudaError_t e = cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, keys, pos_in, pos,
                                                    (int)n, 0, end_bit, dn_stream());
    if (e == cudaSuccess) {
      DN_DISPATCH2(dtype, TT, G,
                   emb_wte_k<TT, G><<<(unsigned)n, 256, 0, dn_stream()>>>(
                       (G *)dwte, (const TT *)dout, keys, pos, n, C););
      e = cudaGetLastError();
    }
    dn_free(buf);
    DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: %s", op, cudaGetErrorString(e));
  }
  if (dwpe) {
    DN_DISPATCH2(dtype, TT, G,
                 emb_wpe_k<TT, G><<<dn_blocks(T * C, 256), 256, 0, dn_stream()>>>(
                     (G *)dwpe, (const TT *)dout, B, T, C););
    DN_LAUNCHED(op);
  }
  return DN_OK;
}
