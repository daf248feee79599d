/* The one definition of dn_check_extent (declared in checks.h), included by exactly one
 * file of each backend: kernels/cpu/runtime.c and kernels/cuda/runtime.cu. */
#include <stdio.h>

#include "checks.h"

dn_status dn_check_extent(const char *file, int line, const char *op, const char *names,
                          const int64_t *sizes, int n) {
  int64_t extent = 1;
  int negative = 0, zero = 0, overflow = 0;
  for (int i = 0; i < n; i++) {
    if (sizes[i] < 0) negative = 1;
    else if (sizes[i] == 0) zero = 1;
    else if (!overflow && __builtin_mul_overflow(extent, sizes[i], &extent)) overflow = 1;
  }
  if (!negative && (zero || (!overflow && extent <= DN_MAX_BYTES))) return DN_OK;
  char values[256];
  int used = 0;
  for (int i = 0; i < n && used < (int)sizeof values; i++) {
    int w = snprintf(values + used, sizeof values - (size_t)used, "%s%lld", i ? ", " : "",
                     (long long)sizes[i]);
    if (w < 0) break;
    used += w;
  }
  return dn_fail(DN_ERR_INVALID, file, line,
                 negative ? "%s: sizes (%s) = (%s) include a negative size"
                          : "%s: sizes (%s) = (%s) span more than 2^46 elements, the most one "
                            "buffer may hold",
                 op, names, n ? values : "");
}
