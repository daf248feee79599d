/**
 * defines: AdamW — decoupled weight decay Adam over every parameter in one native call.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import type { FlatParameters } from "../nn/module.ts";
import type { NativeLibrary } from "../../ffi/native.ts";
import { type DType, DTYPE_BYTES, DTYPE_CODE, Tensor } from "../tensor.ts";

/**
 * The pointer lists of one fused AdamW call: host arrays of device addresses, one entry
 * per tensor (or tensor slice), built once and reused every step.
 */
export interface AdamWLists {
  /** Number of entries. */
  n: bigint;
  /** The parameters the update writes (16-bit model copies when `main` is given). */
  params: BigUint64Array;
  /** fp32 main parameters, for mixed precision; absent for plain fp32 AdamW. */
  main?: BigUint64Array;
  /** fp32 gradients. */
  grads: BigUint64Array;
  /** fp32 first moments. */
  m: BigUint64Array;
  /** fp32 second moments. */
  v: BigUint64Array;
  /** Elements of each entry. */
  sizes: BigInt64Array;
  /** Weight decay of each entry (0 for biases and norm gains). */
  wd: Float32Array;
}

/**
 * One native AdamW step over every entry of `lists`: `dn_adamw` for fp32 parameters, or
 * `dn_adamw_mixed` (update the fp32 main copy, write the rounded 16-bit parameters) when
 * `lists.main` is given. Shared by AdamW, MixedPrecisionAdamW and the distributed optimizer.
 *
 * @param lib the device's native library
 * @param dtype the dtype of `lists.params`
 * @param lists the pointer lists
 * @param o hyper-parameters
 * @param lr this step's learning rate
 * @param step the step count after this step (bias correction)
 * @param gradScale multiplies the gradients first (clipping, unscaling, averaging)
 * @param what names the caller in errors
 */
export function fusedAdamW(
  lib: NativeLibrary,
  dtype: DType,
  lists: AdamWLists,
  o: Required<AdamWOptions>,
  lr: number,
  step: number,
  gradScale: number,
  what: string,
): void {
  if (lists.n === 0n) return;
  const l = lists;
  const tail = [
    l.grads,
    l.m,
    l.v,
    l.sizes,
    l.wd,
    lr,
    o.beta1,
    o.beta2,
    o.eps,
    BigInt(step),
    gradScale,
  ] as const;
  const code = DTYPE_CODE[dtype];
  lib.check(
    l.main
      ? lib.sym.dn_adamw_mixed(code, l.n, l.params, l.main, ...tail)
      : lib.sym.dn_adamw(code, l.n, l.params, ...tail),
    what,
  );
}

/** AdamW hyper-parameters. Defaults are Megatron-LM's. */
export interface AdamWOptions {
  /** Learning rate. @default 1e-4 */
  lr?: number;
  /** Decay of the first moment. @default 0.9 */
  beta1?: number;
  /** Decay of the second moment. @default 0.999 */
  beta2?: number;
  /** Added to the second moment's root. @default 1e-8 */
  eps?: number;
  /** Applied to matrices only (biases and norm gains are never decayed). @default 0.01 */
  weightDecay?: number;
}

/**
 * AdamW with fp32 moments laid out like the flat parameter buffer. Each `step()` is a
 * single `dn_adamw` call over all tensors; the pointer lists are built once.
 *
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { AdamW } from "./adamw.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * const opt = new AdamW(model.params, { lr: 1e-3 });
 * opt.step(); // gradients are zero here, so only weight decay acts
 * opt.dispose();
 * model.dispose();
 * ```
 */
export class AdamW {
  /** The settings, defaults filled in. */
  readonly options: Required<AdamWOptions>;
  /** Steps taken (bias correction uses step + 1 for the next one). */
  stepCount = 0;
  /** First moments, same layout as the parameters. */
  readonly m: Tensor;
  /** Second moments. */
  readonly v: Tensor;
  readonly #params: FlatParameters;
  readonly #lists: AdamWLists;

  /** Allocates zeroed moments shaped like the flat parameter buffer. */
  constructor(params: FlatParameters, opts: AdamWOptions = {}) {
    this.options = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, ...opts };
    const o = this.options;
    if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1)) {
      throw new DenotronError(`AdamW: betas must be in [0, 1), got (${o.beta1}, ${o.beta2})`);
    }
    if (!(o.eps > 0) || !(o.lr >= 0) || !(o.weightDecay >= 0)) {
      throw new DenotronError(
        `AdamW: need eps > 0, lr >= 0, weightDecay >= 0; got eps=${o.eps} lr=${o.lr} weightDecay=${o.weightDecay}`,
      );
    }
    this.#params = params;
    const device = params.data.device;
    this.m = Tensor.zeros(params.data.shape, { device });
    this.v = Tensor.zeros(params.data.shape, { device });
    const n = params.entries.length;
    const at = (base: Tensor, offset: number) =>
      base.address + BigInt(offset * DTYPE_BYTES[base.dtype]);
    this.#lists = {
      n: BigInt(n),
      params: BigUint64Array.from(params.entries, (e) => at(params.data, e.offset)),
      grads: BigUint64Array.from(params.entries, (e) => at(params.grad, e.offset)),
      m: BigUint64Array.from(params.entries, (e) => at(this.m, e.offset)),
      v: BigUint64Array.from(params.entries, (e) => at(this.v, e.offset)),
      sizes: BigInt64Array.from(params.entries, (e) => BigInt(e.tensor.numel)),
      wd: Float32Array.from(params.entries, (e) => (e.weightDecay ? o.weightDecay : 0)),
    };
  }

  /**
   * Applies one update from the current gradients.
   *
   * @param lr this step's learning rate @default options.lr
   * @param gradScale multiplies the gradients first (clipping, loss-scale unscaling) @default 1
   */
  step(lr = this.options.lr, gradScale = 1): void {
    const o = this.options;
    const l = this.#lists;
    this.stepCount++;
    fusedAdamW(
      this.m.device.lib,
      this.#params.data.dtype,
      l,
      o,
      lr,
      this.stepCount,
      gradScale,
      "AdamW.step",
    );
  }

  /** Frees the moment buffers. */
  dispose(): void {
    this.m.dispose();
    this.v.dispose();
  }
}
