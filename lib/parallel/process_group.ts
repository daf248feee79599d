/**
 * defines: ProcessGroup, ReduceOp, Backend, ProcessGroupOptions, NativeProcessGroup,
 *          SingleProcessGroup, newProcessGroup, chooseBackend, shardRange
 *
 * One interface for every backend. Tensors are communicated in place where that is
 * natural (all-reduce, broadcast, recv); reduce-scatter and all-gather follow the shard
 * layout of {@linkcode shardRange}, which accepts any size, not only multiples of the
 * group size. Every call blocks until its part is done; on the CPU that means the data
 * has moved.
 *
 * Backends:
 * - `shm`: ranks on one machine meeting in a POSIX shared-memory segment of the C
 *   library (kernels/cpu/comm_shm.c). Deterministic: reductions combine ranks in rank
 *   order, so every rank gets bit-identical results.
 * - `staged` (staged.ts): any tensors, copied to host buffers that meet through `shm`:
 *   several ranks on one GPU, which NCCL refuses. Chosen with `DENOTRON_COMM=staged`.
 * - `nccl`: GPU ranks, one GPU each, through NCCL (kernels/cuda/comm_nccl.cu, NCCL opened
 *   at run time): rank 0 draws the unique id and publishes it in the store, every member
 *   joins its own communicator with it. Collectives run on the library's stream, ordered
 *   with the kernels around them.
 *
 * The tensors' device picks the backend ({@linkcode chooseBackend}): shm for CPU tensors,
 * nccl for CUDA tensors; `DENOTRON_COMM` (or `options.backend`) overrides it.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { device as defaultDevice } from "../device.ts";
import { DenotronError } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { commBackendFromEnv, StagedProcessGroup } from "./staged.ts";
import type { StoreClient } from "./store.ts";
import { distributedTimeoutMs } from "./timeouts.ts";

/** How all-reduce and reduce-scatter combine values. */
export type ReduceOp = "sum" | "max" | "min";
/** Communication engines. */
export type Backend = "shm" | "staged" | "nccl";

const OP_CODE: Record<ReduceOp, number> = { sum: 0, max: 1, min: 2 };

/**
 * One number reduced over a group (in fp32, in rank order: the same on every rank), e.g. a
 * loss sum, an overflow flag or a vote to stop. A collective: every member calls it.
 * No group (or a group of one): `x` itself.
 *
 * @param group the ranks, or null for this process alone
 * @param x this rank's value
 * @param op the reduction @default "sum"
 * @param device where the group's tensors live @default device()
 * @returns the reduced value
 * @example
 * ```ts
 * import { reduceNumber } from "./process_group.ts";
 * console.log(reduceNumber(null, 3)); // 3
 * ```
 */
export function reduceNumber(
  group: ProcessGroup | null,
  x: number,
  op: ReduceOp = "sum",
  device?: Device,
): number {
  if (!group || group.size === 1) return x;
  using t = Tensor.fromArray([x], [1], { device: device ?? defaultDevice() });
  group.allReduce(t, op);
  return t.item();
}

/**
 * Shard `q` of `n` elements split among `size` ranks: `[floor(n·q/size), floor(n·(q+1)/size))`.
 * Shard lengths differ by at most one.
 *
 * @example
 * ```ts
 * import { shardRange } from "./process_group.ts";
 * console.log(shardRange(10, 1, 3)); // { start: 3, length: 3 }
 * ```
 */
export function shardRange(n: number, q: number, size: number): { start: number; length: number } {
  const start = Math.floor((n * q) / size);
  return { start, length: Math.floor((n * (q + 1)) / size) - start };
}

/** A set of ranks that communicate. Ranks inside a group count from 0. */
export interface ProcessGroup {
  /** The group's name (in messages and segment names), e.g. "dp-0". */
  readonly name: string;
  /** How it communicates ("single": a group of one, no communication). */
  readonly backend: Backend | "single";
  /** This process's rank in the group. */
  readonly rank: number;
  /** Ranks in the group. */
  readonly size: number;
  /** The global ranks of the members, by group rank. */
  readonly ranks: readonly number[];
  /** In place: every rank's `t` becomes the element-wise reduction over the group. */
  allReduce(t: Tensor, op?: ReduceOp): void;
  /**
   * The in-place all-reduce, started so that it overlaps what follows (NCCL: on the group's
   * own stream); `t` must not be used until {@linkcode ProcessGroup.wait}. Backends without
   * it are blocking: use allReduce.
   */
  allReduceStart?(t: Tensor, op?: ReduceOp): void;
  /** Orders later work after every started all-reduce (NCCL: without blocking the host). */
  wait?(): void;
  /**
   * `output` = this rank's shard (see {@linkcode shardRange}) of the reduction of every
   * rank's `input`. `output` may be the view of `input` at this rank's shard.
   */
  reduceScatter(input: Tensor, output: Tensor, op?: ReduceOp): void;
  /**
   * `output` = every rank's `input` shard side by side. `input` may be the view of `output`
   * at this rank's shard.
   */
  allGather(input: Tensor, output: Tensor): void;
  /** In place: every rank's `t` becomes group rank `root`'s. */
  broadcast(t: Tensor, root: number): void;
  /** Sends `t` to group rank `peer`; returns once it has been received. */
  send(t: Tensor, peer: number): void;
  /** Fills `t` from group rank `peer`'s send. */
  recv(t: Tensor, peer: number): void;
  /** Returns once every rank of the group has called it. */
  barrier(): void;
  /** Makes every rank waiting in this group fail at once (call when giving up). */
  abort(): void;
  /** True once a call of this group failed: a peer died or timed out, or it was aborted. */
  readonly failed: boolean;
  /** Releases the group. Safe to call twice. */
  close(): void;
}

/** Options of {@link newProcessGroup}. */
export interface ProcessGroupOptions {
  /** The communication backend. @default DENOTRON_COMM, else "shm" */
  backend?: Backend;
  /**
   * Deadline of every blocking call, in ms.
   * @default distributedTimeoutMs() (timeouts.ts): two minutes unless set
   */
  timeoutMs?: number;
  /**
   * Bytes of shared memory per rank (a multiple of 4096); collectives larger than half a
   * slot run in rounds.
   * @default DENOTRON_SHM_SLOT_BYTES, else 8 MiB
   */
  slotBytes?: number;
  /** Where the tensors live. @default device() */
  device?: Device;
  /**
   * Open a communicator even for a group of one (which otherwise needs none), so that a
   * benchmark or a GPU check runs the backend's real path on one rank. @default false
   */
  communicatorForOne?: boolean;
}

function envInt(name: string): number | undefined {
  const v = Deno.env.get(name);
  return v ? Number(v) : undefined;
}

function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

function checkSameSize(a: Tensor, b: Tensor, what: string): void {
  if (a.dtype !== b.dtype) {
    throw new DenotronError(`${what}: dtypes differ (${a.describe()} vs ${b.describe()})`);
  }
  void b;
}

/** A group of one: every operation is a copy or nothing. */
export class SingleProcessGroup implements ProcessGroup {
  readonly backend = "single" as const;
  readonly rank = 0;
  readonly size = 1;
  readonly ranks: readonly number[];
  constructor(readonly name: string, globalRank: number) {
    this.ranks = [globalRank];
  }
  allReduce(): void {}
  reduceScatter(input: Tensor, output: Tensor): void {
    if (input.address !== output.address) output.copy_(input);
  }
  allGather(input: Tensor, output: Tensor): void {
    if (input.address !== output.address) output.copy_(input);
  }
  broadcast(): void {}
  send(): void {
    throw new DenotronError(`group '${this.name}' has one rank: there is no peer to send to`);
  }
  recv(): void {
    throw new DenotronError(`group '${this.name}' has one rank: there is no peer to receive from`);
  }
  barrier(): void {}
  abort(): void {}
  readonly failed = false;
  close(): void {}
}

/**
 * A group of the native library's `dn_comm_*` handles: shared memory on the CPU library,
 * NCCL on the CUDA library (the same calls; the handle knows its engine). Create it with
 * {@link newProcessGroup}.
 */
export class NativeProcessGroup implements ProcessGroup {
  readonly backend: "shm" | "nccl";
  readonly name: string;
  readonly rank: number;
  readonly size: number;
  readonly ranks: readonly number[];
  readonly device: Device;
  #handle: Deno.PointerObject | null;
  #failed = false;

  /** @internal opened by newProcessGroup */
  constructor(
    name: string,
    ranks: readonly number[],
    rank: number,
    handle: Deno.PointerObject,
    device: Device,
    backend: "shm" | "nccl" = "shm",
  ) {
    this.backend = backend;
    this.name = name;
    this.ranks = ranks;
    this.rank = rank;
    this.size = ranks.length;
    this.#handle = handle;
    this.device = device;
  }

  get #h(): Deno.PointerObject {
    if (!this.#handle) throw new DenotronError(`process group '${this.name}' is closed`);
    return this.#handle;
  }

  #check(status: number, what: string): void {
    if (status !== 0) this.#failed = true;
    this.device.lib.check(status, `${what} on group '${this.name}'`);
  }

  get failed(): boolean {
    return this.#failed;
  }

  allReduce(t: Tensor, op: ReduceOp = "sum"): void {
    const s = this.device.lib.sym;
    this.#check(
      s.dn_comm_allreduce(this.#h, DTYPE_CODE[t.dtype], OP_CODE[op], t.ptr, t.ptr, BigInt(t.numel)),
      "allReduce",
    );
  }

  allReduceStart(t: Tensor, op: ReduceOp = "sum"): void {
    const s = this.device.lib.sym;
    this.#check(
      s.dn_comm_allreduce_start(this.#h, DTYPE_CODE[t.dtype], OP_CODE[op], t.ptr, BigInt(t.numel)),
      "allReduceStart",
    );
  }

  wait(): void {
    this.#check(this.device.lib.sym.dn_comm_wait(this.#h), "wait");
  }

  reduceScatter(input: Tensor, output: Tensor, op: ReduceOp = "sum"): void {
    checkSameSize(input, output, "reduceScatter");
    const want = shardRange(input.numel, this.rank, this.size).length;
    if (output.numel !== want) {
      throw new DenotronError(
        `reduceScatter on group '${this.name}': rank ${this.rank}'s shard of ${input.numel} elements has ${want}, the output has ${output.numel}`,
      );
    }
    const s = this.device.lib.sym;
    this.#check(
      s.dn_comm_reduce_scatter(
        this.#h,
        DTYPE_CODE[input.dtype],
        OP_CODE[op],
        input.ptr,
        output.ptr,
        BigInt(input.numel),
      ),
      "reduceScatter",
    );
  }

  allGather(input: Tensor, output: Tensor): void {
    checkSameSize(input, output, "allGather");
    const want = shardRange(output.numel, this.rank, this.size).length;
    if (input.numel !== want) {
      throw new DenotronError(
        `allGather on group '${this.name}': rank ${this.rank}'s shard of ${output.numel} elements has ${want}, the input has ${input.numel}`,
      );
    }
    const s = this.device.lib.sym;
    this.#check(
      s.dn_comm_all_gather(
        this.#h,
        DTYPE_CODE[input.dtype],
        input.ptr,
        output.ptr,
        BigInt(output.numel),
      ),
      "allGather",
    );
  }

  broadcast(t: Tensor, root: number): void {
    const s = this.device.lib.sym;
    this.#check(
      s.dn_comm_broadcast(this.#h, DTYPE_CODE[t.dtype], t.ptr, BigInt(t.numel), root),
      "broadcast",
    );
  }

  send(t: Tensor, peer: number): void {
    const s = this.device.lib.sym;
    this.#check(s.dn_comm_send(this.#h, DTYPE_CODE[t.dtype], t.ptr, BigInt(t.numel), peer), "send");
  }

  recv(t: Tensor, peer: number): void {
    const s = this.device.lib.sym;
    this.#check(s.dn_comm_recv(this.#h, DTYPE_CODE[t.dtype], t.ptr, BigInt(t.numel), peer), "recv");
  }

  barrier(): void {
    this.#check(this.device.lib.sym.dn_comm_barrier(this.#h), "barrier");
  }

  abort(): void {
    this.#failed = true;
    if (this.#handle) this.device.lib.sym.dn_comm_abort(this.#handle);
  }

  close(): void {
    if (!this.#handle) return;
    const h = this.#handle;
    this.#handle = null;
    this.#check(this.device.lib.sym.dn_comm_close(h), "close");
  }
}

/**
 * Creates the group of `ranks` (global ranks, in group-rank order). Every member must
 * call it, with the same arguments and in the same order relative to its other groups;
 * a process that is not a member gets null without communicating.
 *
 * The shm backend: the first member creates the segment `/denotron-<runId>-<name>` and
 * publishes its name in the store; the others open it; after a store barrier the name
 * is unlinked, so the segment disappears with the last process even after a crash.
 *
 * @param store the rendezvous store
 * @param runId this job's id (segment names)
 * @param globalRank this process's global rank
 * @param ranks the members' global ranks
 * @param name the group's name, unique in the job
 * @param options backend, timeout, slot size, device
 * @returns this process's handle, or null when it is not a member
 */
export async function newProcessGroup(
  store: StoreClient,
  runId: string,
  globalRank: number,
  ranks: readonly number[],
  name: string,
  options: ProcessGroupOptions = {},
): Promise<ProcessGroup | null> {
  const dev = options.device ?? defaultDevice();
  const backend = chooseBackend(dev, options.backend ?? commBackendFromEnv(), name);
  const rank = ranks.indexOf(globalRank);
  if (rank < 0) return null;
  if (new Set(ranks).size !== ranks.length) {
    throw new DenotronError(`process group '${name}': ranks ${ranks.join(",")} repeat a rank`);
  }
  if (ranks.length === 1 && !options.communicatorForOne) {
    return new SingleProcessGroup(name, globalRank);
  }
  if (backend === "staged") {
    const inner = await newProcessGroup(store, runId, globalRank, ranks, name, {
      ...options,
      backend: "shm",
      device: defaultDevice("cpu"),
    });
    return new StagedProcessGroup(inner!);
  }
  if (backend === "nccl") {
    return await openNccl(
      store,
      ranks,
      rank,
      name,
      dev,
      options.timeoutMs ?? distributedTimeoutMs(),
    );
  }
  const timeoutMs = options.timeoutMs ?? distributedTimeoutMs();
  const slotBytes = options.slotBytes ?? envInt("DENOTRON_SHM_SLOT_BYTES") ?? 8 << 20;
  const lib = dev.lib;
  const key = `pg/${name}/segment`;
  const out = new BigUint64Array(1);
  let segment: string;
  if (rank === 0) {
    segment = `/denotron-${runId}-${name}`;
    // A segment left by an earlier run with the same id would make the create fail.
    lib.sym.dn_comm_shm_unlink(cString(segment));
    lib.check(
      lib.sym.dn_comm_shm_open(
        cString(segment),
        0,
        ranks.length,
        BigInt(slotBytes),
        BigInt(timeoutMs),
        out,
      ),
      `creating process group '${name}'`,
    );
    await store.set(key, segment);
  } else {
    segment = await store.get(key);
    lib.check(
      lib.sym.dn_comm_shm_open(
        cString(segment),
        rank,
        ranks.length,
        BigInt(slotBytes),
        BigInt(timeoutMs),
        out,
      ),
      `joining process group '${name}' as rank ${rank}`,
    );
  }
  const pg = new NativeProcessGroup(name, ranks, rank, Deno.UnsafePointer.create(out[0])!, dev);
  try {
    await store.barrier(`pg/${name}/opened`, ranks.length);
  } catch (e) {
    if (rank === 0) lib.sym.dn_comm_shm_unlink(cString(segment));
    pg.close();
    throw e;
  }
  if (rank === 0) lib.check(lib.sym.dn_comm_shm_unlink(cString(segment)), `unlinking ${segment}`);
  return pg;
}

/**
 * The backend for a group whose tensors live on `dev`: `asked` when given and possible,
 * else shm for CPU tensors and nccl for CUDA tensors.
 *
 * @param dev where the group's tensors live
 * @param asked DENOTRON_COMM or options.backend, if set
 * @param name the group, for messages
 * @returns the backend
 * @throws DenotronError when `asked` cannot carry tensors of `dev` (shm: CPU only; nccl:
 *   CUDA only), or is not a backend
 * @example
 * ```ts
 * import { chooseBackend } from "./process_group.ts";
 * import { device } from "../device.ts";
 * console.log(chooseBackend(device("cpu"), undefined, "dp-0")); // "shm"
 * ```
 */
export function chooseBackend(dev: Device, asked: Backend | undefined, name: string): Backend {
  const cuda = dev.type !== "cpu";
  const backend = asked ?? (cuda ? "nccl" : "shm");
  if (backend !== "shm" && backend !== "staged" && backend !== "nccl") {
    throw new DenotronError(
      `process group '${name}': unknown backend '${backend}' (shm, staged, nccl)`,
    );
  }
  if (backend === "shm" && cuda) {
    throw new DenotronError(
      `process group '${name}': the shm backend reduces CPU tensors, and the tensors are on ` +
        `${dev.name}; use nccl (one GPU per rank), or DENOTRON_COMM=staged (host copies, ` +
        `several ranks on one GPU)`,
    );
  }
  if (backend === "nccl" && !cuda) {
    throw new DenotronError(
      `process group '${name}': the nccl backend reduces CUDA tensors, and the tensors are on ` +
        `${dev.name}; CPU ranks use shm (unset DENOTRON_COMM)`,
    );
  }
  return backend;
}

/** Bytes of an NCCL unique id (ncclUniqueId). */
const NCCL_ID_BYTES = 128;

/**
 * Joins an NCCL group: group rank 0 draws the unique id and publishes it (hex) in the
 * store; every member reads it and opens its communicator, then all meet at a store
 * barrier, so a member that failed to join makes the others fail there instead of
 * waiting inside NCCL.
 */
async function openNccl(
  store: StoreClient,
  ranks: readonly number[],
  rank: number,
  name: string,
  dev: Device,
  timeoutMs: number,
): Promise<ProcessGroup> {
  const lib = dev.lib;
  const key = `pg/${name}/nccl-id`;
  const id = new Uint8Array(NCCL_ID_BYTES);
  if (rank === 0) {
    lib.check(lib.sym.dn_comm_nccl_unique_id(id), `drawing the NCCL id of group '${name}'`);
    await store.set(key, [...id].map((b) => b.toString(16).padStart(2, "0")).join(""));
  } else {
    const hex = await store.get(key);
    if (!/^[0-9a-f]{256}$/.test(hex)) {
      throw new DenotronError(`process group '${name}': the store's NCCL id is not 128 bytes`);
    }
    for (let i = 0; i < NCCL_ID_BYTES; i++) id[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  }
  const out = new BigUint64Array(1);
  lib.check(
    lib.sym.dn_comm_nccl_open(id, rank, ranks.length, BigInt(timeoutMs), out),
    `joining NCCL group '${name}' as rank ${rank} of ${ranks.length}`,
  );
  const pg = new NativeProcessGroup(
    name,
    ranks,
    rank,
    Deno.UnsafePointer.create(out[0])!,
    dev,
    "nccl",
  );
  try {
    await store.barrier(`pg/${name}/opened`, ranks.length);
  } catch (e) {
    pg.abort();
    pg.close();
    throw e;
  }
  return pg;
}
