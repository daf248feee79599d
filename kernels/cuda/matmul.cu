/* defines: dn_matmul, dn_bias_backward
 * GEMM through cuBLAS, opened at run time (DENOTRON_CUBLAS_LIB overrides the path):
 * fp32 uses TF32 tensor cores (set DENOTRON_CUDA_TF32=0 for full fp32), bf16 and fp16
 * accumulate in fp32. cuBLAS is column-major, so the row-major C = op(A) op(B) is
 * computed as C^T = op(B)^T op(A)^T, which needs no transposition of any buffer.
 * cuBLAS runs its tensor-core kernels only on 16-byte aligned rows, so an operand whose
 * pointer, leading dimension or batch stride is not (GPT-2's vocabulary of 50257 makes
 * every logits row odd) is copied into a padded scratch first, and a padded output back
 * afterwards: two memory passes instead of a GEMM on the slow path.
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

/* C(M,N) rows ldc apart, batch stride sc: C = beta * C + bias(N) (bias may be NULL;
 * beta = 0 overwrites, so NaN in fresh memory does not leak) */
template <typename G>
__global__ void prepare_c_k(G *C, int64_t ldc, int64_t sc, const G *bias, float beta,
                            int64_t M, int64_t N, int64_t batch) {
  DN_GRID_LOOP(k, batch * M * N) {
    int64_t b = k / (M * N), r = k % (M * N), i = r / N, j = r % N;
    int64_t at = b * sc + i * ldc + j;
    float v = beta == 0.0f ? 0.0f : beta * ldf(C, at);
    if (bias) v += ldf(bias, j);
    stf(C, at, v);
  }
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

/* Copies every batch of src (rows x cols) to dst (rows dld apart, batches dstride apart). */
static dn_status copy_rows(const char *op, void *dst, int64_t dld, int64_t dstride, Operand src,
                           size_t es, int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    cudaError_t e = cudaMemcpy2DAsync((char *)dst + b * dstride * es, dld * es,
                                      (const char *)src.ptr + b * src.stride * es, src.ld * es,
                                      src.cols * es, src.rows, cudaMemcpyDeviceToDevice,
                                      dn_stream());
    DN_CHECK(e == cudaSuccess, DN_ERR_RUNTIME, "%s: padded copy (%lld x %lld) failed: %s", op,
             (long long)src.rows, (long long)src.cols, cudaGetErrorString(e));
  }
  return DN_OK;
}

/* Points o at fresh scratch with 16-byte aligned rows (contents undefined). */
static dn_status repack_alloc(const char *op, Operand *o, size_t es, int64_t batch) {
  int64_t per = 16 / (int64_t)es, ld = (o->cols + per - 1) / per * per;
  int64_t stride = o->rows * ld;
  void *p;
  DN_TRY(dn_scratch(op, batch * stride * (int64_t)es, &p));
  *o = {p, ld, stride, o->rows, o->cols};
  return DN_OK;
}

/* A misaligned o is copied into aligned scratch, which o then points at. */
static dn_status repack_in(const char *op, Operand *o, size_t es, int64_t batch) {
  if (!misaligned(*o, es, batch)) return DN_OK;
  Operand src = *o;
  DN_TRY(repack_alloc(op, o, es, batch));
  return copy_rows(op, (void *)o->ptr, o->ld, o->stride, src, es, batch);
}

static void release(Operand *o, const void *original) {
  if (o->ptr != original) dn_free((void *)o->ptr);
}

static dn_status gemm(const char *op, dn_dtype dtype, int32_t trans_a, int32_t trans_b,
                      int64_t M, int64_t N, int64_t K, float alpha, Operand pa, Operand pb,
                      float beta, Operand pc, const void *bias, int64_t batch);

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
  size_t ea = dn_dtype_size(ab), ec = dn_dtype_size(ct);
  if (repack_enabled()) {
    dn_status st = repack_in(op, &pa, ea, batch);
    if (st == DN_OK) st = repack_in(op, &pb, ea, batch);
    /* the output is read too when beta != 0 */
    if (st == DN_OK && misaligned(pc, ec, batch))
      st = beta != 0.0f ? repack_in(op, &pc, ec, batch) : repack_alloc(op, &pc, ec, batch);
    if (st == DN_OK)
      st = gemm(op, dtype, trans_a, trans_b, M, N, K, alpha, pa, pb, beta, pc, bias, batch);
    if (st == DN_OK && pc.ptr != C) st = copy_rows(op, C, ldc, stride_c, pc, ec, batch);
    release(&pa, A);
    release(&pb, B);
    release(&pc, C);
    return st;
  }
  return gemm(op, dtype, trans_a, trans_b, M, N, K, alpha, pa, pb, beta, pc, bias, batch);
}

/* The GEMM itself, on operands as they are (aligned or not). */
static dn_status gemm(const char *op, dn_dtype dtype, int32_t trans_a, int32_t trans_b,
                      int64_t M, int64_t N, int64_t K, float alpha, Operand pa, Operand pb,
                      float beta, Operand pc, const void *bias, int64_t batch) {
  dn_dtype ab = dn_base_dtype(dtype), ct = dn_grad_dtype(dtype);
  const void *A = pa.ptr, *B = pb.ptr;
  void *C = (void *)pc.ptr;
  int64_t lda = pa.ld, ldb = pb.ld, ldc = pc.ld, stride_a = pa.stride, stride_b = pb.stride,
          stride_c = pc.stride;
  if (bias || K == 0) {
    DN_DISPATCH(ct, G,
                prepare_c_k<G><<<dn_blocks(batch * M * N, 256), 256, 0, dn_stream()>>>(
                    (G *)C, ldc, stride_c, (const G *)bias, beta, M, N, batch););
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
