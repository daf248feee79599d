/* Argument checks shared by both backends (kernels/cpu, kernels/cuda): error reporting and
 * the checks every kernel makes of its arguments, so the two libraries fail the same way on
 * the same bad input. Each backend's runtime defines dn_fail; dn_check_extent is defined
 * once, in checks_impl.h, which each runtime includes. */
#ifndef DN_SHARED_CHECKS_H
#define DN_SHARED_CHECKS_H

#include <stdint.h>

#include "../include/denotron.h"

/* Records "file:line: message" as this thread's last error and returns code. */
dn_status dn_fail(dn_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define DN_FAIL(code, ...) dn_fail((code), __FILE__, __LINE__, __VA_ARGS__)
#define DN_CHECK(cond, code, ...)                                                              \
  do {                                                                                         \
    if (!(cond)) return DN_FAIL((code), __VA_ARGS__);                                          \
  } while (0)
#define DN_CHECK_PTR(p, op)                                                                    \
  DN_CHECK((p) != NULL, DN_ERR_INVALID, "%s: argument '%s' is NULL", (op), #p)
#define DN_CHECK_POS(x, op)                                                                    \
  DN_CHECK((x) > 0, DN_ERR_INVALID, "%s: %s must be positive, got %lld", (op), #x,             \
           (long long)(x))

/* Fails (DN_ERR_INVALID, naming op and the sizes) unless each of the n sizes is >= 0 and
 * their product, formed with overflow checks, is at most DN_MAX_BYTES: the extent of one
 * buffer the call indexes. names is the sizes' source text, for the message. */
dn_status dn_check_extent(const char *file, int line, const char *op, const char *names,
                          const int64_t *sizes, int n);
/* DN_CHECK_EXTENT(op, B, T, 3, C): the (B, T, 3, C) buffer fits (see dn_check_extent). */
#define DN_CHECK_EXTENT(op, ...)                                                               \
  do {                                                                                         \
    const int64_t dn_sizes_[] = {__VA_ARGS__};                                                 \
    dn_status dn_extent_status_ =                                                              \
        dn_check_extent(__FILE__, __LINE__, (op), #__VA_ARGS__, dn_sizes_,                     \
                        (int)(sizeof dn_sizes_ / sizeof dn_sizes_[0]));                        \
    if (dn_extent_status_ != DN_OK) return dn_extent_status_;                                  \
  } while (0)

#endif
