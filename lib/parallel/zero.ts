/**
 * defines: DistributedOptimizer, DistributedOptimizerOptions, saveOptimizerShards,
 *          loadOptimizerShards
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
 * is kept; the bf16 row needs an fp32 main copy of the shard (4/d more) and is not
 * built here yet.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import { readSafetensors, tensorEntry, typedView, writeSafetensors } from "../io/safetensors.ts";
import type { AdamWOptions } from "../optim/adamw.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import type { DataParallel } from "./ddp.ts";

/** Options of {@link DistributedOptimizer}: AdamW's. */
export type DistributedOptimizerOptions = AdamWOptions;

/** One slice of a parameter that this rank updates: flat offset, length, decay. */
interface Piece {
  offset: number;
  length: number;
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
  readonly options: Required<AdamWOptions>;
  readonly ddp: DataParallel;
  /** Steps taken. */
  stepCount = 0;
  /** First moments of this rank's shard (compact: the pieces one after another). */
  readonly m: Tensor;
  /** Second moments of this rank's shard. */
  readonly v: Tensor;
  /** The parameter slices this rank updates, in flat-buffer coordinates. */
  readonly pieces: readonly Readonly<Piece>[];
  readonly #lists: {
    n: bigint;
    params: BigUint64Array;
    grads: BigUint64Array;
    m: BigUint64Array;
    v: BigUint64Array;
    sizes: BigInt64Array;
    wd: Float32Array;
  };

  /**
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
    const at = (t: Tensor, off: number) => t.address + BigInt(off * 4);
    let compact = 0;
    const mOff = pieces.map((p) => (compact += p.length) - p.length);
    this.#lists = {
      n: BigInt(pieces.length),
      params: BigUint64Array.from(pieces, (p) => at(flat.data, p.offset)),
      grads: BigUint64Array.from(pieces, (p) => at(flat.grad, p.offset)),
      m: BigUint64Array.from(pieces, (_, i) => at(this.m, mOff[i])),
      v: BigUint64Array.from(pieces, (_, i) => at(this.v, mOff[i])),
      sizes: BigInt64Array.from(pieces, (p) => BigInt(p.length)),
      wd: Float32Array.from(pieces, (p) => (p.decay ? o.weightDecay : 0)),
    };
  }

  /** Elements this rank updates. */
  get shardSize(): number {
    return this.pieces.reduce((s, p) => s + p.length, 0);
  }

  /**
   * The global norm of the averaged gradient: each rank's shard, summed over the group.
   * Call after `ddp.finishGradSync()`.
   */
  gradNorm(): number {
    const lib = this.m.device.lib;
    const local = new Float64Array(1);
    const l = this.#lists;
    if (l.n > 0n) {
      lib.check(lib.sym.dn_norm_sq(DTYPE_CODE.f32, l.n, l.grads, l.sizes, local), "gradNorm");
    }
    // Summed in fp32 in rank order: every rank gets the same value.
    using t = Tensor.fromArray([local[0]], [1], { device: this.m.device });
    this.ddp.group.allReduce(t);
    return Math.sqrt(t.item());
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
    if (l.n > 0n) {
      lib.check(
        lib.sym.dn_adamw(
          DTYPE_CODE.f32,
          l.n,
          l.params,
          l.grads,
          l.m,
          l.v,
          l.sizes,
          l.wd,
          lr,
          o.beta1,
          o.beta2,
          o.eps,
          BigInt(this.stepCount),
          gradScale,
        ),
        "DistributedOptimizer.step",
      );
    }
    for (const b of this.ddp.buckets) {
      using mine = b.data.view([b.shard.length], b.shard.start);
      this.ddp.group.allGather(mine, b.data);
    }
  }

  /** Frees the moment buffers. */
  dispose(): void {
    this.m.dispose();
    this.v.dispose();
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
  await writeSafetensors(path, {
    tensors: new Map([
      ["m", tensorEntry("F32", [n], m)],
      ["v", tensorEntry("F32", [n], v)],
      ["ranges", tensorEntry("I32", [opt.pieces.length, 2], ranges)],
    ]),
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

/**
 * Loads the optimizer shards found in `dir` into `opt`, whatever data-parallel size
 * wrote them: the moments of every saved range are laid out over the flat buffer, then
 * this rank takes its own pieces.
 *
 * @param dir the checkpoint directory
 * @param opt the optimizer to fill
 * @returns the data-parallel size that wrote the checkpoint
 */
export async function loadOptimizerShards(dir: string, opt: DistributedOptimizer): Promise<number> {
  const files = [...Deno.readDirSync(dir)]
    .map((e) => e.name.match(/^optimizer_shard_(\d+)_of_(\d+)\.safetensors$/))
    .filter((m): m is RegExpMatchArray => m !== null);
  if (files.length === 0) {
    throw new DenotronError(`${dir} holds no optimizer_shard_*_of_*.safetensors`);
  }
  const size = Number(files[0][2]);
  if (files.length !== size || files.some((f) => Number(f[2]) !== size)) {
    throw new DenotronError(
      `${dir}: expected ${size} optimizer shards of one run, found ${
        files.map((f) => f[0]).join(", ")
      }`,
    );
  }
  const flatSize = opt.ddp.params.data.numel;
  const m = new Float32Array(flatSize), v = new Float32Array(flatSize);
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
    const fm = typedView(file.tensors.get("m")!) as Float32Array;
    const fv = typedView(file.tensors.get("v")!) as Float32Array;
    let k = 0;
    for (let i = 0; i < ranges.length; i += 2) {
      m.set(fm.subarray(k, k + ranges[i + 1]), ranges[i]);
      v.set(fv.subarray(k, k + ranges[i + 1]), ranges[i]);
      k += ranges[i + 1];
    }
  }
  const mine = (a: Float32Array) => {
    const out = new Float32Array(opt.m.numel);
    let k = 0;
    for (const p of opt.pieces) {
      out.set(a.subarray(p.offset, p.offset + p.length), k);
      k += p.length;
    }
    return out;
  };
  opt.m.copyFromHost(mine(m));
  opt.v.copyFromHost(mine(v));
  opt.stepCount = step!;
  return size;
}
