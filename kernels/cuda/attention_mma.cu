/* defines: dn_attention_mma_enabled, dn_attention_mma_forward, dn_attention_mma_backward
 * Causal self-attention with grouped key/value heads on bf16 tensor cores (mma.sync
 * m16n8k16, fp32 accumulation) for head size 64, the path attention.cu takes for bf16
 * unless DENOTRON_CUDA_ATTENTION=simple. qkv is laid out as kernels/shared/attention.h
 * says; query head h reads key/value head h / (NH/NKV) in place.
 *
 * Every product here is one shape: a warp multiplies a 16x64 A held in registers by a
 * 64x64 B in shared memory into 16x64 fp32 accumulators. A block is four warps over a
 * 64-row tile. Tiles sit in shared memory as they are in global memory (row = token,
 * 64 head dimensions); warp_gemm reads B(k, n) = tile[n][k] with 32-bit loads,
 * warp_gemm_t reads B(k, n) = tile[k][n] with ldmatrix.trans. An accumulator tile re-packs to
 * bf16 as the A operand of the next product (scores -> probabilities -> P.V) without
 * leaving registers.
 *
 * Forward: one block per 64 queries of a query head walks the key tiles up to the diagonal
 * with the online softmax, writes out (B,T,NH*64) and lse (B,NH,T) = max + log(sum) in
 * natural log, the same convention as the fp32 kernel and the CPU backend.
 * Backward: no atomics, so the result is deterministic: one kernel per 64 keys of a
 * key/value head walks, for each query head of its group in turn, the query tiles from the
 * diagonal down and accumulates dK, dV in registers; another per 64 queries walks the key
 * tiles and accumulates dQ (recomputing P once more instead of atomics).
 * Both add into dqkv, like the fp32 kernels. delta = rowsum(dout * out) comes from
 * attention.cu. Needs sm_80 or newer (mma.sync with bf16). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../shared/attention.h"
#include "attention_mma.h"
#include "common.cuh"

#define HD 64          /* head size this path serves */
#define BR 64          /* rows per tile (queries or keys) */
#define LDS (HD + 8)   /* shared row stride in bf16: 144 bytes keeps fragment loads conflict-free */
#define WARPS 4        /* 16 rows each */
#define LOG2E 1.4426950408889634f

int dn_attention_mma_enabled(dn_dtype dtype, int64_t HS, uintptr_t ptr_bits) {
  static const int mode = !dn_env_is("DENOTRON_CUDA_ATTENTION", "simple"); /* 1: mma */
  /* 16-byte vector loads need 16-byte aligned rows and head columns: with HS = 64 every
   * row width and head column of qkv is a multiple of 8 elements */
  return mode && dn_base_dtype(dtype) == DN_BF16 && HS == HD && (ptr_bits & 15) == 0;
}

__device__ __forceinline__ uint32_t ld32(const bf16 *p) {
  return *reinterpret_cast<const uint32_t *>(p);
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t r;
  memcpy(&r, &v, 4);
  return r;
}
__device__ __forceinline__ float2 unpack2(uint32_t w) {
  __nv_bfloat162 v;
  memcpy(&v, &w, 4);
  return __bfloat1622float2(v);
}

/* c(16x8) += a(16x16, row) b(16x8, col) */
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* acc(16x64) += A(16x64, registers) * B where B(k, n) = Bs[n * LDS + k].
 * Fragment ownership (g = lane/4, t = lane%4): acc[n][0..1] at row g, columns 8n+2t and
 * 8n+2t+1; acc[n][2..3] the same columns at row g+8. */
__device__ __forceinline__ void warp_gemm(float acc[8][4], const uint32_t a[4][4],
                                          const bf16 *Bs) {
  int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int ks = 0; ks < 4; ks++)
#pragma unroll
    for (int n = 0; n < 8; n++) {
      const bf16 *p = Bs + (8 * n + g) * LDS + 16 * ks + 2 * t;
      mma16816(acc[n], a[ks], ld32(p), ld32(p + 8));
    }
}

/* acc(16x64) += A(16x64, registers) * B where B(k, n) = Xs[k * LDS + n]: the other
 * orientation, read with ldmatrix.trans (each 8x8 block arrives transposed) so no tile
 * needs a transposed copy. Lane l names row l%8 of block l/8: blocks 0, 1 are k-rows
 * 0-7 and 8-15 of n-tile 2np, blocks 2, 3 the same of n-tile 2np+1. */
__device__ __forceinline__ void warp_gemm_t(float acc[8][4], const uint32_t a[4][4],
                                            const bf16 *Xs) {
  int lane = threadIdx.x & 31;
#pragma unroll
  for (int ks = 0; ks < 4; ks++)
#pragma unroll
    for (int np = 0; np < 4; np++) {
      const bf16 *p = Xs + (16 * ks + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS +
                      8 * (2 * np + (lane >> 4));
      uint32_t addr = (uint32_t)__cvta_generic_to_shared(p), b0, b1, b2, b3;
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3)
                   : "r"(addr));
      mma16816(acc[2 * np], a[ks], b0, b1);
      mma16816(acc[2 * np + 1], a[ks], b2, b3);
    }
}

/* A fragments of rows r0..r0+15 of a shared tile As[row * LDS + k] */
__device__ __forceinline__ void load_a(uint32_t a[4][4], const bf16 *As, int r0) {
  int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int ks = 0; ks < 4; ks++) {
    const bf16 *p = As + (r0 + g) * LDS + 16 * ks + 2 * t;
    a[ks][0] = ld32(p);
    a[ks][1] = ld32(p + 8 * LDS);
    a[ks][2] = ld32(p + 8);
    a[ks][3] = ld32(p + 8 * LDS + 8);
  }
}

/* An accumulator tile (16x64 fp32) as the A operand (16x64 bf16) of the next product */
__device__ __forceinline__ void acc_to_a(uint32_t a[4][4], const float c[8][4]) {
#pragma unroll
  for (int ks = 0; ks < 4; ks++) {
    a[ks][0] = pack2(c[2 * ks][0], c[2 * ks][1]);
    a[ks][1] = pack2(c[2 * ks][2], c[2 * ks][3]);
    a[ks][2] = pack2(c[2 * ks + 1][0], c[2 * ks + 1][1]);
    a[ks][3] = pack2(c[2 * ks + 1][2], c[2 * ks + 1][3]);
  }
}

__device__ __forceinline__ void zero(float c[8][4]) {
#pragma unroll
  for (int n = 0; n < 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) c[n][e] = 0.0f;
}

/* Rows r0..r0+63 of a (.., ld) bf16 tensor at column col into dst[r * LDS + d]; rows
 * at or past T read as zero. */
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int64_t r0, int64_t T,
                                          int64_t ld, int64_t col) {
  for (int k = threadIdx.x; k < BR * (HD / 8); k += WARPS * 32) {
    int r = k / (HD / 8), d = (k % (HD / 8)) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r0 + r < T) v = *reinterpret_cast<const uint4 *>(src + (r0 + r) * ld + col + d);
    *reinterpret_cast<uint4 *>(dst + r * LDS + d) = v;
  }
}

struct MmaDims {
  int64_t T, NH;
  dn_qkv_layout L; /* row widths of qkv and out, first key and value columns, group size */
  float scale;
};

__global__ void __launch_bounds__(WARPS * 32)
    attn_mma_fwd_k(bf16 *out, float *lse, const bf16 *qkv, MmaDims D) {
  __shared__ __align__(16) bf16 Qs[BR * LDS], Ks[BR * LDS], Vs[BR * LDS];
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int qt = (int)(gridDim.x - 1 - blockIdx.x); /* the longest rows first */
  int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH, W = D.L.W, q0 = (int64_t)qt * BR;
  int64_t kc = D.L.K + (h / D.L.G) * HD, vc = D.L.V + (h / D.L.G) * HD;
  const bf16 *base = qkv + b * D.T * W;
  load_tile(Qs, base, q0, D.T, W, h * HD);
  __syncthreads();
  uint32_t qa[4][4];
  load_a(qa, Qs, 16 * w);
  float o[8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  zero(o);
  const float sl2 = D.scale * LOG2E; /* scores in log2 units */
  for (int kt = 0; kt <= qt; kt++) {
    int64_t k0 = (int64_t)kt * BR;
    __syncthreads();
    load_tile(Ks, base, k0, D.T, W, kc);
    load_tile(Vs, base, k0, D.T, W, vc);
    __syncthreads();
    float s[8][4];
    zero(s);
    warp_gemm(s, qa, Ks);
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int64_t qi = q0 + 16 * w + g + 8 * (e >> 1), kj = k0 + 8 * n + 2 * t + (e & 1);
        s[n][e] = kj <= qi ? s[n][e] * sl2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
      }
    float corr[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      corr[r] = exp2f(m[r] - mx[r]); /* 0 on the first tile, where m = -inf */
      m[r] = mx[r];
    }
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        s[n][e] = exp2f(s[n][e] - m[e >> 1]);
        sum[e >> 1] += s[n][e];
        o[n][e] *= corr[e >> 1];
      }
#pragma unroll
    for (int r = 0; r < 2; r++) l[r] = l[r] * corr[r] + sum[r]; /* lane-partial sums */
    uint32_t pa[4][4];
    acc_to_a(pa, s);
    warp_gemm_t(o, pa, Vs);
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    int64_t qi = q0 + 16 * w + g + 8 * r;
    if (qi >= D.T) continue;
    float inv = 1.0f / l[r];
    bf16 *dst = out + (b * D.T + qi) * D.L.C + h * HD + 2 * t;
#pragma unroll
    for (int n = 0; n < 8; n++)
      *reinterpret_cast<uint32_t *>(dst + 8 * n) =
          pack2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    if (t == 0) lse[bh * D.T + qi] = m[r] / LOG2E + logf(l[r]);
  }
}

/* dst(16 rows x 64) += acc at rows r0.., head columns col; rows at or past T are skipped */
__device__ __forceinline__ void add_rows(bf16 *dst, int64_t ld, int64_t r0, int64_t T,
                                         int64_t col, const float acc[8][4]) {
  int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    int64_t row = r0 + g + 8 * r;
    if (row >= T) continue;
    bf16 *p = dst + row * ld + col + 2 * t;
#pragma unroll
    for (int n = 0; n < 8; n++) {
      uint32_t *w = reinterpret_cast<uint32_t *>(p + 8 * n);
      float2 old = unpack2(*w);
      *w = pack2(old.x + acc[n][2 * r], old.y + acc[n][2 * r + 1]);
    }
  }
}

/* dQ for 64 queries: dS = P * (dP - delta) * scale, dQ = dS K */
__global__ void __launch_bounds__(WARPS * 32)
    attn_mma_dq_k(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                  const float *delta, MmaDims D) {
  __shared__ __align__(16) bf16 Ks[BR * LDS], Vs[BR * LDS];
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int qt = (int)(gridDim.x - 1 - blockIdx.x);
  int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH, W = D.L.W, q0 = (int64_t)qt * BR;
  int64_t kc = D.L.K + (h / D.L.G) * HD, vc = D.L.V + (h / D.L.G) * HD;
  const bf16 *base = qkv + b * D.T * W;
  /* Q and dO pass through Ks and Vs on their way to registers */
  load_tile(Ks, base, q0, D.T, W, h * HD);
  load_tile(Vs, dout + b * D.T * D.L.C, q0, D.T, D.L.C, h * HD);
  __syncthreads();
  uint32_t qa[4][4], ga[4][4];
  load_a(qa, Ks, 16 * w);
  load_a(ga, Vs, 16 * w);
  float L[2], Dl[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    int64_t qi = q0 + 16 * w + g + 8 * r;
    L[r] = qi < D.T ? lse[bh * D.T + qi] * LOG2E : INFINITY; /* INFINITY: P = 0 */
    Dl[r] = qi < D.T ? delta[bh * D.T + qi] : 0.0f;
  }
  const float sl2 = D.scale * LOG2E;
  float dq[8][4];
  zero(dq);
  for (int kt = 0; kt <= qt; kt++) {
    int64_t k0 = (int64_t)kt * BR;
    __syncthreads();
    load_tile(Ks, base, k0, D.T, W, kc);
    load_tile(Vs, base, k0, D.T, W, vc);
    __syncthreads();
    float s[8][4], dp[8][4];
    zero(s);
    zero(dp);
    warp_gemm(s, qa, Ks);
    warp_gemm(dp, ga, Vs);
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int r = e >> 1;
        int64_t qi = q0 + 16 * w + g + 8 * r, kj = k0 + 8 * n + 2 * t + (e & 1);
        float p = kj <= qi ? exp2f(s[n][e] * sl2 - L[r]) : 0.0f;
        s[n][e] = p * (dp[n][e] - Dl[r]) * D.scale;
      }
    uint32_t da[4][4];
    acc_to_a(da, s);
    warp_gemm_t(dq, da, Ks);
  }
  add_rows(dqkv + b * D.T * W, W, q0 + 16 * w, D.T, h * HD, dq);
}

/* dK, dV for 64 keys of key/value head kv: dV = P^T dO, dK = dS^T Q over the queries at or
 * after each key, summed over the query heads of the group */
__global__ void __launch_bounds__(WARPS * 32)
    attn_mma_dkv_k(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                   const float *delta, MmaDims D) {
  __shared__ __align__(16) bf16 Qs[BR * LDS], Gs[BR * LDS];
  __shared__ float Ls[BR], Ds[BR];
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int kt = (int)blockIdx.x, nt = (int)gridDim.x; /* kt = 0 has the most work: first */
  int64_t NKV = D.NH / D.L.G, W = D.L.W, C = D.L.C, k0 = (int64_t)kt * BR;
  int64_t bkv = blockIdx.y, b = bkv / NKV, kv = bkv % NKV;
  int64_t kc = D.L.K + kv * HD, vc = D.L.V + kv * HD;
  const bf16 *base = qkv + b * D.T * W, *gbase = dout + b * D.T * C;
  /* K and V pass through Qs and Gs on their way to registers */
  load_tile(Qs, base, k0, D.T, W, kc);
  load_tile(Gs, base, k0, D.T, W, vc);
  __syncthreads();
  uint32_t ka[4][4], va[4][4];
  load_a(ka, Qs, 16 * w);
  load_a(va, Gs, 16 * w);
  const float sl2 = D.scale * LOG2E;
  float dk[8][4], dv[8][4];
  zero(dk);
  zero(dv);
  for (int64_t h = kv * D.L.G; h < (kv + 1) * D.L.G; h++) {
    const float *lh = lse + (b * D.NH + h) * D.T, *dh = delta + (b * D.NH + h) * D.T;
    for (int qt = kt; qt < nt; qt++) {
      int64_t q0 = (int64_t)qt * BR;
      __syncthreads();
      load_tile(Qs, base, q0, D.T, W, h * HD);
      load_tile(Gs, gbase, q0, D.T, C, h * HD);
      for (int r = threadIdx.x; r < BR; r += WARPS * 32) {
        Ls[r] = q0 + r < D.T ? lh[q0 + r] * LOG2E : INFINITY;
        Ds[r] = q0 + r < D.T ? dh[q0 + r] : 0.0f;
      }
      __syncthreads();
      float s[8][4], dp[8][4];
      zero(s);
      zero(dp);
      warp_gemm(s, ka, Qs);  /* S^T(key, query) */
      warp_gemm(dp, va, Gs); /* dP^T(key, query) */
#pragma unroll
      for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          int c = 8 * n + 2 * t + (e & 1);
          int64_t kj = k0 + 16 * w + g + 8 * (e >> 1), qi = q0 + c;
          float p = kj <= qi ? exp2f(s[n][e] * sl2 - Ls[c]) : 0.0f;
          s[n][e] = p;
          dp[n][e] = p * (dp[n][e] - Ds[c]) * D.scale;
        }
      uint32_t pa[4][4];
      acc_to_a(pa, s);
      warp_gemm_t(dv, pa, Gs);
      acc_to_a(pa, dp);
      warp_gemm_t(dk, pa, Qs);
    }
  }
  bf16 *d = dqkv + b * D.T * W;
  add_rows(d, W, k0 + 16 * w, D.T, kc, dk);
  add_rows(d, W, k0 + 16 * w, D.T, vc, dv);
}

static dn_status launched(const char *op) {
  cudaError_t e = cudaGetLastError();
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: tensor-core attention launch failed: %s", op,
           cudaGetErrorString(e));
  return DN_OK;
}

dn_status dn_attention_mma_forward(void *out, float *lse, const void *qkv, int64_t B, int64_t T,
                                   int64_t NH, int64_t NKV) {
  MmaDims D = {T, NH, dn_qkv_layout_of(NH, NKV, HD), 1.0f / sqrtf((float)HD)};
  dim3 grid((unsigned)((T + BR - 1) / BR), (unsigned)(B * NH));
  attn_mma_fwd_k<<<grid, WARPS * 32, 0, dn_stream()>>>((bf16 *)out, lse, (const bf16 *)qkv, D);
  return launched("dn_attention_forward");
}

dn_status dn_attention_mma_backward(void *dqkv, const void *dout, const void *qkv,
                                    const float *lse, const float *delta, int64_t B, int64_t T,
                                    int64_t NH, int64_t NKV) {
  MmaDims D = {T, NH, dn_qkv_layout_of(NH, NKV, HD), 1.0f / sqrtf((float)HD)};
  unsigned tiles = (unsigned)((T + BR - 1) / BR);
  const bf16 *g = (const bf16 *)dout, *x = (const bf16 *)qkv;
  attn_mma_dkv_k<<<dim3(tiles, (unsigned)(B * NKV)), WARPS * 32, 0, dn_stream()>>>(
      (bf16 *)dqkv, g, x, lse, delta, D);
  attn_mma_dq_k<<<dim3(tiles, (unsigned)(B * NH)), WARPS * 32, 0, dn_stream()>>>(
      (bf16 *)dqkv, g, x, lse, delta, D);
  return launched("dn_attention_backward");
}
