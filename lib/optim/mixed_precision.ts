/**
 * defines: MixedPrecisionAdamW, ParameterBytes, parameterBytes
 *
 * Megatron's mixed-precision optimizer. The model holds bf16 or fp16 parameters and
 * computes in them; FlatParameters gives it fp32 "main" gradients, into which every
 * micro-batch's backward accumulates; this optimizer keeps fp32 main parameters and
 * fp32 Adam moments. Its update is one native call over all tensors (dn_adamw_mixed):
 * unscale (and clip) the gradients, update main params and moments in fp32, write the
 * rounded 16-bit model copy. The overflow check, the norm and the loss scale around it
 * belong to the training optimizer (lib/train/optimizer.ts), which owns the whole step.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import type { FlatParameters } from "../nn/module.ts";
import { type DType, DTYPE_BYTES, DTYPE_CODE, type Tensor } from "../tensor.ts";
import { AdamW, type AdamWLists, type AdamWOptions, fusedAdamW } from "./adamw.ts";

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
