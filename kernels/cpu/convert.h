/* 16-bit float conversions for the CPU kernels: bf16 and fp16 are storage formats
 * only; every kernel loads them into fp32, computes in fp32, and rounds on the store
 * (round to nearest, ties to even). inf stays inf, NaN stays NaN (sign and top payload
 * bits kept; quieted, except bf16 -> fp32 which is an exact bit copy), subnormals are
 * exact in both directions.
 *
 * The scalar functions are branch-free enough to vectorise; the row helpers convert
 * whole rows (8 at a time through F16C when the compiler targets it). */
#ifndef DN_CPU_CONVERT_H
#define DN_CPU_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "../include/denotron.h"

#ifdef __F16C__
#include <immintrin.h>
#endif

static inline uint32_t dn_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float dn_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* bf16 is the top half of an fp32: widening is a shift. */
static inline float dn_bf16_to_f32(uint16_t h) { return dn_bits_f32((uint32_t)h << 16); }

/* Rounds to nearest even by adding 0x7fff plus the lowest kept bit; a carry out of the
 * mantissa bumps the exponent, so the largest finite values round up to inf as they
 * should. NaN is handled first, because the carry could turn it into inf. */
static inline uint16_t dn_f32_to_bf16(float f) {
  uint32_t u = dn_f32_bits(f);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint32_t nan = (u >> 16) | 0x0040u;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* Portable fp16 conversions (used when F16C is absent; the tests check both agree). */
static inline float dn_f16_to_f32_soft(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return dn_bits_f32(sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0));
  if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in fp32 */
    float v = (float)mant * 5.9604644775390625e-8f;
    return dn_bits_f32(dn_f32_bits(v) | sign);
  }
  return dn_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline uint16_t dn_f32_to_f16_soft(float f) {
  uint32_t u = dn_f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((u >> 13) & 0x3ffu)); /* NaN */
  if (u >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
  if (u < 0x38800000u) {
    /* Below fp16's smallest normal 2^-14: adding 0.5 leaves an ulp of 2^-24, so the
     * fp32 add itself rounds |f| to the fp16 subnormal grid, ties to even. A result
     * of 0x400 is the smallest normal, encoded correctly by the same subtraction. */
    float t = dn_bits_f32(u) + 0.5f;
    return (uint16_t)(sign | (dn_f32_bits(t) - 0x3f000000u));
  }
  /* Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits. */
  uint32_t odd = (u >> 13) & 1u;
  u += 0xc8000fffu + odd;
  return (uint16_t)(sign | (u >> 13));
}

static inline float dn_f16_to_f32(uint16_t h) {
#ifdef __F16C__
  return _cvtsh_ss(h);
#else
  return dn_f16_to_f32_soft(h);
#endif
}

static inline uint16_t dn_f32_to_f16(float f) {
#ifdef __F16C__
  return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
  return dn_f32_to_f16_soft(f);
#endif
}

/* Element i of a float tensor of dtype dt, as fp32. With a constant dt (see
 * DN_FOR_DTYPE) the branches fold away. */
static inline float dn_ld(dn_dtype dt, const void *p, int64_t i) {
  if (dt == DN_BF16) return dn_bf16_to_f32(((const uint16_t *)p)[i]);
  if (dt == DN_F16) return dn_f16_to_f32(((const uint16_t *)p)[i]);
  return ((const float *)p)[i];
}

/* Stores v, rounded to dt, as element i. */
static inline void dn_st(dn_dtype dt, void *p, int64_t i, float v) {
  if (dt == DN_BF16) ((uint16_t *)p)[i] = dn_f32_to_bf16(v);
  else if (dt == DN_F16) ((uint16_t *)p)[i] = dn_f32_to_f16(v);
  else ((float *)p)[i] = v;
}

/* Runs the statements once per float dtype with `DT` a compile-time constant, so
 * dn_ld/dn_st inside them specialise (no per-element branch in the fp32 loops). */
#define DN_FOR_DTYPE(dt, ...)                                                                  \
  do {                                                                                         \
    switch (dt) {                                                                              \
    case DN_BF16: {                                                                            \
      const dn_dtype DT = DN_BF16;                                                             \
      (void)DT;                                                                                \
      __VA_ARGS__                                                                              \
    } break;                                                                                   \
    case DN_F16: {                                                                             \
      const dn_dtype DT = DN_F16;                                                              \
      (void)DT;                                                                                \
      __VA_ARGS__                                                                              \
    } break;                                                                                   \
    default: {                                                                                 \
      const dn_dtype DT = DN_F32;                                                              \
      (void)DT;                                                                                \
      __VA_ARGS__                                                                              \
    } break;                                                                                   \
    }                                                                                          \
  } while (0)

/* dst(n) = src[off : off+n] as fp32. */
static inline void dn_load_row(dn_dtype dt, float *dst, const void *src, int64_t off,
                               int64_t n) {
  if (dt == DN_F32) {
    memcpy(dst, (const float *)src + off, (size_t)n * sizeof(float));
    return;
  }
  const uint16_t *s = (const uint16_t *)src + off;
  int64_t i = 0;
  if (dt == DN_BF16) {
#pragma omp simd
    for (i = 0; i < n; i++) dst[i] = dn_bf16_to_f32(s[i]);
    return;
  }
#ifdef __F16C__
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
#endif
  for (; i < n; i++) dst[i] = dn_f16_to_f32(s[i]);
}

/* dst[off : off+n] = src(n), rounded to dt. */
static inline void dn_store_row(dn_dtype dt, void *dst, int64_t off, const float *src,
                                int64_t n) {
  if (dt == DN_F32) {
    memcpy((float *)dst + off, src, (size_t)n * sizeof(float));
    return;
  }
  uint16_t *d = (uint16_t *)dst + off;
  int64_t i = 0;
  if (dt == DN_BF16) {
#pragma omp simd
    for (i = 0; i < n; i++) d[i] = dn_f32_to_bf16(src[i]);
    return;
  }
#ifdef __F16C__
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; i++) d[i] = dn_f32_to_f16(src[i]);
}

/* dst[off : off+n] += src(n): one rounding per element. */
static inline void dn_accum_row(dn_dtype dt, void *dst, int64_t off, const float *src,
                                int64_t n) {
  if (dt == DN_F32) {
    float *d = (float *)dst + off;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) d[i] += src[i];
    return;
  }
  for (int64_t i = 0; i < n; i++) dn_st(dt, dst, off + i, dn_ld(dt, dst, off + i) + src[i]);
}

/* The parameter-gradient dtype packed into a kernel's dtype argument (see the header's
 * "Mixed precision" note): 0 in the high byte means "the same as the low byte". */
static inline dn_dtype dn_base_dtype(dn_dtype code) { return code & 0xff; }
static inline dn_dtype dn_grad_dtype(dn_dtype code) {
  int32_t g = (code >> 8) & 0xff;
  return g ? g - 1 : (code & 0xff);
}

#endif
