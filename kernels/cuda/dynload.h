/* Opening cuBLAS and NCCL at run time (dynload.cu). */
#ifndef DN_CUDA_DYNLOAD_H
#define DN_CUDA_DYNLOAD_H

#include "../include/denotron.h"

/* Opens the first loadable library among: the path in env_var (when set; then only it),
 * the sonames in `names` through the dynamic loader's usual search, and each name under
 * the Python site-packages directories nvidia/<pip_dir>/lib. On failure returns
 * DN_ERR_UNSUPPORTED with a sentence naming what was tried, what to install and which
 * variable to set. `deps` (may be NULL) are opened first, RTLD_GLOBAL, from the same
 * directory when found there (cuBLAS needs cuBLASLt). */
dn_status dn_dynload(const char *op, const char *env_var, const char *const *names,
                     const char *pip_dir, const char *const *deps, const char *install_hint,
                     void **handle);
/* dlsym that fails with a sentence naming the symbol and library. */
dn_status dn_dynsym(const char *op, void *handle, const char *lib, const char *name, void **fn);

#endif
