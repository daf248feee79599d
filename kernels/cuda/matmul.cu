/* defines: dn_matmul, dn_bias_backward
 * GEMM through cuBLAS, opened at run time (DENOTRON_CUBLAS_LIB overrides the path):
 * fp32 uses TF32 tensor cores (set DENOTRON_CUDA_TF32=0 for full fp32), bf16 and fp16
 * accumulate in fp32. cuBLAS is column-major, so the row-major C = op(A) op(B) is
 * computed as C^T = op(B)^T op(A)^T, which needs no transposition of any buffer.
 * cuBLAS is fast only on 16-byte aligned rows and sizes that are multiples of 8; GPT-2's
 * vocabulary of 50257 breaks both in every output-layer GEMM (5-10x slower on an H200).
 * Such a GEMM runs on copies in scratch instead: sizes padded to a multiple of 64 with
 * zeros (zero K terms add nothing; padded rows and columns of C are dropped), rows
 * aligned, the output copied back: a few memory passes instead of a slow GEMM.
 * DENOTRON_CUDA_GEMM_REPACK=0 turns this off. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>

#include "common.cuh"
#include "cublas_api.h"
#include "dynload.h"

static struct {
  cublasHandle_t handle;
  cublasGemmStridedBatchedEx_fn gemm;
  cublasGetStatusString_fn status_string;
  int tf32;
  dn_status error; /* the load's outcome, replayed on every later call */
  char message[1024];
  int loaded;
} blas;
static std::mutex blas_lock;

const char *dn_gemm_backend(void) {
  if (!blas.loaded) return "cublas(not loaded yet)";
  if (blas.error != DN_OK) return "cublas(missing)";
  return blas.tf32 ? "cublas+tf32" : "cublas";
}

static dn_status load_blas(const char *op) {
  static const char *names[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12",
                                "libcublas.so.11", NULL};
  static const char *deps[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11",
                               NULL};
  void *h;
  /* DENOTRON_CUBLASLT_LIB, when set, is opened first so that cuBLAS finds its Lt. */
  const char *lt = getenv("DENOTRON_CUBLASLT_LIB");
  if (lt && *lt) {
    static const char *lt_names[] = {"libcublasLt.so", NULL};
    void *lth;
    DN_TRY(dn_dynload(op, "DENOTRON_CUBLASLT_LIB", lt_names, "cublas", NULL,
                      "Install cuBLAS (pip install nvidia-cublas-cu12, or the CUDA toolkit)",
                      &lth));
  }
  DN_TRY(dn_dynload(op, "DENOTRON_CUBLAS_LIB", names, "cublas", deps,
                    "Install cuBLAS (pip install nvidia-cublas-cu12, or the CUDA toolkit's "
                    "libcublas)",
                    &h));
  void *f;
  DN_TRY(dn_dynsym(op, h, "libcublas", "cublasCreate_v2", &f));
  cublasCreate_v2_fn create = (cublasCreate_v2_fn)f;
  DN_TRY(dn_dynsym(op, h, "libcublas", "cublasSetStream_v2", &f));
  cublasSetStream_v2_fn set_stream = (cublasSetStream_v2_fn)f;
  DN_TRY(dn_dynsym(op, h, "libcublas", "cublasGemmStridedBatchedEx", &f));
  blas.gemm = (cublasGemmStridedBatchedEx_fn)f;
  blas.status_string = (cublasGetStatusString_fn)dlsym(h, "cublasGetStatusString");
  cublasStatus_t s = create(&blas.handle);
  DN_CHECK(s == DN_CUBLAS_STATUS_SUCCESS, DN_ERR_RUNTIME,
           "%s: cublasCreate failed with status %d (is the GPU usable?)", op, s);
  s = set_stream(blas.handle, (void *)dn_stream());
  DN_CHECK(s == DN_CUBLAS_STATUS_SUCCESS, DN_ERR_RUNTIME, "%s: cublasSetStream failed (%d)", op,
           s);
  const char *tf = getenv("DENOTRON_CUDA_TF32");
  blas.tf32 = !(tf && strcmp(tf, "0") == 0);
  return DN_OK;
}

static dn_status ensure_blas(const char *op) {
  DN_TRY(dn_cuda_init(op));
  if (!blas.loaded) {
    std::lock_guard<std::mutex> g(blas_lock);
    if (!blas.loaded) {
      blas.error = load_blas(op);
      if (blas.error != DN_OK) snprintf(blas.message, sizeof blas.message, "%s", dn_last_error());
      blas.loaded = 1;
    }
  }
  if (blas.error != DN_OK) return DN_FAIL(blas.error, "%s", blas.message);
  return DN_OK;
}

static cudaDataType cuda_type(dn_dtype d) {
  return d == DN_BF16 ? CUDA_R_16BF : d == DN_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* C(M,N) rows ldc apart, batch stride sc: C = beta * C + bias (bias may be NULL; it
 * covers the first nb columns, the rest being padding; beta = 0 overwrites, so NaN in
 * fresh memory does not leak). Rows on grid y, batches on grid z, columns on x: no
 * per-element index division. */
template <typename G>
__global__ void prepare_c_k(G *C, int64_t ldc, int64_t sc, const G *bias, int64_t nb,
                            float beta, int64_t M, int64_t N, int64_t batch) {
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z)
    for (int64_t i = blockIdx.y; i < M; i += gridDim.y) {
      G *row = C + b * sc + i * ldc;
      for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < N;
           j += (int64_t)gridDim.x * blockDim.x) {
        float v = beta == 0.0f ? 0.0f : beta * ldf(row, j);
        if (bias && j < nb) v += ldf(bias, j);
        stf(row, j, v);
      }
    }
}

/* Blocks of 256 columns by rows; each block loops over many rows (one row per block
 * would mean 10^5-10^6 tiny blocks, slower than the copy itself). */
static dim3 prepare_grid(int64_t M, int64_t N, int64_t batch) {
  int64_t x = (N + 255) / 256, z = batch < 64 ? batch : 64;
  x = x < 64 ? x : 64;
  int64_t y = 4096 / (x * z);
  y = y < 1 ? 1 : y < M ? y : M;
  return dim3((unsigned)x, (unsigned)y, (unsigned)z);
}

/* A row-major matrix in device memory: rows x cols, rows ld apart, batches stride apart */
struct Operand {
  const void *ptr;
  int64_t ld, stride, rows, cols;
};

static int repack_enabled(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("DENOTRON_CUDA_GEMM_REPACK");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on;
}

static int misaligned(Operand o, size_t es, int64_t batch) {
  uint64_t bits = (uint64_t)(uintptr_t)o.ptr | (uint64_t)o.ld * es |
                  (batch > 1 ? (uint64_t)o.stride * es : 0);
  return (bits & 15) != 0;
}

/* A GEMM size that is not a multiple of 8 is padded to a multiple of 64 (50257 -> 50304) */
static int64_t padded(int64_t n) { return n % 8 == 0 ? n : (n + 63) / 64 * 64; }

/* dst(rows, cols) = src(rows, cols) for each batch; E carries the element's bytes */
template <typename E>
__global__ void copy2d_k(E *dst, int64_t dld, int64_t dstride, const E *src, int64_t sld,
                         int64_t sstride, int64_t rows, int64_t cols, int64_t batch) {
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z)
    for (int64_t i = blockIdx.y; i < rows; i += gridDim.y)
      for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < cols;
           j += (int64_t)gridDim.x * blockDim.x)
        dst[b * dstride + i * dld + j] = src[b * sstride + i * sld + j];
}

static dn_status copy2d(const char *op, Operand dst, Operand src, size_t es, int64_t batch) {
  dim3 grid = prepare_grid(src.rows, src.cols, batch);
  if (es == 2)
    copy2d_k<<<grid, 256, 0, dn_stream()>>>((uint16_t *)dst.ptr, dst.ld, dst.stride,
                                             (const uint16_t *)src.ptr, src.ld, src.stride,
                                             src.rows, src.cols, batch);
  else
    copy2d_k<<<grid, 256, 0, dn_stream()>>>((uint32_t *)dst.ptr, dst.ld, dst.stride,
                                             (const uint32_t *)src.ptr, src.ld, src.stride,
                                             src.rows, src.cols, batch);
  cudaError_t e = cudaGetLastError();
  DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: padded copy (%lld x %lld) failed: %s", op,
           (long long)src.rows, (long long)src.cols, cudaGetErrorString(e));
  return DN_OK;
}

/* Gives o (rows x cols) aligned scratch of rows x cols, the padding zero, holding o's
 * values when copy is set; a no-op when o is already aligned and of that shape. */
static dn_status repack(const char *op, Operand *o, int64_t rows, int64_t cols, size_t es,
                        int64_t batch, int copy) {
  if (!misaligned(*o, es, batch) && rows == o->rows && cols == o->cols) return DN_OK;
  int64_t per = 16 / (int64_t)es, ld = (cols + per - 1) / per * per, stride = rows * ld;
  int64_t bytes = batch * stride * (int64_t)es;
  void *p;
  DN_TRY(dn_scratch(op, bytes, &p));
  Operand src = *o;
  *o = {p, ld, stride, rows, cols};
  if (rows != src.rows || cols != src.cols) DN_CUDA(cudaMemsetAsync(p, 0, bytes, dn_stream()), op);
  return copy ? copy2d(op, *o, src, es, batch) : DN_OK;
}

static void release(Operand *o, const void *original) {
  if (o->ptr != original) dn_free((void *)o->ptr);
}

static dn_status gemm(const char *op, dn_dtype dtype, int32_t trans_a, int32_t trans_b,
                      int64_t M, int64_t N, int64_t K, float alpha, Operand pa, Operand pb,
                      float beta, Operand pc, const void *bias, int64_t nb, int64_t batch);

dn_status dn_matmul(dn_dtype dtype, int32_t trans_a, int32_t trans_b, int64_t M, int64_t N,
                    int64_t K, float alpha, const void *A, int64_t lda, int64_t stride_a,
                    const void *B, int64_t ldb, int64_t stride_b, float beta, void *C,
                    int64_t ldc, int64_t stride_c, const void *bias, int64_t batch) {
  const char *op = "dn_matmul";
  DN_CHECK_FLOAT(dtype, op);
  dn_dtype ab = dn_base_dtype(dtype), ct = dn_grad_dtype(dtype);
  DN_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, DN_ERR_INVALID,
           "dn_matmul: negative size (M=%lld N=%lld K=%lld batch=%lld)", (long long)M,
           (long long)N, (long long)K, (long long)batch);
  if (M == 0 || N == 0 || batch == 0) return DN_OK;
  DN_CHECK(A && B && C, DN_ERR_INVALID, "dn_matmul: NULL matrix pointer");
  DN_CHECK(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N, DN_ERR_INVALID,
           "dn_matmul: leading dimensions lda=%lld ldb=%lld ldc=%lld too small for "
           "M=%lld N=%lld K=%lld",
           (long long)lda, (long long)ldb, (long long)ldc, (long long)M, (long long)N,
           (long long)K);
  DN_CHECK(M < ((int64_t)1 << 31) && N < ((int64_t)1 << 31) && K < ((int64_t)1 << 31) &&
               lda < ((int64_t)1 << 31) && ldb < ((int64_t)1 << 31) &&
               ldc < ((int64_t)1 << 31) && batch < ((int64_t)1 << 31),
           DN_ERR_INVALID, "dn_matmul: a dimension exceeds 2^31");
  DN_CHECK(ab == ct || ct == DN_F32, DN_ERR_UNSUPPORTED,
           "dn_matmul: %s inputs with a %s output are not supported by cuBLAS here (use an f32 "
           "output or the inputs' dtype)",
           dn_dtype_name(ab), dn_dtype_name(ct));
  DN_TRY(dn_cuda_init(op));
  /* stored shapes: A (ra, ca), B (rb, cb), C (M, N) */
  int64_t ra = trans_a ? K : M, ca = trans_a ? M : K, rb = trans_b ? N : K,
          cb = trans_b ? K : N;
  Operand pa = {A, lda, stride_a, ra, ca}, pb = {B, ldb, stride_b, rb, cb},
          pc = {C, ldc, stride_c, M, N};
  if (!repack_enabled() || K == 0)
    return gemm(op, dtype, trans_a, trans_b, M, N, K, alpha, pa, pb, beta, pc, bias, N, batch);
  size_t ea = dn_dtype_size(ab), ec = dn_dtype_size(ct);
  int64_t Mp = padded(M), Np = padded(N), Kp = padded(K);
  dn_status st = repack(op, &pa, trans_a ? Kp : Mp, trans_a ? Mp : Kp, ea, batch, 1);
  if (st == DN_OK) st = repack(op, &pb, trans_b ? Np : Kp, trans_b ? Kp : Np, ea, batch, 1);
  /* the output's old values are read only when beta != 0 */
  if (st == DN_OK) st = repack(op, &pc, Mp, Np, ec, batch, beta != 0.0f);
  /* the bias covers the first N columns; the padded ones are discarded */
  if (st == DN_OK)
    st = gemm(op, dtype, trans_a, trans_b, Mp, Np, Kp, alpha, pa, pb, beta, pc, bias, N, batch);
  if (st == DN_OK && pc.ptr != C) {
    Operand back = pc;
    back.rows = M;
    back.cols = N;
    st = copy2d(op, {C, ldc, stride_c, M, N}, back, ec, batch);
  }
  release(&pa, A);
  release(&pb, B);
  release(&pc, C);
  return st;
}

/* The GEMM itself, on operands as they are (aligned or not); the bias has nb entries. */
static dn_status gemm(const char *op, dn_dtype dtype, int32_t trans_a, int32_t trans_b,
                      int64_t M, int64_t N, int64_t K, float alpha, Operand pa, Operand pb,
                      float beta, Operand pc, const void *bias, int64_t nb, int64_t batch) {
  dn_dtype ab = dn_base_dtype(dtype), ct = dn_grad_dtype(dtype);
  const void *A = pa.ptr, *B = pb.ptr;
  void *C = (void *)pc.ptr;
  int64_t lda = pa.ld, ldb = pb.ld, ldc = pc.ld, stride_a = pa.stride, stride_b = pb.stride,
          stride_c = pc.stride;
  if (bias || K == 0) {
    DN_DISPATCH(ct, G,
                prepare_c_k<G><<<prepare_grid(M, N, batch), 256, 0, dn_stream()>>>(
                    (G *)C, ldc, stride_c, (const G *)bias, nb, beta, M, N, batch););
    DN_LAUNCHED(op);
    beta = 1.0f;
    if (K == 0) return DN_OK;
  }
  DN_TRY(ensure_blas(op));
  int compute = ab == DN_F32 && blas.tf32 ? DN_CUBLAS_COMPUTE_32F_FAST_TF32
                                          : DN_CUBLAS_COMPUTE_32F;
  cublasStatus_t s = blas.gemm(
      blas.handle, trans_b ? DN_CUBLAS_OP_T : DN_CUBLAS_OP_N,
      trans_a ? DN_CUBLAS_OP_T : DN_CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, B,
      cuda_type(ab), (int)ldb, (long long)stride_b, A, cuda_type(ab), (int)lda,
      (long long)stride_a, &beta, C, cuda_type(ct), (int)ldc, (long long)stride_c, (int)batch,
      compute, DN_CUBLAS_GEMM_DEFAULT);
  DN_CHECK(s == DN_CUBLAS_STATUS_SUCCESS, DN_ERR_RUNTIME,
           "dn_matmul: cublasGemmStridedBatchedEx failed: %s (status %d; M=%lld N=%lld K=%lld "
           "%s)",
           blas.status_string ? blas.status_string(s) : "?", s, (long long)M, (long long)N,
           (long long)K, dn_dtype_name(ab));
  return DN_OK;
}

template <typename T> struct ColumnOf {
  const T *x;
  int64_t C;
  __device__ float operator()(int64_t i, int64_t c) const { return ldf(x, i * C + c); }
};

dn_status dn_bias_backward(dn_dtype dtype, void *dbias, const void *dout, int64_t M, int64_t N) {
  const char *op = "dn_bias_backward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(M >= 0 && N >= 0, DN_ERR_INVALID, "dn_bias_backward: negative size");
  if (M == 0 || N == 0) return DN_OK;
  DN_CHECK(dbias && dout, DN_ERR_INVALID, "dn_bias_backward: NULL pointer");
  DN_TRY(dn_cuda_init(op));
  DN_DISPATCH2(dtype, T, G,
               DN_TRY(dn_column_sums(op, (G *)dbias, M, N, ColumnOf<T>{(const T *)dout, N})););
  return DN_OK;
}
