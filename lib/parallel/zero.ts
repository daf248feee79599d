/**
 * defines: DistributedOptimizer, DistributedOptimizerOptions, saveOptimizerShards,
 *          loadOptimizerShards, readOptimizerShards, FlatOptimizerState,
 *          distributedBytesPerParameter
 *
 * The distributed optimizer (ZeRO stage 1, as in Megatron-LM's `--use-distributed-optimizer`):
 * each data-parallel rank owns one shard of every gradient bucket. Per step:
 *
 * 1. backward reduce-scatters each bucket: a rank receives the averaged gradient of its
 *    shard only ({@linkcode DataParallel} with `reduceScatter: true`);
 * 2. AdamW updates the rank's shard of the fp32 parameters and keeps Adam's moments for
 *    that shard only — one `dn_adamw` call over the shard's slices of the parameters;
 * 3. each bucket's parameters are all-gathered, so every replica holds the whole model.
 *
 * Bytes per parameter and rank, with d data-parallel ranks (Megatron's accounting):
 *
 * | parameters / gradients | plain data parallel | distributed optimizer |
 * | --- | --- | --- |
 * | fp32 / fp32 (this file) | 4 + 4 + 8 = 16 | 4 + 4 + 8/d |
 * | bf16 / fp32 (needs the mixed-precision optimizer) | 2 + 4 + 12 = 18 | 2 + 4 + 12/d = 6 + 12/d |
 *
 * In fp32 the model's parameters are the optimizer's main parameters, so no extra copy
 * is kept. With bf16 or fp16 parameters each rank keeps an fp32 main copy of its shard
 * only (4/d): the reduce-scattered fp32 gradients, `dn_adamw_mixed` on the shard (it
 * writes the rounded 16-bit copy of the shard) and an all-gather of the 16-bit
 * parameters. The norm and fp16's overflow check over the shards are the training
 * optimizer's (lib/train/optimizer.ts: each rank reads its shard, reduced over the group).
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import { readSafetensors, tensorEntry, typedView, writeSafetensors } from "../io/safetensors.ts";
import { type AdamWLists, type AdamWOptions, fusedAdamW } from "../optim/adamw.ts";
import type { ParameterBytes } from "../optim/mixed_precision.ts";
import { type DType, DTYPE_BYTES, Tensor } from "../tensor.ts";
import type { DataParallel } from "./ddp.ts";

/** Options of {@link DistributedOptimizer}: AdamW's. */
export type DistributedOptimizerOptions = AdamWOptions;

/**
 * Bytes per parameter and rank with the distributed optimizer over `d` data-parallel
 * ranks (Megatron's table): fp32 4 + 4 + 8/d; bf16 or fp16 parameters with fp32
 * gradients 2 + 4 + 12/d (main parameters and both moments are sharded).
 *
 * @param dtype the model's parameter dtype
 * @param d the data-parallel size
 * @returns bytes per parameter by component
 * @example
 * ```ts
 * import { distributedBytesPerParameter } from "./zero.ts";
 * console.log(distributedBytesPerParameter("bf16", 4).total); // 9
 * ```
 */
export function distributedBytesPerParameter(dtype: DType, d: number): ParameterBytes {
  if (dtype === "i32") throw new DenotronError("parameters are float, not i32");
  if (!(Number.isInteger(d) && d >= 1)) {
    throw new DenotronError(`the data-parallel size must be a positive integer, got ${d}`);
  }
  const modelParams = DTYPE_BYTES[dtype], grads = 4;
  const mainParams = dtype === "f32" ? 0 : 4 / d;
  const adamMoments = 8 / d;
  return {
    modelParams,
    grads,
    mainParams,
    adamMoments,
    total: modelParams + grads + mainParams + adamMoments,
  };
}

/** One slice of a parameter that this rank updates: flat offset, length, decay. */
export interface Piece {
  /** First element in the flat buffers. */
  offset: number;
  /** Elements. */
  length: number;
  /** Whether weight decay applies. */
  decay: boolean;
}

/**
 * AdamW over this rank's shard; see the module documentation.
 *
 * @example
 * ```ts ignore
 * const ddp = new DataParallel(model.params, groups.data, { reduceScatter: true });
 * const opt = new DistributedOptimizer(ddp, { lr: 1e-3 });
 * model.loss(x, y).backward();
 * ddp.finishGradSync();
 * opt.step(lr, opt.clipScale(1.0));
 * ```
 */
export class DistributedOptimizer {
  /** The hyper-parameters, defaults filled in. */
  readonly options: Required<AdamWOptions>;
  /** The data parallelism whose reduce-scattered gradient shards it consumes. */
  readonly ddp: DataParallel;
  /** Steps taken. */
  stepCount = 0;
  /** First moments of this rank's shard (compact: the pieces one after another). */
  readonly m: Tensor;
  /** Second moments of this rank's shard. */
  readonly v: Tensor;
  /** fp32 main parameters of this rank's shard (compact); null for an fp32 model. */
  readonly main: Tensor | null;
  /** The parameter slices this rank updates, in flat-buffer coordinates. */
  readonly pieces: readonly Readonly<Piece>[];
  readonly #lists: AdamWLists;

  /**
   * Allocates the moments (and fp32 main parameters) of this rank's shard.
   *
   * @param ddp the model's data parallelism, built with `reduceScatter: true`
   * @param opts AdamW's hyper-parameters (Megatron's defaults)
   */
  constructor(ddp: DataParallel, opts: DistributedOptimizerOptions = {}) {
    if (!ddp.reduceScatter) {
      throw new DenotronError(
        "DistributedOptimizer needs DataParallel built with { reduceScatter: true }: with all-reduce every rank would hold every gradient",
      );
    }
    this.ddp = ddp;
    this.options = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, ...opts };
    const o = this.options;
    if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1) || !(o.eps > 0)) {
      throw new DenotronError(
        `DistributedOptimizer: need betas in [0, 1) and eps > 0, got (${o.beta1}, ${o.beta2}), ${o.eps}`,
      );
    }
    const flat = ddp.params;
    const pieces: Piece[] = [];
    for (const b of ddp.buckets) {
      const lo = b.start + b.shard.start, hi = lo + b.shard.length;
      for (const e of flat.entries) {
        const s = Math.max(lo, e.offset), t = Math.min(hi, e.offset + e.tensor.numel);
        if (t > s) pieces.push({ offset: s, length: t - s, decay: e.weightDecay });
      }
    }
    pieces.sort((a, b) => a.offset - b.offset);
    this.pieces = pieces;
    const total = pieces.reduce((s, p) => s + p.length, 0);
    const device = flat.data.device;
    this.m = Tensor.zeros([Math.max(total, 1)], { device });
    this.v = Tensor.zeros([Math.max(total, 1)], { device });
    this.main = flat.data.dtype === "f32" ? null : Tensor.zeros([Math.max(total, 1)], { device });
    const at = (t: Tensor, off: number) => t.address + BigInt(off * DTYPE_BYTES[t.dtype]);
    let compact = 0;
    const mOff = pieces.map((p) => (compact += p.length) - p.length);
    this.#lists = {
      n: BigInt(pieces.length),
      params: BigUint64Array.from(pieces, (p) => at(flat.data, p.offset)),
      ...(this.main
        ? { main: BigUint64Array.from(pieces, (_, i) => at(this.main!, mOff[i])) }
        : {}),
      grads: BigUint64Array.from(pieces, (p) => at(flat.grad, p.offset)),
      m: BigUint64Array.from(pieces, (_, i) => at(this.m, mOff[i])),
      v: BigUint64Array.from(pieces, (_, i) => at(this.v, mOff[i])),
      sizes: BigInt64Array.from(pieces, (p) => BigInt(p.length)),
      wd: Float32Array.from(pieces, (p) => (p.decay ? o.weightDecay : 0)),
    };
    this.syncMainFromModel();
  }

  /** Copies this rank's shard of the (16-bit) model parameters into the fp32 main copy. */
  syncMainFromModel(): void {
    if (!this.main) return;
    const all = this.ddp.params.data.toArray() as Float32Array;
    this.main.copyFromHost(this.#compact(all));
  }

  /**
   * The whole optimizer state in the flat buffer's layout, put together from every rank's
   * shard (a collective over the data-parallel group: every rank calls it).
   */
  flatState(): { m: Float32Array; v: Float32Array; main: Float32Array | null } {
    const n = this.ddp.params.data.numel;
    const whole = (compact: Tensor) => {
      const flat = new Float32Array(n); // zero outside this rank's pieces: a sum joins them
      const c = compact.toArray() as Float32Array;
      let k = 0;
      for (const p of this.pieces) {
        flat.set(c.subarray(k, k + p.length), p.offset);
        k += p.length;
      }
      using t = Tensor.fromArray(flat, [n], { device: compact.device });
      this.ddp.group.allReduce(t);
      return t.toArray() as Float32Array;
    };
    return { m: whole(this.m), v: whole(this.v), main: this.main ? whole(this.main) : null };
  }

  /** This rank's pieces of a flat-buffer-shaped array, one after another. */
  #compact(a: Float32Array): Float32Array {
    const out = new Float32Array(this.m.numel);
    let k = 0;
    for (const p of this.pieces) {
      out.set(a.subarray(p.offset, p.offset + p.length), k);
      k += p.length;
    }
    return out;
  }

  /**
   * Bytes per parameter this rank holds, from the buffers' sizes (compare
   * {@linkcode distributedBytesPerParameter}).
   */
  bytesPerParameter(): ParameterBytes {
    const flat = this.ddp.params;
    const n = flat.entries.reduce((s, e) => s + e.tensor.numel, 0);
    const shard = this.shardSize;
    const modelParams = DTYPE_BYTES[flat.data.dtype], grads = DTYPE_BYTES[flat.grad.dtype];
    const mainParams = this.main ? (4 * shard) / n : 0;
    const adamMoments = (8 * shard) / n;
    return {
      modelParams,
      grads,
      mainParams,
      adamMoments,
      total: modelParams + grads + mainParams + adamMoments,
    };
  }

  /** Elements this rank updates. */
  get shardSize(): number {
    return this.pieces.reduce((s, p) => s + p.length, 0);
  }

  /**
   * Updates this rank's shard, then all-gathers the parameters of every bucket.
   *
   * @param lr this step's learning rate @default options.lr
   * @param gradScale multiplies the gradients first (clipping, averaging over micro-batches) @default 1
   */
  step(lr = this.options.lr, gradScale = 1): void {
    const o = this.options;
    const l = this.#lists;
    this.stepCount++;
    const lib = this.m.device.lib;
    fusedAdamW(
      lib,
      this.main ? this.ddp.params.data.dtype : "f32",
      l,
      o,
      lr,
      this.stepCount,
      gradScale,
      "DistributedOptimizer.step",
    );
    for (const b of this.ddp.buckets) {
      using mine = b.data.view([b.shard.length], b.shard.start);
      this.ddp.group.allGather(mine, b.data);
    }
  }

  /** Frees the moment and main-parameter buffers. Safe to call twice. */
  dispose(): void {
    if (this.m.disposed) return;
    this.m.dispose();
    this.v.dispose();
    this.main?.dispose();
  }

  /**
   * Takes this rank's pieces of a whole optimizer state (flat-buffer layout): moments,
   * step count, and the fp32 main parameters when saved (else they restart from the
   * model's parameters).
   *
   * @param s the state, e.g. from {@linkcode readOptimizerShards}
   */
  loadFlatState(s: FlatOptimizerState): void {
    this.m.copyFromHost(this.#compact(s.m));
    this.v.copyFromHost(this.#compact(s.v));
    if (this.main && s.main) this.main.copyFromHost(this.#compact(s.main));
    else this.syncMainFromModel();
    this.stepCount = s.stepCount;
  }
}

const shardFile = (dir: string, rank: number, size: number) =>
  `${dir}/optimizer_shard_${String(rank).padStart(3, "0")}_of_${
    String(size).padStart(3, "0")
  }.safetensors`;

/**
 * Writes this rank's optimizer shard to `dir` (every rank of the data-parallel group
 * calls it; each writes its own file). The file keeps the moments with the flat-buffer
 * ranges they belong to, so it loads into any data-parallel size.
 *
 * @param dir the checkpoint directory (created if missing)
 * @param opt the optimizer
 * @returns the file written
 */
export async function saveOptimizerShards(dir: string, opt: DistributedOptimizer): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const g = opt.ddp.group;
  const n = opt.shardSize;
  const m = (opt.m.toArray() as Float32Array).subarray(0, n);
  const v = (opt.v.toArray() as Float32Array).subarray(0, n);
  const ranges = Int32Array.from(opt.pieces.flatMap((p) => [p.offset, p.length]));
  const path = shardFile(dir, g.rank, g.size);
  const tensors = new Map([
    ["m", tensorEntry("F32", [n], m)],
    ["v", tensorEntry("F32", [n], v)],
    ["ranges", tensorEntry("I32", [opt.pieces.length, 2], ranges)],
  ]);
  if (opt.main) {
    tensors.set(
      "main",
      tensorEntry("F32", [n], (opt.main.toArray() as Float32Array).subarray(0, n)),
    );
  }
  await writeSafetensors(path, {
    tensors,
    metadata: {
      format: "denotron-optimizer-shard",
      stepCount: String(opt.stepCount),
      dataParallelRank: String(g.rank),
      dataParallelSize: String(g.size),
      flatSize: String(opt.ddp.params.data.numel),
    },
  });
  return path;
}

/** A whole optimizer state laid out like the flat parameter buffer. */
export interface FlatOptimizerState {
  /** First moments. */
  m: Float32Array;
  /** Second moments. */
  v: Float32Array;
  /** fp32 main parameters; null when the run kept none (fp32) or did not save them. */
  main: Float32Array | null;
  /** Steps taken. */
  stepCount: number;
  /** The data-parallel size that wrote it (1 for an unsharded checkpoint). */
  dataParallelSize: number;
}

/**
 * Reads the optimizer shards found in `dir`, whatever data-parallel size wrote them,
 * and lays every saved range out over the flat buffer.
 *
 * @param dir the checkpoint directory
 * @param flatSize elements of the model's flat buffer (checked against the shards)
 * @returns the whole state, or null when `dir` holds no shards
 */
export async function readOptimizerShards(
  dir: string,
  flatSize: number,
): Promise<FlatOptimizerState | null> {
  const files = [...Deno.readDirSync(dir)]
    .map((e) => e.name.match(/^optimizer_shard_(\d+)_of_(\d+)\.safetensors$/))
    .filter((m): m is RegExpMatchArray => m !== null);
  if (files.length === 0) return null;
  const size = Number(files[0][2]);
  if (files.length !== size || files.some((f) => Number(f[2]) !== size)) {
    throw new DenotronError(
      `${dir}: expected ${size} optimizer shards of one run, found ${
        files.map((f) => f[0]).join(", ")
      }`,
    );
  }
  const m = new Float32Array(flatSize), v = new Float32Array(flatSize);
  let main: Float32Array | null = null;
  let step: number | undefined;
  for (const f of files) {
    const file = await readSafetensors(`${dir}/${f[0]}`);
    const meta = file.metadata ?? {};
    if (Number(meta.flatSize) !== flatSize) {
      throw new DenotronError(
        `${dir}/${
          f[0]
        } was saved from a model of ${meta.flatSize} flat elements, this one has ${flatSize}`,
      );
    }
    const s = Number(meta.stepCount);
    if (step !== undefined && s !== step) {
      throw new DenotronError(`${dir}: shards disagree on the step`);
    }
    step = s;
    const ranges = typedView(file.tensors.get("ranges")!) as Int32Array;
    const parts: [Float32Array, Float32Array][] = [
      [m, typedView(file.tensors.get("m")!) as Float32Array],
      [v, typedView(file.tensors.get("v")!) as Float32Array],
    ];
    const savedMain = file.tensors.get("main");
    if (savedMain) {
      main ??= new Float32Array(flatSize);
      parts.push([main, typedView(savedMain) as Float32Array]);
    }
    let k = 0;
    for (let i = 0; i < ranges.length; i += 2) {
      for (const [to, from] of parts) to.set(from.subarray(k, k + ranges[i + 1]), ranges[i]);
      k += ranges[i + 1];
    }
  }
  return { m, v, main, stepCount: step!, dataParallelSize: size };
}

/**
 * Loads the optimizer shards found in `dir` into `opt`, whatever data-parallel size
 * wrote them: the saved ranges are laid out over the flat buffer, then this rank takes
 * its own pieces.
 *
 * @param dir the checkpoint directory
 * @param opt the optimizer to fill
 * @returns the data-parallel size that wrote the checkpoint
 */
export async function loadOptimizerShards(dir: string, opt: DistributedOptimizer): Promise<number> {
  const s = await readOptimizerShards(dir, opt.ddp.params.data.numel);
  if (!s) throw new DenotronError(`${dir} holds no optimizer_shard_*_of_*.safetensors`);
  opt.loadFlatState(s);
  return s.dataParallelSize;
}
