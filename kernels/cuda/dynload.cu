/* defines: dn_dynload, dn_dynsym — finds cuBLAS, cuBLASLt and NCCL at run time: an
 * environment variable, the loader's search path, then the wheels that pip installs
 * (site-packages/nvidia/<name>/lib), which is where PyTorch images keep them. */
#include <dlfcn.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "common.cuh"
#include "dynload.h"

/* site-packages directories where a pip-installed nvidia/<pip_dir>/lib may live */
static std::vector<std::string> pip_lib_dirs(const char *pip_dir) {
  std::vector<std::string> patterns;
  const char *prefixes[] = {getenv("VIRTUAL_ENV"), getenv("CONDA_PREFIX"), "/usr/local", "/usr",
                            "/opt/conda"};
  for (const char *p : prefixes) {
    if (!p || !*p) continue;
    patterns.push_back(std::string(p) + "/lib/python3*/site-packages/nvidia/" + pip_dir + "/lib");
    patterns.push_back(std::string(p) + "/lib/python3*/dist-packages/nvidia/" + pip_dir + "/lib");
  }
  const char *home = getenv("HOME");
  if (home)
    patterns.push_back(std::string(home) + "/.local/lib/python3*/site-packages/nvidia/" +
                       pip_dir + "/lib");
  std::vector<std::string> dirs;
  for (const std::string &pat : patterns) {
    glob_t g;
    if (glob(pat.c_str(), 0, NULL, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; i++) dirs.push_back(g.gl_pathv[i]);
    }
    globfree(&g);
  }
  return dirs;
}

static void open_deps(const char *dir, const char *const *deps) {
  for (int i = 0; deps && deps[i]; i++) {
    std::string p = dir ? std::string(dir) + "/" + deps[i] : std::string(deps[i]);
    dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL);
  }
}

dn_status dn_dynload(const char *op, const char *env_var, const char *const *names,
                     const char *pip_dir, const char *const *deps, const char *install_hint,
                     void **handle) {
  const char *env = getenv(env_var);
  if (env && *env) {
    std::string dir(env);
    size_t slash = dir.rfind('/');
    open_deps(slash == std::string::npos ? NULL : dir.substr(0, slash).c_str(), deps);
    *handle = dlopen(env, RTLD_NOW | RTLD_GLOBAL);
    DN_CHECK(*handle, DN_ERR_UNSUPPORTED, "%s: %s=%s could not be opened: %s", op, env_var, env,
             dlerror());
    return DN_OK;
  }
  std::string tried;
  for (int i = 0; names[i]; i++) {
    open_deps(NULL, deps);
    *handle = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (*handle) return DN_OK;
    tried += std::string(tried.empty() ? "" : ", ") + names[i];
  }
  for (const std::string &dir : pip_lib_dirs(pip_dir)) {
    for (int i = 0; names[i]; i++) {
      std::string p = dir + "/" + names[i];
      open_deps(dir.c_str(), deps);
      *handle = dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (*handle) return DN_OK;
      tried += ", " + p;
    }
  }
  return DN_FAIL(DN_ERR_UNSUPPORTED,
                 "%s: could not load %s (tried %s). %s, or set %s to the library's path", op,
                 names[0], tried.c_str(), install_hint, env_var);
}

dn_status dn_dynsym(const char *op, void *handle, const char *lib, const char *name, void **fn) {
  *fn = dlsym(handle, name);
  DN_CHECK(*fn, DN_ERR_UNSUPPORTED, "%s: %s has no symbol %s (too old a version?)", op, lib,
           name);
  return DN_OK;
}
