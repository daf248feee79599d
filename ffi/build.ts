/**
 * Builds the native libraries from `kernels/`. Run by `deno task build`, and on first
 * use by `ffi/native.ts` whenever a library is missing or older than its sources.
 *
 * - `build/libdenotron_cpu.so`: the CPU backend, with OpenBLAS for GEMM when its
 *   header and library are installed (Debian: `libopenblas-dev`), else the built-in GEMM.
 * - `build/libdenotron_cpu_builtin.so`: always the built-in GEMM (tests compare both).
 *
 * Environment: `CC` picks the compiler (default `cc`); `DENOTRON_BLAS=none` forces the
 * built-in GEMM in the default library too.
 *
 * @module
 */

/** Which flavour of the CPU library to build. */
export type CpuVariant = "default" | "builtin";

const root = new URL("../", import.meta.url);
const path = (rel: string) => decodeURIComponent(new URL(rel, root).pathname);

/** Where a variant's library lives. */
export function cpuLibraryPath(variant: CpuVariant = "default"): string {
  return path(
    variant === "builtin" ? "build/libdenotron_cpu_builtin.so" : "build/libdenotron_cpu.so",
  );
}

function sources(): string[] {
  const dir = path("kernels/cpu/");
  return [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.endsWith(".c"))
    .map((e) => dir + e.name)
    .sort();
}

function newestSourceTime(): number {
  const files = [
    ...sources(),
    ...["kernels/cpu/", "kernels/shared/"].flatMap((dir) =>
      [...Deno.readDirSync(path(dir))].filter((e) => e.name.endsWith(".h"))
        .map((e) => path(dir) + e.name)
    ),
    path("kernels/include/denotron.h"),
  ];
  return Math.max(...files.map((f) => Deno.statSync(f).mtime?.getTime() ?? 0));
}

/** True when the library is missing or older than any kernel source or header. */
export function isStale(variant: CpuVariant = "default"): boolean {
  try {
    const built = Deno.statSync(cpuLibraryPath(variant)).mtime?.getTime() ?? 0;
    return built < newestSourceTime();
  } catch {
    return true;
  }
}

function compiler(): string {
  return Deno.env.get("CC") ?? "cc";
}

function run(cmd: string, args: string[]): { ok: boolean; stderr: string } {
  try {
    const out = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
    return { ok: out.success, stderr: new TextDecoder().decode(out.stderr) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `No C compiler found: '${cmd}' is not on PATH. Install one (Debian: apt-get install gcc) ` +
          `or set CC to a compiler, or set DENOTRON_CPU_LIB to a prebuilt libdenotron_cpu.so.`,
      );
    }
    throw e;
  }
}

let openblasProbe: boolean | undefined;

/** True when `cblas.h` and `-lopenblas` compile and link here. */
export function hasOpenBlas(): boolean {
  if (Deno.env.get("DENOTRON_BLAS") === "none") return false;
  if (openblasProbe !== undefined) return openblasProbe;
  const dir = Deno.makeTempDirSync({ prefix: "denotron-blas-" });
  try {
    Deno.writeTextFileSync(
      `${dir}/probe.c`,
      "#include <cblas.h>\nint main(void){float a=1,b=1,c=0;" +
        "cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1,&a,1,&b,1,0,&c,1);" +
        "return c==1?0:1;}\n",
    );
    openblasProbe = run(compiler(), [
      ...blasIncludes(),
      `${dir}/probe.c`,
      "-o",
      `${dir}/probe`,
      ...blasLinkArgs(),
    ]).ok;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  return openblasProbe;
}

/**
 * Links OpenBLAS's OpenMP build when Debian's libopenblas0-openmp is installed: it then
 * shares our kernels' OpenMP thread pool, where the pthread build's own spinning
 * threads would compete with ours for the cores between calls.
 */
function blasLinkArgs(): string[] {
  for (
    const dir of [
      "/usr/lib/x86_64-linux-gnu/openblas-openmp",
      "/usr/lib/aarch64-linux-gnu/openblas-openmp",
    ]
  ) {
    try {
      if (Deno.statSync(`${dir}/libopenblas.so.0`).isFile) {
        return [`-L${dir}`, "-l:libopenblas.so.0", `-Wl,-rpath,${dir}`];
      }
    } catch { /* not this one */ }
  }
  return ["-lopenblas"];
}

function blasIncludes(): string[] {
  // Debian keeps cblas.h under the multiarch include directory.
  const dirs = [
    "/usr/include/x86_64-linux-gnu",
    "/usr/include/aarch64-linux-gnu",
    "/usr/include/openblas",
  ];
  return dirs.filter((d) => {
    try {
      return Deno.statSync(`${d}/cblas.h`).isFile;
    } catch {
      return false;
    }
  }).map((d) => `-I${d}`);
}

/**
 * Compiles one variant of the CPU library (into a temporary name, then renamed, so
 * concurrent test processes never open a half-written file).
 *
 * @param variant which flavour to build
 * @returns the library's path
 */
export function buildCpuLibrary(variant: CpuVariant = "default"): string {
  const out = cpuLibraryPath(variant);
  Deno.mkdirSync(path("build"), { recursive: true });
  const blas = variant === "default" && hasOpenBlas();
  const tmp = `${out}.${Deno.pid}.tmp`;
  const args = [
    "-std=c11",
    "-O3",
    "-march=native",
    "-fopenmp",
    // No kernel reads errno; without it sqrtf could not be inlined in vector loops.
    "-fno-math-errno",
    // No kernel reads the floating-point exception flags; without it GCC keeps float
    // comparisons as branches, and no loop that calls dn_expf vectorises.
    "-fno-trapping-math",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    // libgomp keeps worker threads alive; never unmapping the library keeps their code
    // mapped when Deno closes it at exit.
    "-Wl,-z,nodelete",
    "-Wall",
    "-Wextra",
    "-Werror",
    ...(blas ? ["-DDN_USE_OPENBLAS", ...blasIncludes()] : []),
    ...sources(),
    "-o",
    tmp,
    "-lm",
    ...(blas ? blasLinkArgs() : []),
  ];
  const result = run(compiler(), args);
  if (!result.ok) {
    try {
      Deno.removeSync(tmp);
    } catch { /* nothing was written */ }
    throw new Error(`Building ${out} failed:\n${compiler()} ${args.join(" ")}\n${result.stderr}`);
  }
  Deno.renameSync(tmp, out);
  return out;
}

/** Where the CUDA library lives. */
export function cudaLibraryPath(): string {
  return path("build/libdenotron_cuda.so");
}

/**
 * Builds `build/libdenotron_cuda.so` with `make -C kernels/cuda` (nvcc, sm_80 and sm_90;
 * make skips it when nothing changed). Needs only nvcc and the CUDA runtime: cuBLAS and
 * NCCL are opened when first used.
 *
 * @returns the library's path
 */
export function buildCudaLibrary(): string {
  let out: Deno.CommandOutput;
  try {
    out = new Deno.Command("make", {
      args: ["-C", path("kernels/cuda")],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        "Building the CUDA library needs 'make' and 'nvcc' on PATH (install the CUDA toolkit), " +
          "or set DENOTRON_CUDA_LIB to a prebuilt libdenotron_cuda.so.",
      );
    }
    throw e;
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr);
    const hint = /nvcc: (command )?not found|No such file or directory.*nvcc/.test(err)
      ? " nvcc is not on PATH: install the CUDA toolkit or set DENOTRON_CUDA_LIB."
      : "";
    throw new Error(`Building ${cudaLibraryPath()} failed.${hint}\n${err}`);
  }
  return cudaLibraryPath();
}

if (import.meta.main) {
  for (const variant of ["default", "builtin"] as const) {
    const p = buildCpuLibrary(variant);
    console.log(
      `built ${p}${
        variant === "default" ? (hasOpenBlas() ? " (OpenBLAS GEMM)" : " (built-in GEMM)") : ""
      }`,
    );
  }
}
