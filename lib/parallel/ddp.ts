/**
 * defines: DataParallel, DataParallelOptions, GradBucket, planBuckets,
 *          DEFAULT_BUCKET_SIZE
 *
 * Data parallelism over the flat gradient buffer of {@linkcode FlatParameters}.
 *
 * The buffer is cut into buckets of whole parameters, taken from the last parameter
 * backwards (backward produces the last layers' gradients first). During the backward
 * of the last micro-batch, an autograd hook counts the parameters of each bucket whose
 * gradient is complete; when a bucket is full its gradients are averaged over the
 * data-parallel group at once, while backward continues with earlier layers. On the CPU
 * the collectives are synchronous, so "launched" means "done" there; a GPU backend can
 * overlap them with the rest of backward without changing this code.
 *
 * Two ways to average a bucket:
 * - all-reduce (plain data parallelism): every rank ends with the averaged bucket;
 * - reduce-scatter (the distributed optimizer): each rank ends with the average of its
 *   shard of the bucket only (see {@linkcode DistributedOptimizer}).
 *
 * Earlier micro-batches of a step only accumulate: set `isLastMicroBatch = false` (or
 * run them inside `noSync()`) so their backward does not communicate.
 *
 * @module
 */
import { onGradReady } from "../autograd.ts";
import { DenotronError } from "../errors.ts";
import type { FlatParameters } from "../nn/module.ts";
import { DTYPE_CODE, type Tensor } from "../tensor.ts";
import { type ProcessGroup, shardRange } from "./process_group.ts";

/** Megatron-LM's default bucket size: 40 million elements. */
export const DEFAULT_BUCKET_SIZE = 40_000_000;

/** A contiguous run of whole parameters in the flat buffers. */
export interface GradBucket {
  /** Position in the list (0: the bucket backward fills first). */
  index: number;
  /** First element in the flat buffers. */
  start: number;
  /** One past the last element. */
  end: number;
  /** Its parameters (tensors bound into the flat parameter buffer). */
  params: Tensor[];
  /** The bucket's slice of the flat gradient buffer. */
  grad: Tensor;
  /** The bucket's slice of the flat parameter buffer. */
  data: Tensor;
  /** This rank's shard of the bucket, relative to `start` (see shardRange). */
  shard: { start: number; length: number };
}

/**
 * Cuts the parameters into buckets of at least `bucketSize` elements (the last may be
 * smaller), from the last parameter backwards.
 *
 * @param entries the flat layout: each parameter's offset and size, in buffer order
 * @param total the flat buffer's length (the last bucket ends there, padding included)
 * @param bucketSize elements per bucket
 * @returns each bucket's [start, end) and parameter indices, in the order backward fills them
 */
export function planBuckets(
  entries: readonly { offset: number; numel: number }[],
  total: number,
  bucketSize: number,
): { start: number; end: number; members: number[] }[] {
  if (!(bucketSize >= 1)) throw new DenotronError(`bucketSize must be >= 1, got ${bucketSize}`);
  const out: { start: number; end: number; members: number[] }[] = [];
  let end = total;
  let members: number[] = [];
  for (let i = entries.length - 1; i >= 0; i--) {
    members.push(i);
    const start = entries[i].offset;
    if (end - start >= bucketSize || i === 0) {
      out.push({ start: i === 0 ? 0 : start, end, members });
      end = start;
      members = [];
    }
  }
  return out;
}

/** Options of {@link DataParallel}. */
export interface DataParallelOptions {
  /** Elements per bucket. @default DEFAULT_BUCKET_SIZE */
  bucketSize?: number;
  /** Average with reduce-scatter (for the distributed optimizer) instead of all-reduce. @default false */
  reduceScatter?: boolean;
  /** Start each bucket's reduction during backward; false waits for finishGradSync(). @default true */
  overlap?: boolean;
}

/**
 * Averages the gradients of a model replica over a data-parallel group.
 *
 * @example
 * ```ts ignore
 * const ddp = new DataParallel(model.params, groups.data);
 * for (let i = 0; i < k; i++) {
 *   ddp.isLastMicroBatch = i === k - 1;
 *   model.loss(x[i], y[i]).backward();
 * }
 * ddp.finishGradSync(); // every bucket averaged
 * ```
 */
export class DataParallel {
  /** The data-parallel group gradients are averaged over. */
  readonly group: ProcessGroup;
  /** The model's flat parameters. */
  readonly params: FlatParameters;
  /** The gradient buckets, in the order backward fills them. */
  readonly buckets: readonly GradBucket[];
  /** Whether buckets are reduce-scattered (each rank keeps its shard) instead of all-reduced. */
  readonly reduceScatter: boolean;
  /** Whether a bucket is reduced as soon as backward has filled it. */
  readonly overlap: boolean;
  /** Whether the coming backward is the step's last micro-batch (it communicates). */
  isLastMicroBatch = true;
  readonly #bucketOf = new Map<Tensor, number>();
  readonly #pending: number[];
  readonly #counted = new Set<Tensor>();
  readonly #synced: boolean[];
  /** Buckets whose all-reduce is started and not yet averaged. */
  readonly #started: number[] = [];
  readonly #removeHook: () => void;

  /**
   * Buckets the gradients of `params` and hooks their reduction into backward.
   *
   * @param params the model's flat parameters (fp32 gradients)
   * @param group the data-parallel group
   * @param options bucket size, reduction style, overlap
   */
  constructor(params: FlatParameters, group: ProcessGroup, options: DataParallelOptions = {}) {
    if (params.grad.dtype !== "f32") {
      throw new DenotronError(
        `DataParallel reduces fp32 gradients; the flat gradient buffer is ${params.grad.dtype}`,
      );
    }
    this.group = group;
    this.params = params;
    this.reduceScatter = options.reduceScatter ?? false;
    this.overlap = options.overlap ?? true;
    const plan = planBuckets(
      params.entries.map((e) => ({ offset: e.offset, numel: e.tensor.numel })),
      params.grad.numel,
      options.bucketSize ?? DEFAULT_BUCKET_SIZE,
    );
    this.buckets = plan.map((b, index) => {
      const len = b.end - b.start;
      for (const i of b.members) this.#bucketOf.set(params.entries[i].tensor, index);
      return {
        index,
        start: b.start,
        end: b.end,
        params: b.members.map((i) => params.entries[i].tensor),
        grad: params.grad.view([len], b.start),
        data: params.data.view([len], b.start),
        shard: shardRange(len, group.rank, group.size),
      };
    });
    this.#pending = this.buckets.map((b) => b.params.length);
    this.#synced = this.buckets.map(() => false);
    this.#removeHook = onGradReady((leaf) => this.#gradReady(leaf));
  }

  /** Runs `fn` (forward and backward of a micro-batch) without communication. */
  noSync<T>(fn: () => T): T {
    const before = this.isLastMicroBatch;
    this.isLastMicroBatch = false;
    try {
      return fn();
    } finally {
      this.isLastMicroBatch = before;
    }
  }

  #gradReady(leaf: Tensor): void {
    if (!this.isLastMicroBatch || !this.overlap) return;
    const b = this.#bucketOf.get(leaf);
    if (b === undefined || this.#counted.has(leaf)) return;
    this.#counted.add(leaf);
    if (--this.#pending[b] === 0) this.#syncBucket(b);
  }

  #syncBucket(b: number): void {
    const bucket = this.buckets[b];
    if (this.reduceScatter) {
      using mine = bucket.grad.view([bucket.shard.length], bucket.shard.start);
      this.group.reduceScatter(bucket.grad, mine);
      if (mine.numel > 0) this.#average(mine);
    } else if (this.group.allReduceStart) {
      // started on the group's own stream (NCCL), so it overlaps the rest of backward;
      // the averaging waits for it in finishGradSync
      this.group.allReduceStart(bucket.grad);
      this.#started.push(b);
    } else {
      this.group.allReduce(bucket.grad);
      this.#average(bucket.grad);
    }
    this.#synced[b] = true;
  }

  /** Divides a summed gradient by the group size: the mean over the replicas. */
  #average(t: Tensor): void {
    const lib = t.device.lib;
    lib.check(
      lib.sym.dn_scale(
        DTYPE_CODE.f32,
        1n,
        BigUint64Array.of(t.address),
        BigInt64Array.of(BigInt(t.numel)),
        1 / this.group.size,
      ),
      "DataParallel: averaging a bucket",
    );
  }

  /** Averages the buckets whose started all-reduces the group has finished. */
  #averageStarted(): void {
    if (!this.#started.length) return;
    this.group.wait?.();
    for (const b of this.#started) this.#average(this.buckets[b].grad);
    this.#started.length = 0;
  }

  /**
   * Averages every bucket that backward has not averaged yet (parameters that took no
   * part in the loss, or overlap off), then gets ready for the next step. Call it after
   * the last micro-batch's backward, before reading gradients.
   */
  finishGradSync(): void {
    for (let b = 0; b < this.buckets.length; b++) if (!this.#synced[b]) this.#syncBucket(b);
    this.#averageStarted();
    this.#counted.clear();
    for (let b = 0; b < this.buckets.length; b++) {
      this.#pending[b] = this.buckets[b].params.length;
      this.#synced[b] = false;
    }
  }

  /** Makes every replica start from rank 0's parameters. */
  broadcastParameters(): void {
    this.group.broadcast(this.params.data, 0);
  }

  /** Removes the autograd hook and the bucket views. Safe to call twice. */
  dispose(): void {
    this.#removeHook();
    for (const b of this.buckets) {
      b.grad.dispose();
      b.data.dispose();
    }
  }
}
