/* Shared by the CPU kernels: error reporting, dtype checks, threads, the counter RNG. */
#ifndef DN_CPU_COMMON_H
#define DN_CPU_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "../include/denotron.h"
#include "convert.h"

#include "../shared/checks.h"

const char *dn_dtype_name(dn_dtype dtype);

/* Only fp32 (the optimizer state, lse, mean/rstd buffers). */
#define DN_CHECK_F32(dtype, op)                                                                \
  DN_CHECK((dtype) == DN_F32, DN_ERR_UNSUPPORTED,                                              \
           "%s: dtype %s is not supported here (only f32)", (op), dn_dtype_name(dtype))

static inline int dn_is_float(dn_dtype d) { return d == DN_F32 || d == DN_BF16 || d == DN_F16; }

/* A float dtype argument, possibly carrying a parameter-gradient dtype in its high
 * byte (DN_DTYPE_WITH_GRAD): both halves must be f32, bf16 or f16. */
#define DN_CHECK_FLOAT(code, op)                                                               \
  DN_CHECK(((code) & ~0xffff) == 0 && dn_is_float(dn_base_dtype(code)) &&                      \
               dn_is_float(dn_grad_dtype(code)),                                               \
           DN_ERR_UNSUPPORTED, "%s: dtype %s (code %d) is not a float dtype (f32, bf16, f16)",  \
           (op), dn_dtype_name(dn_base_dtype(code)), (int)(code))

/* Threads used by every parallel region (set by dn_set_num_threads). */
extern int dn_threads;

#ifdef _OPENMP
#include <omp.h>
#endif
/* This thread's index inside a parallel region (0 outside one): picks its scratch row. */
static inline int dn_thread_index(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/* Reductions are split into this many fixed chunks, whatever the thread count, so a
 * sum comes out bit-identical with 1 or 16 threads. */
#define DN_REDUCE_CHUNKS 64

/* Counter-based RNG: a stateless 64-bit mix of (seed, counter). */
static inline uint64_t dn_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline uint64_t dn_rand64(uint64_t seed, uint64_t counter) {
  return dn_mix64(dn_mix64(seed + 0x9E3779B97F4A7C15ull) + counter * 0x9E3779B97F4A7C15ull);
}
/* A float uniform in [0, 1) from the top 24 bits. */
static inline float dn_uniform(uint64_t seed, uint64_t counter) {
  return (float)(dn_rand64(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

/* exp(x) in fp32 (within 2 ulp), written so that `omp simd` loops vectorise it: libm's
 * expf is a scalar call unless the whole file is built with -ffast-math, which we
 * avoid because it breaks inf/NaN semantics. The library is built with
 * -fno-trapping-math (no kernel reads the FP exception flags), without which GCC does
 * not if-convert the float comparisons below and no loop calling this vectorises.
 * Range reduction x = n·ln2 + r with a two-part ln2, a degree-6 polynomial for e^r,
 * then scaling by 2^n through the exponent bits. NaN stays NaN; below -87.3 the result
 * is 0, above 88.7 it is inf. */
static inline float dn_expf(float x) {
  float xc = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  /* n = round-to-nearest-even(xc·log2 e) by the 1.5·2^23 shift: |xc·log2 e| < 2^22, and
   * unlike __builtin_roundevenf it vectorises with GCC 12 */
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  union {
    int32_t i;
    float f;
  } scale = {.i = ((int32_t)n + 127) << 23};
  float y = p * scale.f;
  y = x < -87.3f ? 0.0f : y;
  y = x > 88.7f ? __builtin_inff() : y;
  return x != x ? x : y;
}

#endif
