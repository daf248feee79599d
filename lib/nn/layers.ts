/**
 * defines: Linear, LayerNorm, RMSNorm, Norm, makeNorm, Embedding — the building blocks
 * with parameters.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { add } from "../ops/elementwise.ts";
import { embedding } from "../ops/embedding.ts";
import { layernorm } from "../ops/layernorm.ts";
import { rmsnorm } from "../ops/rmsnorm.ts";
import { linear } from "../ops/matmul.ts";
import type { DType, Tensor } from "../tensor.ts";
import { type Init, Module } from "./module.ts";

/** y = x Wᵀ + b with W (out, in). */
export class Linear extends Module {
  /** (out, in) */
  readonly weight: Tensor;
  /**  null;|(out), or null without bias. */
  readonly bias: Tensor | null;
  /** Creates W (normal init, std 0.02 unless given) and a zero bias. */
  constructor(
    nIn: number,
    nOut: number,
    opts: { bias?: boolean; std?: number; device: Device; dtype?: DType },
  ) {
    super();
    const init: Init = { kind: "normal", std: opts.std ?? 0.02 };
    this.weight = this.param("weight", [nOut, nIn], init, opts.device, opts.dtype);
    this.bias = (opts.bias ?? true)
      ? this.param("bias", [nOut], { kind: "zeros" }, opts.device, opts.dtype)
      : null;
  }
  /** (..., in) → (..., out) */
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** Layer normalisation over the last dimension, with gain and bias. */
export class LayerNorm extends Module {
  /** Gain (n), initialised to ones. */
  readonly weight: Tensor;
  /** Bias (n), initialised to zeros. */
  readonly bias: Tensor;
  /** Added to the variance. */
  readonly eps: number;
  /** Creates the gain and bias of width n. */
  constructor(n: number, opts: { eps?: number; device: Device; dtype?: DType }) {
    super();
    this.weight = this.param("weight", [n], { kind: "ones" }, opts.device, opts.dtype);
    this.bias = this.param("bias", [n], { kind: "zeros" }, opts.device, opts.dtype);
    this.eps = opts.eps ?? 1e-5;
  }
  /** (..., n) → (..., n) */
  forward(x: Tensor): Tensor {
    return layernorm(x, this.weight, this.bias, this.eps);
  }
}

/** Root-mean-square normalisation over the last dimension, with a gain and no bias (Llama). */
export class RMSNorm extends Module {
  /** Gain (n), initialised to ones. */
  readonly weight: Tensor;
  /** Added to the mean square. */
  readonly eps: number;
  /** Creates the gain of width n. */
  constructor(n: number, opts: { eps?: number; device: Device; dtype?: DType }) {
    super();
    this.weight = this.param("weight", [n], { kind: "ones" }, opts.device, opts.dtype);
    this.eps = opts.eps ?? 1e-5;
  }
  /** (..., n) → (..., n) */
  forward(x: Tensor): Tensor {
    return rmsnorm(x, this.weight, this.eps);
  }
}

/** A normalisation layer of either kind. */
export type Norm = LayerNorm | RMSNorm;

/**
 * The normalisation a model's config asks for.
 *
 * @param kind "layernorm" or "rmsnorm"
 * @param n the width
 * @param opts epsilon, device and dtype
 * @returns the layer
 */
export function makeNorm(
  kind: "layernorm" | "rmsnorm",
  n: number,
  opts: { eps?: number; device: Device; dtype?: DType },
): Norm {
  return kind === "rmsnorm" ? new RMSNorm(n, opts) : new LayerNorm(n, opts);
}

/** GPT's input: token embedding plus, with learned positions, a position embedding. */
export class Embedding extends Module {
  /** (rows, C), rows >= V (vocabulary padding: zero rows); tied to the output layer in GPT. */
  readonly wte: Tensor;
  /** (maxT, C); null without learned positions (maxPositions 0: rotary positions). */
  readonly wpe: Tensor | null;
  /** V: the tokens that exist; wte rows past it are padding. */
  readonly vocabSize: number;
  /**
   * Creates both embedding tables (normal init; padding rows zero); with maxPositions 0,
   * the token table only.
   *
   * @param opts rows: wte rows, vocabSize rounded up for aligned GEMMs @default vocabSize
   */
  constructor(
    vocabSize: number,
    maxPositions: number,
    width: number,
    opts: { std?: number; device: Device; dtype?: DType; rows?: number },
  ) {
    super();
    this.vocabSize = vocabSize;
    this.wte = this.param(
      "wte",
      [opts.rows ?? vocabSize, width],
      { kind: "normal", std: opts.std ?? 0.02, rows: vocabSize },
      opts.device,
      opts.dtype,
    );
    this.wpe = maxPositions > 0
      ? this.param(
        "wpe",
        [maxPositions, width],
        { kind: "normal", std: opts.std ?? 0.02 },
        opts.device,
        opts.dtype,
      )
      : null;
  }
  /**
   * int32 (B,T) → (B,T,C)
   *
   * @param tokens the token ids
   * @param positions int32 (B,T): each token's position (packed documents) @default 0..T-1
   */
  forward(tokens: Tensor, positions?: Tensor): Tensor {
    if (!positions || !this.wpe) return embedding(tokens, this.wte, this.wpe, this.vocabSize);
    // The position rows gathered as a table of their own (the same kernel), then added.
    return add(
      embedding(tokens, this.wte, null, this.vocabSize),
      embedding(positions, this.wpe, null),
    );
  }
}
