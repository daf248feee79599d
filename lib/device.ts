/**
 * Devices: where a tensor's storage lives and which native library runs its ops.
 * Model code never branches on the device; ops ask the tensor's device for its
 * library.
 *
 * @module
 */
import { cpuLibrary, cudaLibrary, type NativeLibrary } from "../ffi/native.ts";
import { DenotronError } from "./errors.ts";

/** Bytes in use and cached by a device's caching allocator. */
export interface MemoryStats {
  /** Bytes handed out and not yet freed. */
  inUse: number;
  /** Bytes freed by tensors and kept for reuse. */
  cached: number;
  /** The largest `inUse` seen. */
  peak: number;
  /** Live blocks. */
  blocks: number;
}

/** A compute device and its native library. Get one with {@linkcode device}. */
export class Device {
  /** "cpu" or "cuda". */
  readonly type: "cpu" | "cuda";
  /** A name that round-trips through {@linkcode device}, e.g. "cpu" or "cpu:builtin". */
  readonly name: string;
  /** The native library that runs this device's kernels. */
  readonly lib: NativeLibrary;

  private constructor(type: "cpu" | "cuda", name: string, lib: NativeLibrary) {
    this.type = type;
    this.name = name;
    this.lib = lib;
  }

  /** @internal */
  static create(name: string): Device {
    if (name === "cpu") return new Device("cpu", name, cpuLibrary("default"));
    if (name === "cpu:builtin") return new Device("cpu", name, cpuLibrary("builtin"));
    if (name === "cuda" || name === "cuda:0") {
      let lib: NativeLibrary;
      try {
        lib = cudaLibrary();
      } catch (e) {
        throw new DenotronError(
          `device '${name}': the CUDA library could not be built or opened: ${
            (e as Error).message
          }`,
        );
      }
      // The first device call initialises the GPU: fail here, with the runtime's reason.
      const status = lib.sym.dn_synchronize();
      if (status !== 0) {
        const ptr = lib.sym.dn_last_error();
        const msg = ptr ? Deno.UnsafePointerView.getCString(ptr) : "";
        throw new DenotronError(`device '${name}': no usable CUDA GPU: ${msg}`);
      }
      return new Device("cuda", name, lib);
    }
    if (name.startsWith("cuda:")) {
      throw new DenotronError(
        `device '${name}': one process drives one GPU; use 'cuda' and pick the GPU with ` +
          `LOCAL_RANK or CUDA_VISIBLE_DEVICES.`,
      );
    }
    throw new DenotronError(
      `unknown device '${name}': expected 'cpu', 'cpu:builtin' (built-in GEMM) or 'cuda'.`,
    );
  }

  /** Threads the device's kernels use (CPU). */
  get numThreads(): number {
    return this.lib.numThreads;
  }
  set numThreads(n: number) {
    if (!Number.isInteger(n) || n < 1) {
      throw new DenotronError(`numThreads must be a positive integer, got ${n}`);
    }
    this.lib.numThreads = n;
  }

  /** The caching allocator's counters. */
  memoryStats(): MemoryStats {
    const out = new BigInt64Array(4);
    this.lib.check(this.lib.sym.dn_memory_stats(out), "dn_memory_stats");
    return {
      inUse: Number(out[0]),
      cached: Number(out[1]),
      peak: Number(out[2]),
      blocks: Number(out[3]),
    };
  }

  /** Gives cached, unused memory back to the system. */
  emptyCache(): void {
    this.lib.check(this.lib.sym.dn_empty_cache(), "dn_empty_cache");
  }

  /** The backend's own description, e.g. "cpu gemm=openblas threads=2 ...". */
  info(): string {
    return this.lib.info();
  }

  /** The device's name, e.g. "cpu". */
  toString(): string {
    return this.name;
  }

  /** Prints as the device's name. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Device(${this.info()})`;
  }
}

const devices = new Map<string, Device>();

/**
 * Returns the device named `name` (default: `$DENOTRON_DEVICE`, else "cpu"). Opening
 * the CPU device builds its library on first use.
 *
 * @param name "cpu", "cpu:builtin" (our own GEMM instead of OpenBLAS), or "cuda" (the GPU
 *   LOCAL_RANK modulo the visible GPUs; builds kernels/cuda with nvcc on first use)
 * @returns the device, the same object for the same name
 * @example
 * ```ts
 * import { device } from "./device.ts";
 * const cpu = device("cpu");
 * console.log(cpu.info());
 * ```
 */
export function device(name?: string): Device {
  const key = name ?? Deno.env.get("DENOTRON_DEVICE") ?? "cpu";
  let d = devices.get(key);
  if (!d) {
    d = Device.create(key);
    devices.set(key, d);
  }
  return d;
}
