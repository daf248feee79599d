/**
 * defines: StagedProcessGroup, commBackendFromEnv
 *
 * The staged backend: every collective copies its tensors into host buffers, runs the
 * shared-memory collective on them, and copies the results back. It exists for several
 * ranks on one GPU, which NCCL refuses: CUDA tensors take the real device code paths of
 * every parallel layout and meet through host memory. Correct and slow; chosen
 * explicitly with `DENOTRON_COMM=staged` (or `backend: "staged"`). On CPU tensors the
 * same copies run, so a CPU-only CI exercises the plumbing the GPU check relies on.
 *
 * @module
 */
import { type Device, device as getDevice } from "../device.ts";
import { DenotronError } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import type { Backend, ProcessGroup, ReduceOp } from "./process_group.ts";

/**
 * The backend `DENOTRON_COMM` asks for, or undefined when unset.
 *
 * @param env the environment @default Deno.env
 * @returns "shm", "staged" or "nccl"
 */
export function commBackendFromEnv(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Backend | undefined {
  const v = env.DENOTRON_COMM;
  if (v === undefined || v === "") return undefined;
  if (v === "shm" || v === "staged" || v === "nccl") return v;
  throw new DenotronError(`DENOTRON_COMM=${v} is not a backend: use shm, staged or nccl`);
}

/** The bytes of host tensor `h`, as a buffer the FFI copies can fill or read. */
function hostBytes(h: Tensor): Uint8Array {
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(h.ptr, h.bytes));
}

/**
 * A group whose collectives go through host copies of the tensors and the shared-memory
 * group `inner` (opened on the CPU device).
 */
export class StagedProcessGroup implements ProcessGroup {
  readonly backend = "staged" as const;
  readonly name: string;
  readonly rank: number;
  readonly size: number;
  readonly ranks: readonly number[];
  /** The shared-memory group the host copies meet in. */
  readonly inner: ProcessGroup;
  /** Where the host buffers live. */
  readonly host: Device;

  /** @internal opened by newProcessGroup */
  constructor(inner: ProcessGroup, host: Device = getDevice("cpu")) {
    this.inner = inner;
    this.host = host;
    this.name = inner.name;
    this.rank = inner.rank;
    this.size = inner.size;
    this.ranks = inner.ranks;
  }

  get failed(): boolean {
    return this.inner.failed;
  }

  /**
   * Runs `op` on host copies of `tensors`: those listed in `copyIn` are copied to the host
   * first, those in `copyOut` back afterwards.
   */
  #staged(
    what: string,
    tensors: Tensor[],
    copyIn: number[],
    copyOut: number[],
    op: (hosts: Tensor[]) => void,
  ): void {
    const hosts = tensors.map((t) => Tensor.empty(t.shape, { dtype: t.dtype, device: this.host }));
    try {
      for (const i of copyIn) {
        const t = tensors[i], lib = t.device.lib;
        lib.check(
          lib.sym.dn_memcpy_d2h(hostBytes(hosts[i]), t.ptr, BigInt(t.bytes)),
          `${what} on group '${this.name}': staging ${t.describe()} to the host`,
        );
      }
      op(hosts);
      for (const i of copyOut) {
        const t = tensors[i], lib = t.device.lib;
        lib.check(
          lib.sym.dn_memcpy_h2d(t.ptr, hostBytes(hosts[i]), BigInt(t.bytes)),
          `${what} on group '${this.name}': copying the result back to ${t.describe()}`,
        );
      }
    } finally {
      for (const h of hosts) h.dispose();
    }
  }

  allReduce(t: Tensor, op: ReduceOp = "sum"): void {
    this.#staged("allReduce", [t], [0], [0], ([h]) => this.inner.allReduce(h, op));
  }

  reduceScatter(input: Tensor, output: Tensor, op: ReduceOp = "sum"): void {
    // separate host buffers even when output is a view of input: the shm op takes both
    this.#staged(
      "reduceScatter",
      [input, output],
      [0],
      [1],
      ([i, o]) => this.inner.reduceScatter(i, o, op),
    );
  }

  allGather(input: Tensor, output: Tensor): void {
    this.#staged("allGather", [input, output], [0], [1], ([i, o]) => this.inner.allGather(i, o));
  }

  broadcast(t: Tensor, root: number): void {
    this.#staged("broadcast", [t], [0], [0], ([h]) => this.inner.broadcast(h, root));
  }

  send(t: Tensor, peer: number): void {
    this.#staged("send", [t], [0], [], ([h]) => this.inner.send(h, peer));
  }

  recv(t: Tensor, peer: number): void {
    this.#staged("recv", [t], [], [0], ([h]) => this.inner.recv(h, peer));
  }

  barrier(): void {
    this.inner.barrier();
  }

  abort(): void {
    this.inner.abort();
  }

  close(): void {
    this.inner.close();
  }
}
