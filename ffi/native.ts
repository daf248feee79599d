/**
 * Finds, builds and opens the native libraries, and turns their status codes into
 * exceptions carrying the native message.
 *
 * `DENOTRON_CPU_LIB` overrides the CPU library's path, `DENOTRON_CUDA_LIB` the CUDA
 * library's (then nothing is built).
 *
 * @module
 */
import {
  buildCpuLibrary,
  buildCudaLibrary,
  cpuLibraryPath,
  type CpuVariant,
  cudaLibraryPath,
  isStale,
} from "./build.ts";
import { type NativeSymbols, symbols } from "./symbols.ts";

/** A failure reported by the native library; `message` carries its file:line text. */
export class NativeError extends Error {
  /** The dn_status code. */
  readonly status: number;
  /** Wraps a native error message and its status code. */
  constructor(message: string, status: number) {
    super(message);
    this.name = "NativeError";
    this.status = status;
  }
}

/** Time spent in one native symbol while profiling. */
export interface KernelTime {
  /** Number of calls. */
  calls: number;
  /** Total milliseconds spent in them. */
  ms: number;
}

const STATUS_NAMES = ["ok", "invalid argument", "out of memory", "unsupported", "runtime error"];

/** An opened native library: its symbols plus the helpers every caller needs. */
export class NativeLibrary {
  #raw: NativeSymbols;
  #sym: NativeSymbols;
  #profile: Map<string, KernelTime> | null = null;
  /** Path of the shared object. */
  readonly path: string;
  #lib: Deno.DynamicLibrary<typeof symbols>;

  /** Opens the shared object at `path`; on failure the error ends with `hint` (how to build or point at one). */
  constructor(
    path: string,
    hint = "Run 'deno task build', or set DENOTRON_CPU_LIB to a working libdenotron_cpu.so.",
  ) {
    this.path = path;
    try {
      this.#lib = Deno.dlopen(path, symbols);
    } catch (e) {
      throw new Error(
        `Could not open the native library ${path}: ${(e as Error).message}. ${hint}`,
      );
    }
    this.#raw = this.#sym = this.#lib.symbols;
    const abi = new Int32Array(1);
    this.check(this.sym.dn_abi_version(abi), "dn_abi_version");
  }

  /** The FFI symbols (timed while a profile is running). Prefer the typed ops in lib/ops. */
  get sym(): NativeSymbols {
    return this.#sym;
  }

  /**
   * Starts timing every native call by symbol name, until {@linkcode stopProfile}.
   * Calls are synchronous on the CPU, so wall time per call is kernel time. On CUDA
   * kernels are asynchronous: pass `sync` to wait for the GPU after every call (then
   * each symbol's time includes its kernels, and the sum is the step's GPU-busy time
   * plus per-call overhead).
   *
   * @param sync call dn_synchronize after every call @default false
   */
  startProfile(sync = false): void {
    const profile = new Map<string, KernelTime>();
    const raw = this.#raw as unknown as Record<string, (...args: unknown[]) => unknown>;
    const timed: Record<string, unknown> = {};
    for (const name of Object.keys(symbols)) {
      const fn = raw[name];
      timed[name] = (...args: unknown[]) => {
        const t0 = performance.now();
        const r = fn(...args);
        if (sync) raw.dn_synchronize();
        const entry = profile.get(name) ?? { calls: 0, ms: 0 };
        entry.calls++;
        entry.ms += performance.now() - t0;
        profile.set(name, entry);
        return r;
      };
    }
    this.#profile = profile;
    this.#sym = timed as unknown as NativeSymbols;
  }

  /** Stops timing and returns milliseconds and calls per symbol. */
  stopProfile(): Map<string, KernelTime> {
    const p = this.#profile ?? new Map();
    this.#profile = null;
    this.#sym = this.#raw;
    return p;
  }

  /** Throws a NativeError with the library's message when status is not 0. */
  check(status: number, what: string): void {
    if (status === 0) return;
    const ptr = this.sym.dn_last_error();
    const msg = ptr ? Deno.UnsafePointerView.getCString(ptr) : "";
    throw new NativeError(
      `${what} failed (${STATUS_NAMES[status] ?? `status ${status}`}): ${msg}`,
      status,
    );
  }

  /** A line describing the backend ("cpu gemm=openblas threads=2 ..."). */
  info(): string {
    const buf = new Uint8Array(256);
    this.check(this.sym.dn_backend_info(buf, BigInt(buf.length)), "dn_backend_info");
    return new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
  }

  /** Threads the kernels use. */
  get numThreads(): number {
    const out = new Int32Array(1);
    this.check(this.sym.dn_get_num_threads(out), "dn_get_num_threads");
    return out[0];
  }
  set numThreads(n: number) {
    this.check(this.sym.dn_set_num_threads(n), "dn_set_num_threads");
  }
}

const opened = new Map<string, NativeLibrary>();

/**
 * Opens the CPU library, building it first when it is missing or stale.
 *
 * @param variant "default" (OpenBLAS GEMM when available) or "builtin" (our GEMM)
 * @returns the opened library, shared by every caller in this process
 */
export function cpuLibrary(variant: CpuVariant = "default"): NativeLibrary {
  const override = variant === "default" ? Deno.env.get("DENOTRON_CPU_LIB") : undefined;
  const path = override ?? cpuLibraryPath(variant);
  let lib = opened.get(path);
  if (lib) return lib;
  if (override) {
    try {
      Deno.statSync(override);
    } catch {
      throw new Error(`DENOTRON_CPU_LIB points to ${override}, which does not exist.`);
    }
  } else if (isStale(variant)) {
    buildCpuLibrary(variant);
  }
  lib = new NativeLibrary(path);
  opened.set(path, lib);
  return lib;
}

/**
 * Opens the CUDA library, building it with `make -C kernels/cuda` when it is missing or
 * older than its sources. Opening needs no GPU; the first call that touches the device
 * fails with the CUDA runtime's message when none is usable.
 *
 * @returns the opened library, shared by every caller in this process
 */
export function cudaLibrary(): NativeLibrary {
  const override = Deno.env.get("DENOTRON_CUDA_LIB");
  const path = override ?? cudaLibraryPath();
  let lib = opened.get(path);
  if (lib) return lib;
  if (override) {
    try {
      Deno.statSync(override);
    } catch {
      throw new Error(`DENOTRON_CUDA_LIB points to ${override}, which does not exist.`);
    }
  } else if (cudaIsStale()) {
    buildCudaLibrary();
  }
  lib = new NativeLibrary(
    path,
    "Run 'make -C kernels/cuda' (needs nvcc), or set DENOTRON_CUDA_LIB to a working " +
      "libdenotron_cuda.so.",
  );
  opened.set(path, lib);
  return lib;
}

function cudaIsStale(): boolean {
  const mtime = (p: string) => Deno.statSync(p).mtime?.getTime() ?? 0;
  let built: number;
  try {
    built = mtime(cudaLibraryPath());
  } catch {
    return true;
  }
  const dir = new URL("../kernels/cuda/", import.meta.url).pathname;
  const sources = [...Deno.readDirSync(dir)].map((e) => dir + e.name);
  sources.push(new URL("../kernels/include/denotron.h", import.meta.url).pathname);
  return sources.some((f) => mtime(f) > built);
}
