/* defines: dn_attention_forward, dn_attention_backward, dn_attention_spans_forward,
 *          dn_attention_spans_backward (opt-in: DENOTRON_CUDA_SPANS=1)
 * Causal self-attention with grouped key/value heads (GQA; MHA when NKV = NH, MQA when
 * NKV = 1) in the flash-attention manner: tiles of 32 keys (or queries)
 * pass through shared memory, each warp keeps one row's running max, sum and output in
 * registers, and only the log-sum-exp per row reaches global memory, so no (T,T)
 * matrix exists anywhere. Everything is fp32 inside; 16-bit tensors are widened as
 * tiles load. Backward runs as three kernels with no atomics (deterministic):
 * D = rowsum(dout * out); dq with one warp per query row; dk and dv with one warp per
 * key row, whose block walks every query head of the key/value head's group in turn, so
 * a shared head's gradient is summed in registers in a fixed order and written once.
 * HS is at most 128 (four fp32 accumulators per lane).
 *
 * The _spans variants give each query its own key range [lo, hi) from spans(B,T,2)
 * (packed documents: the document's start to the query; a padding mask: the row's valid
 * tokens, both ways) through the same kernels: forward and dq walk the key tiles that the
 * block's rows read, and the dkv block walks every query tile, skipping those whose
 * queries read none of its keys (a bidirectional range reads keys after its query too).
 * An empty range gives out 0, lse 0 and no gradient, as on the CPU. The spans stay on the
 * device unchecked (the CPU library checks them); each is clamped to [0, T] as it is read.
 * They are opt-in (DENOTRON_CUDA_SPANS=1) until the GPU check has run them; without the
 * variable they refuse with DN_ERR_UNSUPPORTED.
 *
 * bf16 with head size 64 goes to the tensor-core kernels of attention_mma.cu instead
 * (DENOTRON_CUDA_ATTENTION=simple keeps it here), except with spans, which those kernels do
 * not know; both share the delta kernel below.
 *
 * qkv(B,T,(NH+2*NKV)*HS): row (b,t) holds NH query heads, NKV key heads, NKV value heads
 * (kernels/shared/attention.h); query head h reads key/value head h / (NH/NKV) in place. */
#include <math.h>
#include "../shared/attention.h"
#include "attention_mma.h"
#include "common.cuh"

#define ROWS 8   /* rows (warps) per block */
#define TILE 32  /* keys or queries per shared-memory tile: one per lane */
#define MAXD 4   /* HS / 32 accumulators per lane */
#define MAX_HS (32 * MAXD)

struct Dims {
  int64_t T, NH, HS;
  dn_qkv_layout L; /* row widths of qkv and out, first key and value columns, group size */
  float scale;
};

/* dst(rows, HS) with row stride ld_dst = rows [r0, r0+rows) of a (.., ld) tensor at
 * column col, widened to fp32; rows past T are zero. */
template <typename T>
__device__ void load_tile(float *dst, int ld_dst, const T *src, int64_t r0, int rows,
                          int64_t Tmax, int64_t ld, int64_t col, int HS) {
  for (int k = threadIdx.x; k < rows * HS; k += blockDim.x) {
    int r = k / HS, d = k % HS;
    int64_t row = r0 + r;
    dst[r * ld_dst + d] = row < Tmax ? ldf(src, row * ld + col + d) : 0.0f;
  }
}

/* Query i's key range [lo, hi): its entry of spans(T,2), clamped to [0, T] so that a bad
 * span reads nothing outside the sequence (the spans are not checked on the device), or the
 * causal [0, i] when spans is NULL. */
__device__ __forceinline__ void key_range(const int32_t *spans, int64_t i, int64_t T,
                                          int64_t &lo, int64_t &hi) {
  if (!spans) {
    lo = 0;
    hi = i + 1;
    return;
  }
  lo = spans[2 * i] > 0 ? spans[2 * i] : 0;
  hi = spans[2 * i + 1] < T ? spans[2 * i + 1] : T;
}

/* The keys that rows [i0, i0+ROWS) read together: [min lo, max hi) over the rows below T
 * whose range is not empty ([0, 0) when none is). Every thread reads the same few spans. */
__device__ void block_keys(const int32_t *spans, int64_t i0, int64_t T, int64_t &lo,
                           int64_t &hi) {
  int64_t end = i0 + ROWS < T ? i0 + ROWS : T;
  if (!spans) {
    lo = 0;
    hi = end;
    return;
  }
  lo = T;
  hi = 0;
  for (int64_t i = i0; i < end; i++) {
    int64_t a, z;
    key_range(spans, i, T, a, z);
    if (a >= z) continue;
    lo = a < lo ? a : lo;
    hi = z > hi ? z : hi;
  }
  if (lo >= hi) lo = hi = 0;
}

/* [lo, hi) and [a, z) share an index */
__device__ __forceinline__ bool overlaps(int64_t lo, int64_t hi, int64_t a, int64_t z) {
  return (lo > a ? lo : a) < (hi < z ? hi : z);
}

/* out, lse of one query row per warp; spans(B,T,2) or NULL (causal) */
template <typename T>
__global__ void attn_fwd_k(T *out, float *lse, const T *qkv, const int32_t *spans, Dims D) {
  extern __shared__ float sm[];
  int HS = (int)D.HS, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *q = sm, *k = q + ROWS * HS, *v = k + TILE * (HS + 1);
  int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH, W = D.L.W;
  int64_t kc = D.L.K + (h / D.L.G) * HS, vc = D.L.V + (h / D.L.G) * HS;
  int64_t i0 = (int64_t)blockIdx.x * ROWS, i = i0 + w;
  const T *base = qkv + b * D.T * W;
  const int32_t *sp = spans ? spans + 2 * b * D.T : nullptr;
  load_tile(q, HS, base, i0, ROWS, D.T, W, h * HS, HS);
  float o[MAXD] = {0, 0, 0, 0}, m = -INFINITY, l = 0.0f;
  int64_t lo = 0, hi = 0, klo, khi; /* rows past T read nothing */
  if (i < D.T) key_range(sp, i, D.T, lo, hi);
  block_keys(sp, i0, D.T, klo, khi);
  for (int64_t j0 = klo; j0 < khi; j0 += TILE) {
    __syncthreads();
    load_tile(k, HS + 1, base, j0, TILE, D.T, W, kc, HS);
    load_tile(v, HS, base, j0, TILE, D.T, W, vc, HS);
    __syncthreads();
    /* a tile with none of the row's keys would make the running max -inf - -inf */
    if (!overlaps(lo, hi, j0, j0 + TILE)) continue;
    int64_t j = j0 + lane;
    bool in = lo <= j && j < hi;
    float s = -INFINITY;
    if (in) {
      float dot = 0.0f;
      for (int d = 0; d < HS; d++) dot += q[w * HS + d] * k[lane * (HS + 1) + d];
      s = dot * D.scale;
    }
    float nm = fmaxf(m, warp_max(s));
    float p = in ? __expf(s - nm) : 0.0f;
    float corr = __expf(m - nm); /* 0 on the first tile, where m = -inf */
    l = l * corr + warp_sum(p);
    for (int r = 0; r < MAXD; r++) o[r] *= corr;
    for (int jj = 0; jj < TILE; jj++) {
      float pj = __shfl_sync(0xffffffffu, p, jj);
      for (int r = 0; r < MAXD; r++) {
        int d = lane + 32 * r;
        if (d < HS) o[r] += pj * v[jj * HS + d];
      }
    }
    m = nm;
  }
  if (i >= D.T) return;
  /* l = 0 only for an empty range: out 0 and lse 0, as on the CPU */
  float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int r = 0; r < MAXD; r++) {
    int d = lane + 32 * r;
    if (d < HS) stf(out, (b * D.T + i) * D.L.C + h * HS + d, o[r] * inv);
  }
  if (lane == 0) lse[bh * D.T + i] = l > 0.0f ? m + logf(l) : 0.0f;
}

static dn_status check_sizes(const char *op, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                             int64_t HS) {
  DN_TRY(dn_attention_check(op, B, T, NH, NKV, HS));
  DN_CHECK(HS <= MAX_HS, DN_ERR_UNSUPPORTED,
           "%s: head size %lld is above the CUDA kernel's limit of %d", op, (long long)HS,
           MAX_HS);
  DN_CHECK(B * NH < 65536, DN_ERR_INVALID, "%s: B*NH=%lld exceeds 65535", op,
           (long long)(B * NH));
  return DN_OK;
}

/* Both forwards; spans(B,T,2) or NULL (causal, where bf16 HS=64 may take the mma kernels). */
static dn_status forward(const char *op, dn_dtype dtype, void *out, float *lse, const void *qkv,
                         const int32_t *spans, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                         int64_t HS) {
  DN_CHECK_FLOAT(dtype, op);
  DN_TRY(check_sizes(op, B, T, NH, NKV, HS));
  DN_CHECK(out && lse && qkv, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  if (!spans && dn_attention_mma_enabled(dtype, HS, (uintptr_t)out | (uintptr_t)qkv))
    return dn_attention_mma_forward(out, lse, qkv, B, T, NH, NKV);
  Dims D = {T, NH, HS, dn_qkv_layout_of(NH, NKV, HS), 1.0f / sqrtf((float)HS)};
  dim3 grid((unsigned)((T + ROWS - 1) / ROWS), (unsigned)(B * NH));
  size_t smem = sizeof(float) * (size_t)(ROWS * HS + TILE * (HS + 1) + TILE * HS);
  DN_DISPATCH(dn_base_dtype(dtype), TT,
              attn_fwd_k<TT><<<grid, ROWS * 32, smem, dn_stream()>>>(
                  (TT *)out, lse, (const TT *)qkv, spans, D););
  DN_LAUNCHED(op);
  return DN_OK;
}

dn_status dn_attention_forward(dn_dtype dtype, void *out, float *lse, const void *qkv, int64_t B,
                               int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
  return forward("dn_attention_forward", dtype, out, lse, qkv, nullptr, B, T, NH, NKV, HS);
}

/* delta(B,NH,T) = sum_d dout * out over each query head's row */
template <typename T>
__global__ void attn_delta_k(float *delta, const T *dout, const T *out, int64_t B, Dims D) {
  int64_t r = (int64_t)blockIdx.x * ROWS + (threadIdx.x >> 5); /* over (b, t, h) */
  int lane = threadIdx.x & 31;
  if (r >= B * D.T * D.NH) return;
  int64_t h = r % D.NH, bt = r / D.NH, b = bt / D.T, t = bt % D.T;
  int64_t at = bt * D.L.C + h * D.HS;
  float s = 0.0f;
  for (int64_t d = lane; d < D.HS; d += 32) s += ldf(dout, at + d) * ldf(out, at + d);
  s = warp_sum(s);
  if (lane == 0) delta[(b * D.NH + h) * D.T + t] = s;
}

/* dq rows: one warp per query row i, tiles of its keys [lo, hi) (causal: j <= i) */
template <typename T>
__global__ void attn_dq_k(T *dqkv, const T *dout, const T *qkv, const float *lse,
                          const float *delta, const int32_t *spans, Dims D) {
  extern __shared__ float sm[];
  int HS = (int)D.HS, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *q = sm, *g = q + ROWS * HS, *k = g + ROWS * HS, *v = k + TILE * (HS + 1);
  int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH, W = D.L.W, C = D.L.C;
  int64_t kc = D.L.K + (h / D.L.G) * HS, vc = D.L.V + (h / D.L.G) * HS;
  int64_t i0 = (int64_t)blockIdx.x * ROWS, i = i0 + w;
  const T *base = qkv + b * D.T * W;
  const int32_t *sp = spans ? spans + 2 * b * D.T : nullptr;
  load_tile(q, HS, base, i0, ROWS, D.T, W, h * HS, HS);
  load_tile(g, HS, dout + b * D.T * C, i0, ROWS, D.T, C, h * HS, HS);
  float L = i < D.T ? lse[bh * D.T + i] : 0.0f, Dl = i < D.T ? delta[bh * D.T + i] : 0.0f;
  float dq[MAXD] = {0, 0, 0, 0};
  int64_t lo = 0, hi = 0, klo, khi;
  if (i < D.T) key_range(sp, i, D.T, lo, hi);
  block_keys(sp, i0, D.T, klo, khi);
  for (int64_t j0 = klo; j0 < khi; j0 += TILE) {
    __syncthreads();
    load_tile(k, HS + 1, base, j0, TILE, D.T, W, kc, HS);
    load_tile(v, HS + 1, base, j0, TILE, D.T, W, vc, HS);
    __syncthreads();
    if (!overlaps(lo, hi, j0, j0 + TILE)) continue;
    int64_t j = j0 + lane;
    float ds = 0.0f;
    if (lo <= j && j < hi) {
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < HS; d++) {
        s += q[w * HS + d] * k[lane * (HS + 1) + d];
        dp += g[w * HS + d] * v[lane * (HS + 1) + d];
      }
      float p = __expf(s * D.scale - L);
      ds = p * (dp - Dl) * D.scale;
    }
    for (int jj = 0; jj < TILE; jj++) {
      float dsj = __shfl_sync(0xffffffffu, ds, jj);
      for (int r = 0; r < MAXD; r++) {
        int d = lane + 32 * r;
        if (d < HS) dq[r] += dsj * k[jj * (HS + 1) + d];
      }
    }
  }
  if (i >= D.T) return;
  for (int r = 0; r < MAXD; r++) {
    int d = lane + 32 * r;
    if (d < HS) addf(dqkv, (b * D.T + i) * W + h * HS + d, dq[r]);
  }
}

/* dk, dv rows: one warp per key row j of key/value head kv; for each query head of its
 * group in turn, tiles of the queries whose range holds j. Causal: the tiles from j0 on.
 * With spans a query may read keys before or after itself, so every tile is visited, each
 * pair (i, j) masked by i's range, and a tile none of whose queries reads a key of the
 * block is skipped by the whole block at its first barrier. */
template <typename T>
__global__ void attn_dkv_k(T *dqkv, const T *dout, const T *qkv, const float *lse,
                           const float *delta, const int32_t *spans, Dims D) {
  extern __shared__ float sm[];
  int HS = (int)D.HS, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *k = sm, *v = k + ROWS * HS, *q = v + ROWS * HS, *g = q + TILE * (HS + 1);
  float *Ls = g + TILE * (HS + 1), *Ds = Ls + TILE;
  int64_t NKV = D.NH / D.L.G, W = D.L.W, C = D.L.C;
  int64_t bkv = blockIdx.y, b = bkv / NKV, kv = bkv % NKV;
  int64_t kc = D.L.K + kv * HS, vc = D.L.V + kv * HS;
  int64_t j0 = (int64_t)blockIdx.x * ROWS, j = j0 + w;
  int64_t jend = j0 + ROWS < D.T ? j0 + ROWS : D.T;
  const T *base = qkv + b * D.T * W;
  const int32_t *sp = spans ? spans + 2 * b * D.T : nullptr;
  load_tile(k, HS, base, j0, ROWS, D.T, W, kc, HS);
  load_tile(v, HS, base, j0, ROWS, D.T, W, vc, HS);
  float dk[MAXD] = {0, 0, 0, 0}, dv[MAXD] = {0, 0, 0, 0};
  for (int64_t h = kv * D.L.G; h < (kv + 1) * D.L.G; h++) {
    int64_t bh = b * D.NH + h;
    for (int64_t i0 = sp ? 0 : j0; i0 < D.T; i0 += TILE) {
      int64_t i = i0 + lane, lo = 0, hi = 0; /* lane's query; past T it reads nothing */
      if (i < D.T) key_range(sp, i, D.T, lo, hi);
      /* the barrier before the loads; always true when causal (query i0 >= j0 reads j0) */
      if (!__syncthreads_or(overlaps(lo, hi, j0, jend))) continue;
      load_tile(q, HS + 1, base, i0, TILE, D.T, W, h * HS, HS);
      load_tile(g, HS + 1, dout + b * D.T * C, i0, TILE, D.T, C, h * HS, HS);
      for (int r = threadIdx.x; r < TILE; r += blockDim.x) {
        Ls[r] = i0 + r < D.T ? lse[bh * D.T + i0 + r] : 0.0f;
        Ds[r] = i0 + r < D.T ? delta[bh * D.T + i0 + r] : 0.0f;
      }
      __syncthreads();
      bool in = lo <= j && j < hi;
      if (j >= D.T || !__any_sync(0xffffffffu, in)) continue;
      float p = 0.0f, ds = 0.0f;
      if (in) {
        float s = 0.0f, dp = 0.0f;
        for (int d = 0; d < HS; d++) {
          s += q[lane * (HS + 1) + d] * k[w * HS + d];
          dp += g[lane * (HS + 1) + d] * v[w * HS + d];
        }
        p = __expf(s * D.scale - Ls[lane]);
        ds = p * (dp - Ds[lane]) * D.scale;
      }
      for (int ii = 0; ii < TILE; ii++) {
        float pi = __shfl_sync(0xffffffffu, p, ii), dsi = __shfl_sync(0xffffffffu, ds, ii);
        for (int r = 0; r < MAXD; r++) {
          int d = lane + 32 * r;
          if (d < HS) {
            dv[r] += pi * g[ii * (HS + 1) + d];
            dk[r] += dsi * q[ii * (HS + 1) + d];
          }
        }
      }
    }
  }
  if (j >= D.T) return;
  for (int r = 0; r < MAXD; r++) {
    int d = lane + 32 * r;
    if (d < HS) {
      addf(dqkv, (b * D.T + j) * W + kc + d, dk[r]);
      addf(dqkv, (b * D.T + j) * W + vc + d, dv[r]);
    }
  }
}

/* Both backwards; spans(B,T,2) or NULL (causal, where bf16 HS=64 may take the mma kernels). */
static dn_status backward(const char *op, dn_dtype dtype, void *dqkv, const void *dout,
                          const void *qkv, const void *out, const float *lse,
                          const int32_t *spans, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                          int64_t HS) {
  DN_CHECK_FLOAT(dtype, op);
  DN_TRY(check_sizes(op, B, T, NH, NKV, HS));
  DN_CHECK(dqkv && dout && qkv && out && lse, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_TRY(dn_cuda_init(op));
  Dims D = {T, NH, HS, dn_qkv_layout_of(NH, NKV, HS), 1.0f / sqrtf((float)HS)};
  int mma = !spans && dn_attention_mma_enabled(dtype, HS,
                                               (uintptr_t)dqkv | (uintptr_t)dout |
                                                   (uintptr_t)qkv | (uintptr_t)out);
  float *delta;
  DN_TRY(dn_scratch(op, B * NH * T * 4, (void **)&delta));
  unsigned tiles = (unsigned)((T + ROWS - 1) / ROWS);
  dim3 grid_q(tiles, (unsigned)(B * NH)), grid_kv(tiles, (unsigned)(B * NKV));
  size_t smem_dq = sizeof(float) * (size_t)(2 * ROWS * HS + 2 * TILE * (HS + 1));
  size_t smem_dkv = sizeof(float) * (size_t)(2 * ROWS * HS + 2 * TILE * (HS + 1) + 2 * TILE);
  DN_DISPATCH(dn_base_dtype(dtype), TT, {
    const TT *g = (const TT *)dout, *x = (const TT *)qkv;
    attn_delta_k<TT><<<(unsigned)((B * T * NH + ROWS - 1) / ROWS), ROWS * 32, 0, dn_stream()>>>(
        delta, g, (const TT *)out, B, D);
    if (!mma) {
      attn_dq_k<TT><<<grid_q, ROWS * 32, smem_dq, dn_stream()>>>((TT *)dqkv, g, x, lse, delta,
                                                                   spans, D);
      attn_dkv_k<TT><<<grid_kv, ROWS * 32, smem_dkv, dn_stream()>>>((TT *)dqkv, g, x, lse,
                                                                      delta, spans, D);
    }
  });
  cudaError_t e = cudaGetLastError();
  dn_status st = DN_OK;
  if (e == cudaSuccess && mma)
    st = dn_attention_mma_backward(dqkv, dout, qkv, lse, delta, B, T, NH, NKV);
  dn_free(delta);
  DN_TRY(st);
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: launch failed: %s", op, cudaGetErrorString(e));
  return DN_OK;
}

dn_status dn_attention_backward(dn_dtype dtype, void *dqkv, const void *dout, const void *qkv,
                                const void *out, const float *lse, int64_t B, int64_t T,
                                int64_t NH, int64_t NKV, int64_t HS) {
  return backward("dn_attention_backward", dtype, dqkv, dout, qkv, out, lse, nullptr, B, T, NH,
                  NKV, HS);
}

/* Per-query key ranges run here only with DENOTRON_CUDA_SPANS=1 (dn_spans_allowed) until
 * the GPU check has passed them; the variable is read first, so the refusal needs no GPU. */
static dn_status spans_allowed(const char *op, const int32_t *spans) {
  DN_TRY(dn_spans_allowed(op, "attention over packed documents or padding masks"));
  DN_CHECK(spans, DN_ERR_INVALID, "%s: NULL spans", op);
  return DN_OK;
}

dn_status dn_attention_spans_forward(dn_dtype dtype, void *out, float *lse, const void *qkv,
                                     const int32_t *spans, int64_t B, int64_t T, int64_t NH,
                                     int64_t NKV, int64_t HS) {
  const char *op = "dn_attention_spans_forward";
  DN_TRY(spans_allowed(op, spans));
  return forward(op, dtype, out, lse, qkv, spans, B, T, NH, NKV, HS);
}

dn_status dn_attention_spans_backward(dn_dtype dtype, void *dqkv, const void *dout,
                                      const void *qkv, const void *out, const float *lse,
                                      const int32_t *spans, int64_t B, int64_t T, int64_t NH,
                                      int64_t NKV, int64_t HS) {
  const char *op = "dn_attention_spans_backward";
  DN_TRY(spans_allowed(op, spans));
  return backward(op, dtype, dqkv, dout, qkv, out, lse, spans, B, T, NH, NKV, HS);
}
