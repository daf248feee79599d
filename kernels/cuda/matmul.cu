/* defines: dn_matmul, dn_linear_act_forward, dn_bias_backward
 * GEMM through cuBLAS, opened at run time (DENOTRON_CUBLAS_LIB overrides the path):
 * fp32 uses TF32 tensor cores (set DENOTRON_CUDA_TF32=0 for full fp32), bf16 and fp16
 * accumulate in fp32. cuBLAS is column-major, so the row-major C = op(A) op(B) is
 * computed as C^T = op(B)^T op(A)^T, which needs no transposition of any buffer.
 * cuBLAS is fast only on 16-byte aligned rows and sizes that are multiples of 8; GPT-2's
 * vocabulary of 50257 breaks both in every output-layer GEMM (5-10x slower on an H200).
 * Such a GEMM runs on copies in scratch instead: sizes padded to a multiple of 64 with
 * zeros (zero K terms add nothing; padded rows and columns of C are dropped), rows
 * aligned, the output copied back: a few memory passes instead of a slow GEMM.
 * DENOTRON_CUDA_GEMM_REPACK=0 turns this off.
 * DENOTRON_CUDA_GEMM=lt runs the GEMMs through cuBLASLt instead (not yet the default: it
 * has not run on a GPU): the bias is added by the GEMM's epilogue rather than by a pass
 * over C before it, dn_linear_act_forward applies bias and the tanh GELU in the epilogue as
 * well, and each shape's algorithm comes from the heuristic once, with a 32 MiB
 * workspace. Any configuration cuBLASLt declines falls back to the path above. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <string>
#include <unordered_map>

#include "common.cuh"
#include "cublas_api.h"
#include "cublaslt_api.h"
#include "dynload.h"

static struct {
  cublasHandle_t handle;
  cublasGemmStridedBatchedEx_fn gemm;
  cublasGetStatusString_fn status_string;
  dn_status error; /* the load's outcome, replayed on every later call */
  char message[1024];
  int loaded;
} blas;
static std::mutex blas_lock;

/* DENOTRON_CUDA_TF32=0 keeps fp32 GEMMs in full fp32 */
static int tf32_enabled(void) {
  static const int on = !dn_env_is("DENOTRON_CUDA_TF32", "0");
  return on;
}

static int lt_wanted(void);

const char *dn_gemm_backend(void) {
  if (lt_wanted()) return tf32_enabled() ? "cublaslt+tf32" : "cublaslt";
  if (!blas.loaded) return "cublas(not loaded yet)";
  if (blas.error != DN_OK) return "cublas(missing)";
  return tf32_enabled() ? "cublas+tf32" : "cublas";
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

/* ---- cuBLASLt ---- */

/* One GEMM configuration: descriptors built once, the heuristic's algorithm. */
struct LtPlan {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
  int usable; /* 0: cuBLASLt declined this configuration; use the cuBLAS path */
};

static struct {
  cublasLtHandle_t handle;
  cublasLtMatmulDescCreate_fn desc_create;
  cublasLtMatmulDescSetAttribute_fn desc_set;
  cublasLtMatrixLayoutCreate_fn layout_create;
  cublasLtMatrixLayoutSetAttribute_fn layout_set;
  cublasLtMatmulPreferenceCreate_fn pref_create;
  cublasLtMatmulPreferenceSetAttribute_fn pref_set;
  cublasLtMatmulAlgoGetHeuristic_fn heuristic;
  cublasLtMatmul_fn matmul;
  cublasLtMatmulPreference_t pref;
  void *workspace;
  size_t workspace_bytes;
  int state; /* 0 not tried, 1 loaded, -1 unavailable (the cuBLAS path is used) */
  std::unordered_map<std::string, LtPlan> plans;
} lt;
static std::mutex lt_lock;

/* DENOTRON_CUDA_GEMM=lt */
static int lt_wanted(void) {
  static const int on = dn_env_is("DENOTRON_CUDA_GEMM", "lt");
  return on;
}

#define LT_SYM(name, field)                                                                    \
  DN_TRY(dn_dynsym(op, h, "libcublasLt", #name, &f));                                          \
  lt.field = (name##_fn)f;

static dn_status load_lt(const char *op) {
  static const char *names[] = {"libcublasLt.so", "libcublasLt.so.13", "libcublasLt.so.12",
                                "libcublasLt.so.11", NULL};
  void *h, *f;
  DN_TRY(dn_dynload(op, "DENOTRON_CUBLASLT_LIB", names, "cublas", NULL,
                    "Install cuBLAS (pip install nvidia-cublas-cu12, or the CUDA toolkit)", &h));
  DN_TRY(dn_dynsym(op, h, "libcublasLt", "cublasLtCreate", &f));
  cublasLtCreate_fn create = (cublasLtCreate_fn)f;
  LT_SYM(cublasLtMatmulDescCreate, desc_create);
  LT_SYM(cublasLtMatmulDescSetAttribute, desc_set);
  LT_SYM(cublasLtMatrixLayoutCreate, layout_create);
  LT_SYM(cublasLtMatrixLayoutSetAttribute, layout_set);
  LT_SYM(cublasLtMatmulPreferenceCreate, pref_create);
  LT_SYM(cublasLtMatmulPreferenceSetAttribute, pref_set);
  LT_SYM(cublasLtMatmulAlgoGetHeuristic, heuristic);
  LT_SYM(cublasLtMatmul, matmul);
  DN_CHECK(create(&lt.handle) == DN_CUBLAS_STATUS_SUCCESS, DN_ERR_RUNTIME,
           "%s: cublasLtCreate failed", op);
  lt.workspace_bytes = (size_t)32 << 20;
  DN_CUDA(cudaMalloc(&lt.workspace, lt.workspace_bytes), op);
  uint64_t ws = lt.workspace_bytes;
  DN_CHECK(lt.pref_create(&lt.pref) == DN_CUBLAS_STATUS_SUCCESS &&
               lt.pref_set(lt.pref, DN_LT_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) ==
                   DN_CUBLAS_STATUS_SUCCESS,
           DN_ERR_RUNTIME, "%s: cuBLASLt preference setup failed", op);
  return DN_OK;
}

/* 1 when cuBLASLt is wanted and loaded; a failed load is reported once on stderr and the
 * cuBLAS path is used from then on. */
static int lt_ready(const char *op) {
  if (!lt_wanted()) return 0;
  if (lt.state == 0) {
    std::lock_guard<std::mutex> g(lt_lock);
    if (lt.state == 0) {
      if (load_lt(op) == DN_OK) {
        lt.state = 1;
      } else {
        fprintf(stderr, "denotron: DENOTRON_CUDA_GEMM=lt, but %s; using cuBLAS\n",
                dn_last_error());
        lt.state = -1;
      }
    }
  }
  return lt.state == 1;
}

static dn_status lt_layout(const char *op, cublasLtMatrixLayout_t *l, cudaDataType type,
                           int64_t rows, int64_t cols, int64_t ld, int64_t stride,
                           int64_t batch) {
  DN_CHECK(lt.layout_create(l, type, (uint64_t)rows, (uint64_t)cols, ld) ==
               DN_CUBLAS_STATUS_SUCCESS,
           DN_ERR_RUNTIME, "%s: cublasLtMatrixLayoutCreate failed", op);
  if (batch > 1) {
    int32_t n = (int32_t)batch;
    DN_CHECK(lt.layout_set(*l, DN_LT_LAYOUT_BATCH_COUNT, &n, sizeof n) ==
                     DN_CUBLAS_STATUS_SUCCESS &&
                 lt.layout_set(*l, DN_LT_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride) ==
                     DN_CUBLAS_STATUS_SUCCESS,
             DN_ERR_RUNTIME, "%s: cuBLASLt batch layout failed", op);
  }
  return DN_OK;
}

static cudaDataType cuda_type(dn_dtype d);

/* The row-major C(M,N) = alpha op(A) op(B) + beta C [+ epilogue] as cuBLASLt's column-major
 * C^T = op(B)^T op(A)^T, like the cuBLAS path. `aux` is the GELU input for the GELU
 * epilogue (M x N, ldc apart). Returns 1 when cuBLASLt ran it (*st its status), 0 when it
 * declined the configuration and nothing was launched. */
static int lt_gemm(const char *op, dn_dtype ab, dn_dtype ct, int compute, int32_t trans_a,
                   int32_t trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                   int64_t lda, int64_t stride_a, const void *B, int64_t ldb, int64_t stride_b,
                   float beta, void *C, int64_t ldc, int64_t stride_c, const void *bias,
                   void *aux, uint32_t epilogue, int64_t batch, dn_status *st) {
  *st = DN_OK;
  if (!lt_ready(op)) return 0;
  /* pointer alignments steer the heuristic, so they are part of the key */
  unsigned align = (unsigned)(((uintptr_t)A & 15) | (((uintptr_t)B & 15) << 4) |
                              (((uintptr_t)C & 15) << 8) | (((uintptr_t)bias & 15) << 12) |
                              (((uintptr_t)aux & 15) << 16));
  char key[256];
  snprintf(key, sizeof key,
           "%d %d %d %d %d %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %u %u %d", ab, ct,
           compute, trans_a, trans_b, (long long)M, (long long)N, (long long)K,
           (long long)lda, (long long)ldb, (long long)ldc, (long long)stride_a,
           (long long)stride_b, (long long)stride_c, (long long)batch, epilogue, align,
           beta != 0.0f);
  std::lock_guard<std::mutex> g(lt_lock);
  auto it = lt.plans.find(key);
  if (it == lt.plans.end()) {
    LtPlan p = {};
    cublasStatus_t s = lt.desc_create(&p.desc, (cublasComputeType_t)compute, CUDA_R_32F);
    int32_t opa = trans_b ? DN_CUBLAS_OP_T : DN_CUBLAS_OP_N,
            opb = trans_a ? DN_CUBLAS_OP_T : DN_CUBLAS_OP_N;
    if (s == DN_CUBLAS_STATUS_SUCCESS)
      s = lt.desc_set(p.desc, DN_LT_DESC_TRANSA, &opa, sizeof opa);
    if (s == DN_CUBLAS_STATUS_SUCCESS)
      s = lt.desc_set(p.desc, DN_LT_DESC_TRANSB, &opb, sizeof opb);
    if (s == DN_CUBLAS_STATUS_SUCCESS)
      s = lt.desc_set(p.desc, DN_LT_DESC_EPILOGUE, &epilogue, sizeof epilogue);
    if (s == DN_CUBLAS_STATUS_SUCCESS && bias)
      s = lt.desc_set(p.desc, DN_LT_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (s == DN_CUBLAS_STATUS_SUCCESS && aux) {
      int64_t aux_ld = ldc;
      s = lt.desc_set(p.desc, DN_LT_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux);
      if (s == DN_CUBLAS_STATUS_SUCCESS)
        s = lt.desc_set(p.desc, DN_LT_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld);
    }
    if (s != DN_CUBLAS_STATUS_SUCCESS) {
      *st = DN_FAIL(DN_ERR_RUNTIME, "%s: cuBLASLt descriptor setup failed (status %d)", op, s);
      return 1;
    }
    /* Lt's A is our B, Lt's B our A (column-major view of row-major data) */
    *st = lt_layout(op, &p.a, cuda_type(ab), trans_b ? K : N, trans_b ? N : K, ldb, stride_b,
                    batch);
    if (*st == DN_OK)
      *st = lt_layout(op, &p.b, cuda_type(ab), trans_a ? M : K, trans_a ? K : M, lda, stride_a,
                      batch);
    if (*st == DN_OK) *st = lt_layout(op, &p.c, cuda_type(ct), N, M, ldc, stride_c, batch);
    if (*st != DN_OK) return 1;
    cublasLtMatmulHeuristicResult_t r;
    int found = 0;
    s = lt.heuristic(lt.handle, p.desc, p.a, p.b, p.c, p.c, lt.pref, 1, &r, &found);
    p.usable = s == DN_CUBLAS_STATUS_SUCCESS && found > 0;
    if (p.usable) p.algo = r.algo;
    it = lt.plans.emplace(key, p).first;
  }
  LtPlan &p = it->second;
  if (!p.usable) return 0;
  /* the pointers may differ from the call that built the plan (same alignment) */
  if (bias) lt.desc_set(p.desc, DN_LT_DESC_BIAS_POINTER, &bias, sizeof bias);
  if (aux) lt.desc_set(p.desc, DN_LT_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux);
  cublasStatus_t s = lt.matmul(lt.handle, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c,
                               &p.algo, lt.workspace, lt.workspace_bytes, dn_stream());
  if (s != DN_CUBLAS_STATUS_SUCCESS)
    *st = DN_FAIL(DN_ERR_RUNTIME,
                  "%s: cublasLtMatmul failed (status %d; M=%lld N=%lld K=%lld %s, epilogue %u)",
                  op, s, (long long)M, (long long)N, (long long)K, dn_dtype_name(ab), epilogue);
  return 1;
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
  static const int on = !dn_env_is("DENOTRON_CUDA_GEMM_REPACK", "0");
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
  DN_CHECK_EXTENT(op, trans_a ? K : M, lda);
  DN_CHECK_EXTENT(op, trans_b ? N : K, ldb);
  DN_CHECK_EXTENT(op, M, ldc);
  DN_CHECK_EXTENT(op, batch, stride_a);
  DN_CHECK_EXTENT(op, batch, stride_b);
  DN_CHECK_EXTENT(op, batch, stride_c);
  DN_CHECK(M < ((int64_t)1 << 31) && N < ((int64_t)1 << 31) && K < ((int64_t)1 << 31) &&
               lda < ((int64_t)1 << 31) && ldb < ((int64_t)1 << 31) &&
               ldc < ((int64_t)1 << 31) && batch < ((int64_t)1 << 31),
           DN_ERR_INVALID, "dn_matmul: a dimension exceeds 2^31");
  DN_CHECK(ab == ct || ct == DN_F32, DN_ERR_UNSUPPORTED,
           "dn_matmul: %s inputs with a %s output are not supported by cuBLAS here (use an f32 "
           "output or the inputs' dtype)",
           dn_dtype_name(ab), dn_dtype_name(ct));
  DN_TRY(dn_cuda_init(op));
  size_t ea = dn_dtype_size(ab), ec = dn_dtype_size(ct);
  /* A C shared by every batch (stride_c 0, e.g. the gradient of a shared operand): the
   * batches update it one after another, as the CPU backend does; one batched GEMM would
   * have them race on it. */
  if (stride_c == 0 && batch > 1) {
    for (int64_t q = 0; q < batch; q++)
      DN_TRY(dn_matmul(dtype, trans_a, trans_b, M, N, K, alpha,
                       (const char *)A + q * stride_a * (int64_t)ea, lda, 0,
                       (const char *)B + q * stride_b * (int64_t)ea, ldb, 0, beta, C, ldc, 0,
                       bias, 1));
    return DN_OK;
  }
  /* stored shapes: A (ra, ca), B (rb, cb), C (M, N) */
  int64_t ra = trans_a ? K : M, ca = trans_a ? M : K, rb = trans_b ? N : K,
          cb = trans_b ? K : N;
  Operand pa = {A, lda, stride_a, ra, ca}, pb = {B, ldb, stride_b, rb, cb},
          pc = {C, ldc, stride_c, M, N};
  if (!repack_enabled() || K == 0)
    return gemm(op, dtype, trans_a, trans_b, M, N, K, alpha, pa, pb, beta, pc, bias, N, batch);
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
  int fast32 = ab == DN_F32 && tf32_enabled();
  int compute = fast32 ? DN_CUBLAS_COMPUTE_32F_FAST_TF32 : DN_CUBLAS_COMPUTE_32F;
  /* cuBLASLt adds a bias that covers every column in its epilogue; batched biases are not
   * its model (one bias per batch), so those keep the pass over C */
  dn_status st;
  if (K > 0 && (!bias || (nb == N && batch == 1)) &&
      lt_gemm(op, ab, ct, compute, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb,
              stride_b, beta, C, ldc, stride_c, bias, NULL,
              bias ? DN_LT_EPILOGUE_BIAS : DN_LT_EPILOGUE_DEFAULT, batch, &st))
    return st;
  if (bias || K == 0) {
    DN_DISPATCH(ct, G,
                prepare_c_k<G><<<prepare_grid(M, N, batch), 256, 0, dn_stream()>>>(
                    (G *)C, ldc, stride_c, (const G *)bias, nb, beta, M, N, batch););
    DN_LAUNCHED(op);
    beta = 1.0f;
    if (K == 0) return DN_OK;
  }
  DN_TRY(ensure_blas(op));
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

dn_status dn_linear_act_forward(dn_dtype dtype, int32_t act, void *out, void *pre,
                                const void *inp, const void *weight, const void *bias, int64_t M,
                                int64_t N, int64_t K) {
  const char *op = "dn_linear_act_forward";
  DN_CHECK_FLOAT(dtype, op);
  DN_CHECK(act == DN_ACT_GELU_TANH || act == DN_ACT_GELU_ERF || act == DN_ACT_TANH,
           DN_ERR_INVALID, "%s: unknown activation %d", op, (int)act);
  DN_CHECK(M > 0 && N > 0 && K > 0, DN_ERR_INVALID,
           "%s: sizes must be positive (M=%lld N=%lld K=%lld)", op, (long long)M, (long long)N,
           (long long)K);
  DN_CHECK_EXTENT(op, M, K);
  DN_CHECK_EXTENT(op, N, K);
  DN_CHECK_EXTENT(op, M, N);
  DN_CHECK(out && pre && inp && weight, DN_ERR_INVALID, "%s: NULL pointer", op);
  DN_CHECK(out != pre, DN_ERR_INVALID, "%s: out and pre must be different buffers", op);
  DN_CHECK(M < ((int64_t)1 << 31) && N < ((int64_t)1 << 31) && K < ((int64_t)1 << 31),
           DN_ERR_INVALID, "%s: a dimension exceeds 2^31", op);
  DN_TRY(dn_cuda_init(op));
  dtype = dn_base_dtype(dtype);
  /* One GEMM writing gelu(x W^T + b) to out and its argument to pre (the aux output must
   * have a leading dimension that is a multiple of 8), where cuBLASLt takes it: its GELU
   * epilogue is the tanh approximation, so the other activations take the GEMM and a pass. */
  if (act == DN_ACT_GELU_TANH && N % 8 == 0) {
    int compute = dtype == DN_F32 && tf32_enabled() ? DN_CUBLAS_COMPUTE_32F_FAST_TF32
                                                    : DN_CUBLAS_COMPUTE_32F;
    dn_status st;
    if (lt_gemm(op, dtype, dtype, compute, 0, 1, M, N, K, 1.0f, inp, K, 0, weight, K, 0, 0.0f,
                out, N, 0, bias, pre,
                bias ? DN_LT_EPILOGUE_GELU_AUX_BIAS : DN_LT_EPILOGUE_GELU_AUX, 1, &st))
      return st;
  }
  DN_TRY(dn_matmul(dtype, 0, 1, M, N, K, 1.0f, inp, K, 0, weight, K, 0, 0.0f, pre, N, 0, bias,
                   1));
  return dn_bias_act_forward(dtype, act, out, pre, NULL, M, N);
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
  DN_CHECK_EXTENT("dn_bias_backward", M, N);
  if (M == 0 || N == 0) return DN_OK;
  DN_CHECK(dbias && dout, DN_ERR_INVALID, "dn_bias_backward: NULL pointer");
  DN_TRY(dn_cuda_init(op));
  DN_DISPATCH2(dtype, T, G,
               DN_TRY(dn_column_sums(op, (G *)dbias, M, N, ColumnOf<T>{(const T *)dout, N})););
  return DN_OK;
}
