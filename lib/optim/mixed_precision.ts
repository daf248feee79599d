/**
 * defines: MixedPrecisionAdamW, mixedPrecisionStep, MixedStepOptions, MixedStepResult,
 *          FoundInfReducer, ParameterBytes, parameterBytes, MixedStepOptimizer
 *
 * Megatron's mixed-precision optimizer. The model holds bf16 or fp16 parameters and
 * computes in them; FlatParameters gives it fp32 "main" gradients, into which every
 * micro-batch's backward accumulates; this optimizer keeps fp32 main parameters and
 * fp32 Adam moments. A step is two native calls over all tensors:
 *
 * 1. dn_grad_check: one read of the main gradients gives the overflow flag and the
 *    squared norm of the unscaled gradient (fp64 sums).
 * 2. unless it overflowed: dn_adamw_mixed unscales (and clips) the gradients, updates
 *    main params and moments in fp32, and writes the rounded 16-bit model copy.
 *
 * Between the two, the overflow flag is reduced with MAX over the model-parallel group
 * (a {@linkcode FoundInfReducer} the distributed runtime supplies), so every rank skips
 * or takes the same steps.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import type { FlatParameters } from "../nn/module.ts";
import { type DType, DTYPE_BYTES, DTYPE_CODE, type Tensor } from "../tensor.ts";
import { AdamW, type AdamWLists, type AdamWOptions, fusedAdamW } from "./adamw.ts";
import { clipFactor } from "./clip.ts";
import type { GradScaler } from "./grad_scaler.ts";

/** Bytes per parameter by component (Megatron's table, no distributed optimizer). */
export interface ParameterBytes {
  /** The model's own copy (2 for bf16/fp16, 4 for fp32). */
  modelParams: number;
  /** Gradients: fp32 main gradients in every precision here. */
  grads: number;
  /** fp32 main parameters (0 when the model is fp32: the model copy is the main copy). */
  mainParams: number;
  /** The two fp32 Adam moments. */
  adamMoments: number;
  /** The sum of the above. */
  total: number;
}

/**
 * Bytes per parameter of a run whose model parameters have `dtype`: bf16 or fp16 with
 * fp32 main gradients 18 (2 + 4 + 4 + 8), fp32 16 (4 + 4 + 8), as in Megatron-LM's
 * table for bf16 and fp32. (Megatron's fp16 row, 20, keeps fp16 gradients beside fp32
 * main gradients; here fp16 accumulates straight into fp32 main gradients, as bf16.)
 *
 * @param dtype the model's parameter dtype
 * @returns bytes per parameter by component
 * @example
 * ```ts
 * import { parameterBytes } from "./mixed_precision.ts";
 * console.log(parameterBytes("bf16").total); // 18
 * ```
 */
export function parameterBytes(dtype: DType): ParameterBytes {
  if (dtype === "i32") throw new DenotronError("parameterBytes: parameters are float, not i32");
  const modelParams = DTYPE_BYTES[dtype];
  const mainParams = dtype === "f32" ? 0 : 4;
  const grads = 4, adamMoments = 8;
  return {
    modelParams,
    grads,
    mainParams,
    adamMoments,
    total: modelParams + grads + mainParams + adamMoments,
  };
}

/**
 * AdamW with fp32 main parameters for a model whose parameters are bf16 or fp16 (fp32
 * works too: the model's buffer then is the main copy). Moments and step count are
 * those of {@linkcode AdamW}, so checkpoints treat both alike.
 *
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { MixedPrecisionAdamW } from "./mixed_precision.ts";
 * const model = new GPT(GPT_PRESETS.tiny, { dtype: "bf16" });
 * const opt = new MixedPrecisionAdamW(model.params, { lr: 1e-3 });
 * console.log(opt.bytesPerParameter().total); // 18
 * opt.dispose();
 * model.dispose();
 * ```
 */
export class MixedPrecisionAdamW extends AdamW {
  /** fp32 main parameters, laid out like the model's flat buffer. */
  readonly main: Tensor;
  readonly #params: FlatParameters;
  readonly #ownsMain: boolean;
  readonly #lists: AdamWLists & { main: BigUint64Array };

  /** Copies the 16-bit parameters into fp32 main parameters and allocates the moments. */
  constructor(params: FlatParameters, opts: AdamWOptions = {}) {
    super(params, opts);
    if (params.grad.dtype !== "f32") {
      throw new DenotronError(
        `MixedPrecisionAdamW: the gradients must be fp32 main gradients, got ${params.grad.dtype}`,
      );
    }
    this.#params = params;
    this.#ownsMain = params.data.dtype !== "f32";
    this.main = this.#ownsMain ? params.data.cast("f32") : params.data;
    const at = (base: Tensor, offset: number) =>
      base.address + BigInt(offset * DTYPE_BYTES[base.dtype]);
    const e = params.entries;
    this.#lists = {
      n: BigInt(e.length),
      params: BigUint64Array.from(e, (x) => at(params.data, x.offset)),
      main: BigUint64Array.from(e, (x) => at(this.main, x.offset)),
      grads: BigUint64Array.from(e, (x) => at(params.grad, x.offset)),
      m: BigUint64Array.from(e, (x) => at(this.m, x.offset)),
      v: BigUint64Array.from(e, (x) => at(this.v, x.offset)),
      sizes: BigInt64Array.from(e, (x) => BigInt(x.tensor.numel)),
      wd: Float32Array.from(e, (x) => (x.weightDecay ? this.options.weightDecay : 0)),
    };
  }

  /**
   * One read of every main gradient: whether `scale · grad` holds inf or NaN, and its
   * squared L2 norm (fp64 sums; Infinity on overflow).
   *
   * @param scale usually 1 / (loss scale · micro-batches)
   */
  checkGrads(scale: number): { foundInf: boolean; normSq: number } {
    const l = this.#lists;
    const found = new Int32Array(1);
    const normSq = new Float64Array(1);
    const lib = this.main.device.lib;
    lib.check(
      lib.sym.dn_grad_check(DTYPE_CODE.f32, l.n, l.grads, l.sizes, scale, found, normSq),
      "MixedPrecisionAdamW.checkGrads",
    );
    return { foundInf: found[0] !== 0, normSq: normSq[0] };
  }

  /**
   * Applies one update: main gradients times `gradScale`, AdamW on the fp32 state, then
   * the model's parameters = the main parameters rounded.
   *
   * @param lr this step's learning rate @default options.lr
   * @param gradScale unscale and clip factor, e.g. clip / (loss scale · micro-batches)
   */
  override step(lr = this.options.lr, gradScale = 1): void {
    const o = this.options;
    const l = this.#lists;
    this.stepCount++;
    fusedAdamW(
      this.main.device.lib,
      this.#params.data.dtype,
      l,
      o,
      lr,
      this.stepCount,
      gradScale,
      "MixedPrecisionAdamW.step",
    );
  }

  /** Re-reads the main parameters from the model (after loading 16-bit weights). */
  syncMainFromModel(): void {
    if (!this.#ownsMain) return;
    const lib = this.main.device.lib;
    const d = this.#params.data;
    lib.check(
      lib.sym.dn_cast(DTYPE_CODE.f32, this.main.ptr, DTYPE_CODE[d.dtype], d.ptr, BigInt(d.numel)),
      "MixedPrecisionAdamW.syncMainFromModel",
    );
  }

  /**
   * Bytes per parameter actually held, from the buffers' sizes: model parameters,
   * main gradients, main parameters, moments.
   */
  bytesPerParameter(): ParameterBytes {
    const n = this.#params.data.numel;
    const per = (t: Tensor) => t.bytes / n;
    const modelParams = per(this.#params.data);
    const grads = per(this.#params.grad);
    const mainParams = this.#ownsMain ? per(this.main) : 0;
    const adamMoments = per(this.m) + per(this.v);
    return {
      modelParams,
      grads,
      mainParams,
      adamMoments,
      total: modelParams + grads + mainParams + adamMoments,
    };
  }

  /** Frees the moments and the main parameters. */
  override dispose(): void {
    super.dispose();
    if (this.#ownsMain) this.main.dispose();
  }
}

/**
 * Combines a rank's overflow flag with those of the other ranks that hold parts of the
 * same model (MAX over the model-parallel group). The distributed runtime supplies it;
 * alone, a rank's own flag is the answer.
 */
export type FoundInfReducer = (foundInf: boolean) => boolean;

/** Inputs of {@linkcode mixedPrecisionStep}. */
export interface MixedStepOptions {
  /** This step's learning rate. */
  lr: number;
  /** The loss scaler, or null (bf16, fp32): the loss was not scaled. */
  scaler: GradScaler | null;
  /** The gradient buffer holds the sum of this many micro-batch gradients. @default 1 */
  microBatches?: number;
  /** Clip the unscaled gradient's global norm to this; 0 turns clipping off. @default 0 */
  clipGrad?: number;
  /** MAX over the model-parallel group. @default the rank's own flag */
  reduceFoundInf?: FoundInfReducer;
}

/** What {@linkcode mixedPrecisionStep} did. */
export interface MixedStepResult {
  /** True when the gradients overflowed and no parameter changed. */
  skipped: boolean;
  /** Global norm of the unscaled batch gradient, before clipping (Infinity if skipped). */
  gradNorm: number;
  /** The loss scale this step's backward used. */
  lossScale: number;
}

/**
 * What {@linkcode mixedPrecisionStep} needs from an optimizer: the one-read gradient
 * check and the update ({@linkcode MixedPrecisionAdamW}, or the distributed optimizer,
 * whose check already combines its shards over the data-parallel group).
 */
export interface MixedStepOptimizer {
  /** Whether the gradients overflowed, and their unscaled squared norm. */
  checkGrads(scale: number): { foundInf: boolean; normSq: number };
  /** Unscales and clips by `gradScale`, then updates at rate `lr`. */
  step(lr: number, gradScale: number): void;
}

/**
 * The optimizer half of a mixed-precision step, after backward has filled the main
 * gradients from a loss multiplied by `scaler.scale`: check for overflow, agree on it
 * across the model-parallel group, tell the scaler, and either skip (parameters, moments
 * and step count untouched) or clip and update. The caller zeroes the gradients.
 *
 * @param opt the optimizer
 * @param o learning rate, scaler, micro-batch count, clipping, the found-inf reduction
 * @returns whether the step was skipped, the gradient norm and the loss scale used
 */
export function mixedPrecisionStep(opt: MixedStepOptimizer, o: MixedStepOptions): MixedStepResult {
  const k = o.microBatches ?? 1;
  const lossScale = o.scaler?.scale ?? 1;
  const unscale = 1 / (lossScale * k);
  const check = opt.checkGrads(unscale);
  const foundInf = (o.reduceFoundInf ?? ((f) => f))(check.foundInf);
  o.scaler?.update(foundInf);
  if (foundInf) return { skipped: true, gradNorm: Infinity, lossScale };
  const gradNorm = Math.sqrt(check.normSq);
  const clip = o.clipGrad && o.clipGrad > 0 ? clipFactor(gradNorm, o.clipGrad) : 1;
  opt.step(o.lr, clip * unscale);
  return { skipped: false, gradNorm, lossScale };
}
