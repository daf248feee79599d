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
import { ABI_VERSION, type NativeSymbols, symbols } from "./symbols.ts";

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

/** How {@linkcode NativeLibrary.startProfile} times calls. */
export type ProfileMode = "wall" | "sync" | "events";

/** Calls that are not timed: the error text and the profiler's own timestamps. */
const UNTIMED = new Set(["dn_last_error", "dn_timer_record", "dn_timer_elapsed"]);
/** Timestamp slots of the native timer (dn_timer_record). */
const TIMER_SLOTS = 65536;

/** Milliseconds and calls per symbol (or per key), from {@linkcode NativeLibrary.stopProfile}. */
export class Profile extends Map<string, KernelTime> {
  /** How the calls were timed. */
  readonly mode: ProfileMode;
  /**
   * `"events"` mode: device milliseconds from the first profiled call's start to the
   * last one's end (NaN otherwise). Minus the sum of the entries, the device's idle time.
   */
  spanMs: number = NaN;
  /** `"events"` mode: true when more calls were made than timer slots (the rest untimed). */
  truncated: boolean = false;
  /** Labels of the timed calls in order (`"events"` mode). */
  readonly pairs: string[] = [];

  /** An empty profile. */
  constructor(mode: ProfileMode) {
    super();
    this.mode = mode;
  }

  /** Adds one call of `ms` milliseconds under `label`. */
  add(label: string, ms: number): void {
    const entry = this.get(label) ?? { calls: 0, ms: 0 };
    entry.calls++;
    entry.ms += ms;
    this.set(label, entry);
  }

  /** The sum of every entry's milliseconds. */
  get totalMs(): number {
    let t = 0;
    for (const e of this.values()) t += e.ms;
    return t;
  }
}

const STATUS_NAMES = ["ok", "invalid argument", "out of memory", "unsupported", "runtime error"];

/** An opened native library: its symbols plus the helpers every caller needs. */
export class NativeLibrary {
  #raw: NativeSymbols;
  #sym: NativeSymbols;
  #profile: Profile | null = null;
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
    if (abi[0] !== ABI_VERSION) {
      throw new Error(
        `The native library ${path} has ABI version ${
          abi[0]
        }, this code needs ${ABI_VERSION}. ${hint}`,
      );
    }
  }

  /** The FFI symbols (timed while a profile is running). Prefer the typed ops in lib/ops. */
  get sym(): NativeSymbols {
    return this.#sym;
  }

  /**
   * Starts timing every native call by symbol name, until {@linkcode stopProfile}.
   *
   * - `"wall"`: host wall time per call. Calls are synchronous on the CPU, so this is
   *   kernel time there; on CUDA it is only the launch cost.
   * - `"sync"`: wall time with a device synchronisation after every call, so each
   *   symbol's time includes its kernels (and the sum adds a round trip per call).
   * - `"events"`: a timestamp on the device's stream before and after every call
   *   (`dn_timer_record`), nothing waited for: each symbol's time is the span its kernels
   *   took on the device, and {@linkcode Profile.spanMs} minus their sum is the time the
   *   device sat idle between calls, waiting for the host (TypeScript, FFI, launches).
   *
   * @param mode see above; `true` means `"sync"` @default "wall"
   * @param key groups calls under another name than the symbol's (e.g. a GEMM's shape);
   *   receives the symbol and the call's arguments
   */
  startProfile(
    mode: ProfileMode | boolean = "wall",
    key?: (symbol: string, args: unknown[]) => string,
  ): void {
    const how: ProfileMode = mode === true ? "sync" : mode === false ? "wall" : mode;
    const profile = new Profile(how);
    const raw = this.#raw as unknown as Record<string, (...args: unknown[]) => unknown>;
    const timed: Record<string, unknown> = {};
    const events = how === "events";
    for (const name of Object.keys(symbols)) {
      const fn = raw[name];
      if (UNTIMED.has(name)) {
        timed[name] = fn;
        continue;
      }
      timed[name] = (...args: unknown[]) => {
        const label = key ? key(name, args) : name;
        if (events) {
          const slot = profile.pairs.length * 2;
          if (slot + 1 >= TIMER_SLOTS) {
            profile.truncated = true;
            return fn(...args);
          }
          raw.dn_timer_record(BigInt(slot));
          const r = fn(...args);
          raw.dn_timer_record(BigInt(slot + 1));
          profile.pairs.push(label);
          return r;
        }
        const t0 = performance.now();
        const r = fn(...args);
        if (how === "sync") raw.dn_synchronize();
        profile.add(label, performance.now() - t0);
        return r;
      };
    }
    this.#profile = profile;
    this.#sym = timed as unknown as NativeSymbols;
  }

  /**
   * Stops timing and returns milliseconds and calls per symbol (or per key). In
   * `"events"` mode this waits for the device to finish the profiled calls.
   */
  stopProfile(): Profile {
    const p = this.#profile ?? new Profile("wall");
    this.#profile = null;
    this.#sym = this.#raw;
    const n = p.pairs.length;
    if (p.mode !== "events" || n === 0) return p;
    // every call's span, then the whole span from the first call's start to the last's end
    const from = new BigInt64Array(n + 1), to = new BigInt64Array(n + 1);
    for (let i = 0; i < n; i++) {
      from[i] = BigInt(2 * i);
      to[i] = BigInt(2 * i + 1);
    }
    from[n] = 0n;
    to[n] = BigInt(2 * n - 1);
    const ms = new Float64Array(n + 1);
    this.check(this.#raw.dn_timer_elapsed(BigInt(n + 1), from, to, ms), "dn_timer_elapsed");
    for (let i = 0; i < n; i++) p.add(p.pairs[i], ms[i]);
    p.spanMs = ms[n];
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
  const dir = decodeURIComponent(new URL("../kernels/cuda/", import.meta.url).pathname);
  const sources = [...Deno.readDirSync(dir)].map((e) => dir + e.name);
  sources.push(
    decodeURIComponent(new URL("../kernels/include/denotron.h", import.meta.url).pathname),
  );
  return sources.some((f) => mtime(f) > built);
}
