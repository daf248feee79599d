/**
 * The training optimizer: it owns the whole optimizer step, as Megatron's does.
 *
 * defines: TrainOptimizer, TrainOptimizerOptions, OptimizerStepResult, GradOwnership,
 *          OptimizerState, gradScalerFrom
 *
 * One `step(lr, gradDivisor)`, after backward and the gradient reductions:
 *
 * 1. One native read of the gradient elements this rank owns (`GradOwnership.ranges`):
 *    their squared norm, and for 16-bit models their overflow flag too (`dn_grad_check`).
 *    Ownership counts each element of the single-process model once: a tensor-parallel
 *    shard on its rank, a replicated tensor on tensor rank 0, the tied embedding on the
 *    first stage, a ZeRO shard on its data-parallel rank.
 * 2. The flag (MAX) and the squares (SUM) are reduced over the group whose ranks
 *    together own every element once, so every rank takes the same decision.
 * 3. fp16: the loss scaler learns whether the step overflowed; an overflow skips the
 *    update (parameters, moments and step count untouched). Without a scaler, non-finite
 *    gradients refuse the step under `checkForNanInLossAndGrad` (the trainer stops with
 *    an error naming it) and are applied without it.
 * 4. The clip factor, then the update rule — AdamW, AdamW with fp32 main weights, or the
 *    distributed optimizer (ZeRO-1), which all-gathers the updated shards.
 *
 * The gradients hold `lossScale · gradDivisor` times the batch gradient: the step
 * unscales them inside the update, so no extra pass over the buffer is needed.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import type { FlatParameters } from "../nn/module.ts";
import { AdamW } from "../optim/adamw.ts";
import { clipFactor } from "../optim/clip.ts";
import { ConstantGradScaler, DynamicGradScaler, type GradScaler } from "../optim/grad_scaler.ts";
import { MixedPrecisionAdamW, type ParameterBytes } from "../optim/mixed_precision.ts";
import type { DataParallel } from "../parallel/ddp.ts";
import { type ProcessGroup, reduceNumber } from "../parallel/process_group.ts";
import { DistributedOptimizer } from "../parallel/zero.ts";
import type { Device } from "../device.ts";
import { DTYPE_CODE, type Tensor } from "../tensor.ts";
import type { TrainConfig } from "./config.ts";

/** Which gradient elements a rank counts in the global norm, and who counts the rest. */
export interface GradOwnership {
  /** Ranges of the flat gradient buffer this rank counts (each element once in the world). */
  ranges: readonly { offset: number; length: number }[];
  /** The ranks that together count every element once; null: this rank alone. */
  group: ProcessGroup | null;
}

/** What one optimizer step did. */
export interface OptimizerStepResult {
  /** True when the gradients overflowed and nothing was updated. */
  skipped: boolean;
  /**
   * True when the gradients were not finite and the step was refused instead of skipped
   * (`checkForNanInLossAndGrad` without a loss scaler): nothing was updated.
   */
  refused?: boolean;
  /** Global norm of the batch gradient, before clipping (Infinity when skipped). */
  gradNorm: number;
  /** The loss scale this step's backward used (fp16). */
  lossScale?: number;
}

/** The whole optimizer state in this rank's flat-buffer layout (for checkpoints). */
export interface OptimizerState {
  /** First moments. */
  m: Float32Array;
  /** Second moments. */
  v: Float32Array;
  /** fp32 main parameters of a 16-bit model; null: the model's own weights are the main copy. */
  main: Float32Array | null;
  /** Steps taken. */
  stepCount: number;
}

/** What a {@link TrainOptimizer} works with. */
export interface TrainOptimizerOptions {
  /** AdamW's hyper-parameters and the clip (the config's training section). */
  training: TrainConfig["training"];
  /** The fp16 loss scaler; null for fp32 and bf16. */
  scaler: GradScaler | null;
  /** ZeRO-1: the reduce-scattering data parallelism whose shards this rank updates. */
  zero?: DataParallel | null;
  /** The gradient elements this rank counts in the norm. */
  ownership: GradOwnership;
}

/**
 * The fp16 loss scaler a configuration asks for (constant with lossScale, else dynamic);
 * null for fp32 and bf16.
 *
 * @param p the config's precision section
 * @returns the scaler, or null
 */
export function gradScalerFrom(p: TrainConfig["precision"]): GradScaler | null {
  if (!p.fp16) return null;
  return p.lossScale !== null ? new ConstantGradScaler(p.lossScale) : new DynamicGradScaler({
    initialScale: p.initialLossScale,
    minScale: p.minLossScale,
    growthInterval: p.lossScaleWindow,
    hysteresis: p.hysteresis,
  });
}

/**
 * The optimizer of a training run; see the module documentation.
 *
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { DEFAULT_CONFIG } from "./config.ts";
 * import { TrainOptimizer } from "./optimizer.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * const opt = new TrainOptimizer(model.params, {
 *   training: DEFAULT_CONFIG.training,
 *   scaler: null,
 *   ownership: { ranges: [{ offset: 0, length: model.params.grad.numel }], group: null },
 * });
 * console.log(opt.step(1e-3, 1).gradNorm); // 0: no backward ran
 * opt.dispose();
 * model.dispose();
 * ```
 */
export class TrainOptimizer {
  /** The update rule. */
  readonly update: AdamW | DistributedOptimizer;
  /** The fp16 loss scaler; null for fp32 and bf16. */
  readonly scaler: GradScaler | null;
  /** Steps skipped because their gradients overflowed. */
  skippedSteps = 0;
  readonly #clipGrad: number;
  readonly #group: ProcessGroup | null;
  /** 16-bit models read the overflow flag with the norm (and skip on it). */
  readonly #checkOverflow: boolean;
  /** Non-finite gradients refuse the step (no loss scaler to skip it for). */
  readonly #refuseNonFinite: boolean;
  readonly #lists: { n: bigint; ptrs: BigUint64Array; sizes: BigInt64Array };
  readonly #grad: Tensor;
  readonly #device: Device;

  /**
   * Builds the update rule for `params` and the pointer lists of the owned gradients.
   *
   * @param params this rank's flat parameters
   * @param o hyper-parameters, scaler, ZeRO and gradient ownership
   */
  constructor(params: FlatParameters, o: TrainOptimizerOptions) {
    const t = o.training;
    const adam = {
      lr: t.lr,
      beta1: t.adamBeta1,
      beta2: t.adamBeta2,
      eps: t.adamEps,
      weightDecay: t.weightDecay,
    };
    if (o.zero && !o.zero.reduceScatter) {
      throw new DenotronError("TrainOptimizer: ZeRO needs DataParallel with reduceScatter");
    }
    this.update = o.zero
      ? new DistributedOptimizer(o.zero, adam)
      : params.data.dtype === "f32"
      ? new AdamW(params, adam)
      : new MixedPrecisionAdamW(params, adam);
    this.scaler = o.scaler;
    this.#clipGrad = t.clipGrad;
    this.#group = o.ownership.group;
    this.#checkOverflow = params.data.dtype !== "f32" || o.scaler !== null;
    this.#refuseNonFinite = t.checkForNanInLossAndGrad !== false && o.scaler === null;
    this.#grad = params.grad;
    this.#device = params.grad.device;
    // ZeRO: a rank's gradients are valid on its shard only, so it owns the intersection.
    const ranges = o.zero
      ? intersect(o.ownership.ranges, (this.update as DistributedOptimizer).pieces)
      : o.ownership.ranges;
    const bytes = 4;
    this.#lists = {
      n: BigInt(ranges.length),
      ptrs: BigUint64Array.from(ranges, (r) => params.grad.address + BigInt(r.offset * bytes)),
      sizes: BigInt64Array.from(ranges, (r) => BigInt(r.length)),
    };
  }

  /** Steps taken (AdamW's bias correction). */
  get stepCount(): number {
    return this.update.stepCount;
  }

  /**
   * One optimizer step: norm, overflow vote, loss-scale update, clip, update.
   *
   * @param lr this step's learning rate
   * @param gradDivisor the gradients hold `lossScale · gradDivisor` times the batch
   *   gradient (e.g. the micro-batch count when each pass differentiated its own mean)
   * @returns whether the step was skipped, and the global gradient norm before clipping
   */
  step(lr: number, gradDivisor: number): OptimizerStepResult {
    const lossScale = this.scaler?.scale ?? 1;
    const scaled = this.scaler ? { lossScale } : {};
    if (this.#checkOverflow) {
      const unscale = 1 / (lossScale * gradDivisor);
      const local = this.#gradCheck(unscale);
      const foundInf = reduceNumber(this.#group, local.foundInf ? 1 : 0, "max", this.#device) !== 0;
      if (foundInf && this.#refuseNonFinite) return { skipped: true, refused: true, gradNorm: NaN };
      this.scaler?.update(foundInf);
      if (foundInf) {
        this.skippedSteps++;
        return { skipped: true, gradNorm: Infinity, ...scaled };
      }
      const gradNorm = Math.sqrt(reduceNumber(this.#group, local.normSq, "sum", this.#device));
      const clip = this.#clipGrad > 0 ? clipFactor(gradNorm, this.#clipGrad) : 1;
      this.update.step(lr, clip * unscale);
      return { skipped: false, gradNorm, ...scaled };
    }
    const divisor = lossScale * gradDivisor;
    const normSq = reduceNumber(this.#group, this.#normSq(), "sum", this.#device);
    const gradNorm = Math.sqrt(normSq) / divisor;
    if (!Number.isFinite(gradNorm) && this.#refuseNonFinite) {
      return { skipped: true, refused: true, gradNorm, ...scaled };
    }
    const clip = this.#clipGrad > 0 ? clipFactor(gradNorm, this.#clipGrad) : 1;
    this.update.step(lr, clip / divisor);
    return { skipped: false, gradNorm, ...scaled };
  }

  /** Squared norm of the owned gradients (fp64 sums, one native call). */
  #normSq(): number {
    const l = this.#lists;
    const out = new Float64Array(1);
    if (l.n === 0n) return 0;
    const lib = this.#grad.device.lib;
    lib.check(
      lib.sym.dn_norm_sq(DTYPE_CODE.f32, l.n, l.ptrs, l.sizes, out),
      "TrainOptimizer: gradient norm",
    );
    return out[0];
  }

  /** Whether `scale · grad` overflows on the owned gradients, and its squared norm. */
  #gradCheck(scale: number): { foundInf: boolean; normSq: number } {
    const l = this.#lists;
    if (l.n === 0n) return { foundInf: false, normSq: 0 };
    const found = new Int32Array(1);
    const normSq = new Float64Array(1);
    const lib = this.#grad.device.lib;
    lib.check(
      lib.sym.dn_grad_check(DTYPE_CODE.f32, l.n, l.ptrs, l.sizes, scale, found, normSq),
      "TrainOptimizer: gradient check",
    );
    return { foundInf: found[0] !== 0, normSq: normSq[0] };
  }

  /**
   * The whole state in this rank's flat layout; under ZeRO the data-parallel shards put
   * together (a collective over the data-parallel group: every rank calls it).
   */
  state(): OptimizerState {
    const u = this.update;
    if (u instanceof DistributedOptimizer) return { ...u.flatState(), stepCount: u.stepCount };
    return {
      m: u.m.toArray() as Float32Array,
      v: u.v.toArray() as Float32Array,
      main: u instanceof MixedPrecisionAdamW ? u.main.toArray() as Float32Array : null,
      stepCount: u.stepCount,
    };
  }

  /**
   * Restores a state saved by {@linkcode TrainOptimizer.state} (any data-parallel size);
   * without saved main parameters, a 16-bit model's fp32 copy restarts from its weights.
   *
   * @param s moments, main parameters and step count in this rank's flat layout
   */
  loadState(s: OptimizerState): void {
    const u = this.update;
    if (u instanceof DistributedOptimizer) {
      u.loadFlatState({ ...s, dataParallelSize: 1 });
      return;
    }
    u.m.copyFromHost(s.m);
    u.v.copyFromHost(s.v);
    u.stepCount = s.stepCount;
    if (u instanceof MixedPrecisionAdamW) {
      if (s.main) u.main.copyFromHost(s.main);
      else u.syncMainFromModel();
    }
  }

  /** Bytes per parameter this rank holds (model, gradients, main copy, moments). */
  bytesPerParameter(): ParameterBytes | null {
    const u = this.update;
    return u instanceof AdamW && !(u instanceof MixedPrecisionAdamW) ? null : u.bytesPerParameter();
  }

  /** Frees the optimizer state. Safe to call twice. */
  dispose(): void {
    if (this.update.m.disposed) return;
    this.update.dispose();
  }
}

/** The parts of `a` that `b` covers too (both sorted by offset, non-overlapping). */
function intersect(
  a: readonly { offset: number; length: number }[],
  b: readonly { offset: number; length: number }[],
): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  let j = 0;
  for (const r of a) {
    const end = r.offset + r.length;
    while (j < b.length && b[j].offset + b[j].length <= r.offset) j++;
    for (let k = j; k < b.length && b[k].offset < end; k++) {
      const lo = Math.max(r.offset, b[k].offset);
      const hi = Math.min(end, b[k].offset + b[k].length);
      if (hi > lo) out.push({ offset: lo, length: hi - lo });
    }
  }
  return out;
}
