/* defines: dn_gemm_builtin, dn_gemm_builtin_ex, dn_column_sums.
 * A cache-blocked GEMM in the usual three-level scheme: a KC x NC panel of op(B)
 * is packed into NR-wide slivers (kept in L3/L2), each MC x KC block of op(A)
 * into MR-tall slivers (kept in L2), and an MR x NR micro-kernel keeps its tile
 * of C in registers. GCC vector extensions make the micro-kernel AVX2/FMA code
 * on machines that have it, and plain SIMD elsewhere.
 * Mixed precision: A and B may be bf16/f16; packing widens them, so the panels and
 * the micro-kernel stay fp32 and no whole matrix is ever converted. C may be 16-bit
 * too (rounded once per tile update) or fp32 while A and B are 16-bit (weight
 * gradients into fp32 main gradients). */
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "gemm_builtin.h"

#define MR 6
#define NR 16
#define MC 96
#define KC 256
#define NC 3072

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) {
  v8 r;
  memcpy(&r, p, sizeof r);
  return r;
}
static inline void store8(float *p, v8 x) { memcpy(p, &x, sizeof x); }

/* acc(MR,NR) = Ap(kc,MR)^T Bp(kc,NR); C tile += alpha * acc (only mr x nr of it). */
static void micro_kernel(int64_t kc, const float *Ap, const float *Bp, float alpha,
                         dn_dtype ct, void *Cv, int64_t ldc, int64_t mr, int64_t nr) {
  v8 c[MR][2];
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = (v8){0};
  for (int64_t k = 0; k < kc; k++) {
    v8 b0 = load8(Bp + k * NR), b1 = load8(Bp + k * NR + 8);
    const float *a = Ap + k * MR;
    for (int i = 0; i < MR; i++) {
      v8 ai = (v8){0} + a[i];
      c[i][0] += ai * b0;
      c[i][1] += ai * b1;
    }
  }
  if (ct == DN_F32 && mr == MR && nr == NR) {
    float *C = Cv;
    for (int i = 0; i < MR; i++) {
      float *row = C + i * ldc;
      store8(row, load8(row) + c[i][0] * alpha);
      store8(row + 8, load8(row + 8) + c[i][1] * alpha);
    }
    return;
  }
  float tile[MR][NR];
  for (int i = 0; i < MR; i++) {
    store8(tile[i], c[i][0]);
    store8(tile[i] + 8, c[i][1]);
  }
  for (int64_t i = 0; i < mr; i++)
    for (int64_t j = 0; j < nr; j++)
      dn_st(ct, Cv, i * ldc + j, dn_ld(ct, Cv, i * ldc + j) + alpha * tile[i][j]);
}

/* Packs op(A)[i0:i0+mc, p0:p0+kc] into MR-tall slivers, zero-padded. */
static void pack_a(float *Ap, dn_dtype dt, int ta, const void *A, int64_t lda, int64_t i0,
                   int64_t mc, int64_t p0, int64_t kc) {
  DN_FOR_DTYPE(dt, {
    for (int64_t ir = 0; ir < mc; ir += MR) {
      float *dst = Ap + ir * kc;
      int64_t mr = mc - ir < MR ? mc - ir : MR;
      for (int64_t k = 0; k < kc; k++) {
        for (int64_t i = 0; i < MR; i++) {
          float v = 0.0f;
          if (i < mr) {
            int64_t row = i0 + ir + i, col = p0 + k;
            v = dn_ld(DT, A, ta ? col * lda + row : row * lda + col);
          }
          dst[k * MR + i] = v;
        }
      }
    }
  });
}

/* Packs op(B)[p0:p0+kc, j0:j0+nc] into NR-wide slivers, zero-padded. */
static void pack_b_sliver(float *dst, dn_dtype dt, int tb, const void *B, int64_t ldb,
                          int64_t p0, int64_t kc, int64_t j, int64_t nr) {
  DN_FOR_DTYPE(dt, {
    for (int64_t k = 0; k < kc; k++) {
      for (int64_t jj = 0; jj < NR; jj++) {
        float v = 0.0f;
        if (jj < nr) {
          int64_t row = p0 + k, col = j + jj;
          v = dn_ld(DT, B, tb ? col * ldb + row : row * ldb + col);
        }
        dst[k * NR + jj] = v;
      }
    }
  });
}

static void scale_c(dn_dtype ct, void *C, int64_t ldc, int64_t M, int64_t N, float beta) {
  if (beta == 1.0f) return;
  size_t es = ct == DN_F32 ? 4 : 2;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (M * N > 65536)
  for (int64_t i = 0; i < M; i++) {
    if (beta == 0.0f) {
      memset((char *)C + (size_t)(i * ldc) * es, 0, (size_t)N * es);
    } else {
      for (int64_t j = 0; j < N; j++) dn_st(ct, C, i * ldc + j, beta * dn_ld(ct, C, i * ldc + j));
    }
  }
}

void dn_gemm_builtin(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc) {
  dn_gemm_builtin_ex(ta, tb, M, N, K, alpha, DN_F32, A, lda, B, ldb, beta, DN_F32, C, ldc);
}

void dn_gemm_builtin_ex(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                        dn_dtype ab, const void *A, int64_t lda, const void *B, int64_t ldb,
                        float beta, dn_dtype ct, void *C, int64_t ldc) {
  size_t es = ct == DN_F32 ? 4 : 2;
  scale_c(ct, C, ldc, M, N, beta);
  if (alpha == 0.0f || K == 0) return;
  float *Bp = aligned_alloc(64, sizeof(float) * KC * (NC + NR));
  for (int64_t jc = 0; jc < N; jc += NC) {
    int64_t nc = N - jc < NC ? N - jc : NC;
    int64_t n_slivers = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < K; pc += KC) {
      int64_t kc = K - pc < KC ? K - pc : KC;
#pragma omp parallel num_threads(dn_threads)
      {
#pragma omp for schedule(static)
        for (int64_t s = 0; s < n_slivers; s++) {
          int64_t j = jc + s * NR;
          int64_t nr = jc + nc - j < NR ? jc + nc - j : NR;
          pack_b_sliver(Bp + s * kc * NR, ab, tb, B, ldb, pc, kc, j, nr);
        }
        float Ap[MC * KC] __attribute__((aligned(64)));
        /* Small M leaves too few A blocks for the threads, so the work is split
         * over (A block, B sliver group) tiles. */
        int64_t m_blocks = (M + MC - 1) / MC;
        int64_t groups = m_blocks >= 2 * dn_threads ? 1 : 4 * dn_threads;
        if (groups > n_slivers) groups = n_slivers;
        int64_t per_group = (n_slivers + groups - 1) / groups;
#pragma omp for schedule(dynamic) collapse(2)
        for (int64_t mb = 0; mb < m_blocks; mb++) {
          for (int64_t g = 0; g < groups; g++) {
            int64_t ic = mb * MC;
            int64_t mc = M - ic < MC ? M - ic : MC;
            pack_a(Ap, ab, ta, A, lda, ic, mc, pc, kc);
            int64_t s_hi = (g + 1) * per_group < n_slivers ? (g + 1) * per_group : n_slivers;
            for (int64_t s = g * per_group; s < s_hi; s++) {
              int64_t j = s * NR;
              int64_t nr = nc - j < NR ? nc - j : NR;
              for (int64_t ir = 0; ir < mc; ir += MR) {
                int64_t mr = mc - ir < MR ? mc - ir : MR;
                micro_kernel(kc, Ap + ir * kc, Bp + s * kc * NR, alpha, ct,
                             (char *)C + (size_t)((ic + ir) * ldc + jc + j) * es, ldc, mr, nr);
              }
            }
          }
        }
      }
    }
  }
  free(Bp);
}

void dn_column_sums(dn_dtype ot, void *out, dn_dtype xt, const void *x, int64_t M, int64_t N) {
  const int64_t block = 64;
  int64_t nblocks = (N + block - 1) / block;
#pragma omp parallel for num_threads(dn_threads) schedule(static) if (M * N > 65536)
  for (int64_t cb = 0; cb < nblocks; cb++) {
    int64_t j0 = cb * block, j1 = j0 + block < N ? j0 + block : N;
    float acc[64] = {0};
    DN_FOR_DTYPE(xt, {
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = j0; j < j1; j++) acc[j - j0] += dn_ld(DT, x, i * N + j);
    });
    dn_accum_row(ot, out, j0, acc, j1 - j0);
  }
}
