/* The part of the cuBLASLt API that matmul.cu calls, declared from NVIDIA's documented
 * interface (the cuBLAS library guide, "cuBLASLt API") so that the library builds without
 * cuBLAS installed; the entry points are resolved with dlsym at run time. Enum values are
 * the documented ones; the descriptors are opaque pointers. */
#ifndef DN_CUBLASLT_API_H
#define DN_CUBLASLT_API_H

#include <cuda_runtime.h>
#include <library_types.h>
#include <stddef.h>
#include <stdint.h>

#include "cublas_api.h"

typedef struct cublasLtContext *cublasLtHandle_t;
typedef struct dn_lt_desc_opaque *cublasLtMatmulDesc_t;
typedef struct dn_lt_layout_opaque *cublasLtMatrixLayout_t;
typedef struct dn_lt_pref_opaque *cublasLtMatmulPreference_t;

/* an algorithm as the heuristic returns it: 64 opaque bytes */
typedef struct {
  uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;

/* cublasLtMatmulDescAttributes_t */
enum {
  DN_LT_DESC_TRANSA = 3,             /* int32_t cublasOperation_t */
  DN_LT_DESC_TRANSB = 4,             /* int32_t */
  DN_LT_DESC_EPILOGUE = 7,           /* uint32_t cublasLtEpilogue_t */
  DN_LT_DESC_BIAS_POINTER = 8,       /* const void * (bias elements have D's type) */
  DN_LT_DESC_EPILOGUE_AUX_POINTER = 11, /* void * (the GELU input, D's type) */
  DN_LT_DESC_EPILOGUE_AUX_LD = 12,      /* int64_t, a multiple of 8, >= D's rows */
};
/* cublasLtEpilogue_t */
enum {
  DN_LT_EPILOGUE_DEFAULT = 1,
  DN_LT_EPILOGUE_BIAS = 4,
  DN_LT_EPILOGUE_GELU_AUX = 160,      /* D = gelu(AB), aux = AB */
  DN_LT_EPILOGUE_GELU_AUX_BIAS = 164, /* D = gelu(AB + bias), aux = AB + bias */
};
/* cublasLtMatrixLayoutAttribute_t */
enum {
  DN_LT_LAYOUT_BATCH_COUNT = 5,           /* int32_t */
  DN_LT_LAYOUT_STRIDED_BATCH_OFFSET = 6, /* int64_t, elements */
};
/* cublasLtMatmulPreferenceAttributes_t */
enum { DN_LT_PREF_MAX_WORKSPACE_BYTES = 1 /* uint64_t */ };

typedef cublasStatus_t (*cublasLtCreate_fn)(cublasLtHandle_t *handle);
typedef cublasStatus_t (*cublasLtMatmulDescCreate_fn)(cublasLtMatmulDesc_t *desc,
                                                      cublasComputeType_t compute,
                                                      cudaDataType scale);
typedef cublasStatus_t (*cublasLtMatmulDescDestroy_fn)(cublasLtMatmulDesc_t desc);
typedef cublasStatus_t (*cublasLtMatmulDescSetAttribute_fn)(cublasLtMatmulDesc_t desc, int attr,
                                                            const void *buf, size_t bytes);
typedef cublasStatus_t (*cublasLtMatrixLayoutCreate_fn)(cublasLtMatrixLayout_t *layout,
                                                        cudaDataType type, uint64_t rows,
                                                        uint64_t cols, int64_t ld);
typedef cublasStatus_t (*cublasLtMatrixLayoutDestroy_fn)(cublasLtMatrixLayout_t layout);
typedef cublasStatus_t (*cublasLtMatrixLayoutSetAttribute_fn)(cublasLtMatrixLayout_t layout,
                                                              int attr, const void *buf,
                                                              size_t bytes);
typedef cublasStatus_t (*cublasLtMatmulPreferenceCreate_fn)(cublasLtMatmulPreference_t *pref);
typedef cublasStatus_t (*cublasLtMatmulPreferenceDestroy_fn)(cublasLtMatmulPreference_t pref);
typedef cublasStatus_t (*cublasLtMatmulPreferenceSetAttribute_fn)(
    cublasLtMatmulPreference_t pref, int attr, const void *buf, size_t bytes);
typedef cublasStatus_t (*cublasLtMatmulAlgoGetHeuristic_fn)(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
    cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t *results,
    int *returned);
typedef cublasStatus_t (*cublasLtMatmul_fn)(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
    cublasLtMatrixLayout_t a, const void *B, cublasLtMatrixLayout_t b, const void *beta,
    const void *C, cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
    const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
    cudaStream_t stream);

#endif
