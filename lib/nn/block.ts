/**
 * defines: Block — one transformer layer (LayerNorm or RMSNorm), normalising before each
 * branch (GPT-2, Llama) or after each residual (BERT).
 *
 * @module
 */
import type { Device } from "../device.ts";
import { add, addScaled, dropout } from "../ops/elementwise.ts";
import type { Generator } from "../random.ts";
import type { DType, Tensor } from "../tensor.ts";
import { CausalSelfAttention, type SequenceLayout } from "./attention.ts";
import { makeNorm, type Norm } from "./layers.ts";
import { MLP } from "./mlp.ts";
import { Module } from "./module.ts";

/** Options of a {@linkcode Block}. */
export interface BlockOptions {
  /** Model width C. */
  width: number;
  /** Attention heads; must divide the width. */
  nHead: number;
  /** MLP hidden size (4C in GPT-2). */
  hidden: number;
  /** Dropout probability after attention and after the MLP. */
  dropout: number;
  /** Normalisation epsilon. */
  eps: number;
  /** "layernorm" or "rmsnorm". @default "layernorm" */
  normalization?: "layernorm" | "rmsnorm";
  /** "gelu" or "swiglu". @default "gelu" */
  activation?: "gelu" | "swiglu";
  /** The GELU's form, "tanh" or "erf". @default "tanh" */
  gelu?: "tanh" | "erf";
  /** "pre": x + f(norm(x)); "post": norm(x + f(x)). @default "pre" */
  normPosition?: "pre" | "post";
  /** Key/value heads (grouped-query attention). @default nHead */
  nKvHead?: number;
  /** Biases in the Linears. @default true */
  bias?: boolean;
  /** Rotary frequencies (headDim/2, f32) when positions are rotary; absent: none. */
  rope?: Tensor | null;
  /** Init standard deviation of the projections into the residual stream. */
  projStd: number;
  /** Where the parameters live. */
  device: Device;
  /** Parameter (and so activation) dtype. @default "f32" */
  dtype?: DType;
}

/**
 * Pre-norm: x + drop(attn(ln1(x))), then + drop(mlp(ln2(x))). Post-norm (BERT):
 * x = ln1(x + drop(attn(x))), then ln2(x + drop(mlp(x))).
 */
export class Block extends Module {
  /** Normalisation of the attention branch: before it (pre-norm), or after its residual. */
  readonly ln1: Norm;
  /** Causal self-attention. */
  readonly attn: CausalSelfAttention;
  /** Normalisation of the MLP branch: before it (pre-norm), or after its residual. */
  readonly ln2: Norm;
  /** The feed-forward network. */
  readonly mlp: MLP;
  /** Dropout probability on both residual branches. */
  readonly dropout: number;
  /** Where the block normalises. */
  readonly normPosition: "pre" | "post";
  /** Creates the block's layers. */
  constructor(o: BlockOptions) {
    super();
    this.dropout = o.dropout;
    this.normPosition = o.normPosition ?? "pre";
    const norm = o.normalization ?? "layernorm";
    const n = { eps: o.eps, device: o.device, dtype: o.dtype };
    this.ln1 = this.child("ln1", makeNorm(norm, o.width, n));
    this.attn = this.child("attn", new CausalSelfAttention(o.width, o.nHead, o));
    this.ln2 = this.child("ln2", makeNorm(norm, o.width, n));
    this.mlp = this.child("mlp", new MLP(o.width, o.hidden, o));
  }
  /**
   * (B,T,C) → (B,T,C)
   *
   * @param x the residual stream
   * @param rng the dropout stream
   * @param branchScale multiplies both residual branches (progressive layer
   *   dropping's 1 / keep probability) @default 1
   * @param layout documents packed into rows @default none
   */
  forward(x: Tensor, rng: Generator, branchScale = 1, layout?: SequenceLayout): Tensor {
    const p = this.training ? this.dropout : 0;
    const residual = (r: Tensor, f: Tensor) =>
      branchScale === 1 ? add(r, f) : addScaled(r, f, branchScale);
    if (this.normPosition === "post") {
      const a = dropout(this.attn.forward(x, 0, layout), p, rng);
      const x1 = this.ln1.forward(residual(x, a));
      const m = dropout(this.mlp.forward(x1), p, rng);
      return this.ln2.forward(residual(x1, m));
    }
    const a = dropout(this.attn.forward(this.ln1.forward(x), 0, layout), p, rng);
    const x1 = residual(x, a);
    const m = dropout(this.mlp.forward(this.ln2.forward(x1)), p, rng);
    return residual(x1, m);
  }
}
