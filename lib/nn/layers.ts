/**
 * defines: Linear, LayerNorm, Embedding — the building blocks with parameters.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { embedding } from "../ops/embedding.ts";
import { layernorm } from "../ops/layernorm.ts";
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

/** GPT's input: token embedding plus learned position embedding. */
export class Embedding extends Module {
  /** (rows, C), rows >= V (vocabulary padding: zero rows); tied to the output layer in GPT. */
  readonly wte: Tensor;
  /** (maxT, C) */
  readonly wpe: Tensor;
  /** V: the tokens that exist; wte rows past it are padding. */
  readonly vocabSize: number;
  /**
   * Creates both embedding tables (normal init; padding rows zero).
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
    this.wpe = this.param(
      "wpe",
      [maxPositions, width],
      { kind: "normal", std: opts.std ?? 0.02 },
      opts.device,
      opts.dtype,
    );
  }
  /** int32 (B,T) → (B,T,C) */
  forward(tokens: Tensor): Tensor {
    return embedding(tokens, this.wte, this.wpe, this.vocabSize);
  }
}
