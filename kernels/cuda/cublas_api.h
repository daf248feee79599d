/* The part of the cuBLAS API that matmul.cu calls, declared here from NVIDIA's
 * documented interface so that the library builds without cuBLAS installed: the
 * functions are resolved with dlsym at run time (dynload.cu). */
#ifndef DN_CUBLAS_API_H
#define DN_CUBLAS_API_H

#include <library_types.h> /* cudaDataType: CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF */
#include <stdint.h>

typedef struct cublasContext *cublasHandle_t;
typedef int cublasStatus_t; /* CUBLAS_STATUS_SUCCESS = 0 */
typedef int cublasOperation_t;
typedef int cublasComputeType_t;
typedef int cublasGemmAlgo_t;
typedef int cublasMath_t;

enum { DN_CUBLAS_STATUS_SUCCESS = 0 };
enum { DN_CUBLAS_OP_N = 0, DN_CUBLAS_OP_T = 1 };
enum {
  DN_CUBLAS_COMPUTE_32F = 68,
  DN_CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
};
enum { DN_CUBLAS_GEMM_DEFAULT = -1 };
enum { DN_CUBLAS_DEFAULT_MATH = 0, DN_CUBLAS_TF32_TENSOR_OP_MATH = 3 };

/* Function pointer types of the entry points we resolve (names as exported). */
typedef cublasStatus_t (*cublasCreate_v2_fn)(cublasHandle_t *handle);
typedef cublasStatus_t (*cublasSetStream_v2_fn)(cublasHandle_t handle, void *stream);
typedef cublasStatus_t (*cublasSetMathMode_fn)(cublasHandle_t handle, cublasMath_t mode);
typedef cublasStatus_t (*cublasSetWorkspace_v2_fn)(cublasHandle_t handle, void *workspace,
                                                   size_t bytes);
typedef const char *(*cublasGetStatusString_fn)(cublasStatus_t status);
typedef cublasStatus_t (*cublasGetVersion_v2_fn)(cublasHandle_t handle, int *version);
typedef cublasStatus_t (*cublasGemmStridedBatchedEx_fn)(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
    int k, const void *alpha, const void *A, cudaDataType Atype, int lda, long long strideA,
    const void *B, cudaDataType Btype, int ldb, long long strideB, const void *beta, void *C,
    cudaDataType Ctype, int ldc, long long strideC, int batchCount,
    cublasComputeType_t computeType, cublasGemmAlgo_t algo);

#endif
