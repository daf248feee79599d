/**
 * defines: Linear, LayerNorm, RMSNorm, Norm, makeNorm, Embedding — the building blocks
 * with parameters.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { add } from "../ops/elementwise.ts";
import { embedding } from "../ops/embedding.ts";
import { layernorm } from "../ops/layernorm.ts";
import { rmsnorm } from "../ops/rmsnorm.ts";
import { linear } from "../ops/matmul.ts";
import { type DType, Tensor } from "../tensor.ts";
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

/**
 * The transformer's input: token embedding, plus a position embedding with learned
 * positions, plus a token-type (segment) embedding when there are token types (BERT),
 * and the sum normalised when the model normalises after each residual (BERT's post-LN).
 */
export class Embedding extends Module {
  /** (rows, C), rows >= V (vocabulary padding: zero rows); tied to the output layer in GPT. */
  readonly wte: Tensor;
  /** (maxT, C); null without learned positions (maxPositions 0: rotary positions). */
  readonly wpe: Tensor | null;
  /** (token types, C); null without token types. */
  readonly wtt: Tensor | null;
  /** LayerNorm of the sum (BERT's embeddings.LayerNorm); null: none. */
  readonly ln: LayerNorm | null;
  /** V: the tokens that exist; wte rows past it are padding. */
  readonly vocabSize: number;
  /**
   * Creates the embedding tables (normal init; padding rows zero); with maxPositions 0,
   * no position table.
   *
   * @param vocabSize V
   * @param maxPositions rows of the position table; 0: none
   * @param width C
   * @param opts rows: wte rows, vocabSize rounded up for aligned GEMMs (default vocabSize);
   *   tokenTypes: rows of the token-type table (default 0: none); norm: a LayerNorm of the
   *   sum with this epsilon (default none)
   */
  constructor(
    vocabSize: number,
    maxPositions: number,
    width: number,
    opts: {
      std?: number;
      device: Device;
      dtype?: DType;
      rows?: number;
      tokenTypes?: number;
      norm?: { eps: number };
    },
  ) {
    super();
    this.vocabSize = vocabSize;
    const normal = { kind: "normal", std: opts.std ?? 0.02 } as const;
    this.wte = this.param(
      "wte",
      [opts.rows ?? vocabSize, width],
      { ...normal, rows: vocabSize },
      opts.device,
      opts.dtype,
    );
    this.wpe = maxPositions > 0
      ? this.param("wpe", [maxPositions, width], normal, opts.device, opts.dtype)
      : null;
    const types = opts.tokenTypes ?? 0;
    this.wtt = types > 0
      ? this.param("wtt", [types, width], normal, opts.device, opts.dtype)
      : null;
    this.ln = opts.norm
      ? this.child(
        "ln",
        new LayerNorm(width, { ...opts.norm, device: opts.device, dtype: opts.dtype }),
      )
      : null;
  }
  /**
   * int32 (B,T) → (B,T,C)
   *
   * @param tokens the token ids
   * @param positions int32 (B,T): each token's position (packed documents) @default 0..T-1
   * @param tokenTypes int32 (B,T): each token's segment, in [0, token types) @default all 0
   */
  forward(tokens: Tensor, positions?: Tensor, tokenTypes?: Tensor): Tensor {
    const T = tokens.shape[1] ?? 0;
    // (the kernel checks this itself when it adds the positions 0..T-1)
    if (positions && this.wpe && T > this.wpe.shape[0]) {
      throw new DenotronError(
        `Embedding: sequence length ${T} exceeds the ${this.wpe.shape[0]} positions of wpe`,
      );
    }
    if (tokenTypes && !this.wtt) {
      throw new DenotronError("Embedding: tokenTypes given, but the model has no token types");
    }
    let x = !positions || !this.wpe
      ? embedding(tokens, this.wte, this.wpe, this.vocabSize)
      // The position rows gathered as a table of their own (the same kernel), then added.
      : add(
        embedding(tokens, this.wte, null, this.vocabSize),
        embedding(positions, this.wpe, null),
      );
    if (this.wtt) x = add(x, this.#tokenTypeRows(tokens, tokenTypes));
    return this.ln ? this.ln.forward(x) : x;
  }

  /** wtt's row of each token's type (B,T,C); type 0 everywhere without tokenTypes. */
  #tokenTypeRows(tokens: Tensor, tokenTypes?: Tensor): Tensor {
    const wtt = this.wtt!;
    if (!tokenTypes) {
      const zeros = Tensor.zeros(tokens.shape, { dtype: "i32", device: tokens.device });
      const rows = embedding(zeros, wtt, null);
      // backward reads the ids; without a graph nothing does
      if (!rows.gradFn) zeros.dispose();
      return rows;
    }
    if (
      tokenTypes.ndim !== tokens.ndim || tokenTypes.shape.some((d, i) => d !== tokens.shape[i])
    ) {
      throw new DenotronError(
        `Embedding: tokenTypes ${fmtShape(tokenTypes.shape)} must have the shape of tokens ${
          fmtShape(tokens.shape)
        }`,
      );
    }
    try {
      return embedding(tokenTypes, wtt, null);
    } catch (e) {
      // the kernel names the bad value as a token; say which input held it
      throw new DenotronError(`Embedding: tokenTypes: ${(e as Error).message}`);
    }
  }
}
