/**
 * defines: CausalSelfAttention — qkv projection, fused causal attention, output projection.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { DenotronError } from "../errors.ts";
import { attention } from "../ops/attention.ts";
import { rope } from "../ops/rope.ts";
import type { DType, Tensor } from "../tensor.ts";
import { Linear } from "./layers.ts";
import { Module } from "./module.ts";
import { checkpoint } from "./recompute.ts";

/**
 * Causal self-attention with nHead query heads sharing nKvHead key/value heads: GPT-2's
 * multi-head attention when nKvHead = nHead (the default), grouped-query attention
 * (Llama-family) when fewer.
 */
export class CausalSelfAttention extends Module {
  /** (C → (nHead + 2·nKvHead)·hs): query heads, then key heads, then value heads. */
  readonly qkv: Linear;
  /** (C → C): the output projection. */
  readonly proj: Linear;
  /** Number of query heads. */
  readonly nHead: number;
  /** Number of key/value heads; divides nHead. */
  readonly nKvHead: number;
  /** Size of each head, C / nHead. */
  readonly headSize: number;
  /** Rotary frequencies (headSize/2, f32), owned by the model; null: no rotation. */
  readonly rope: Tensor | null;
  /** Selective recomputation: keep only qkv; backward reruns the core attention. */
  recomputeCoreAttention = false;
  /**
   * Creates the qkv and output projections.
   *
   * @param width the model width C
   * @param nHead query heads; must divide C
   * @param opts projStd, device, dtype; nKvHead: key/value heads, a divisor of nHead
   *   (default nHead); bias: biases in both projections (default true); rope: rotary
   *   frequencies applied to q and k (default none: learned positions outside)
   */
  constructor(
    width: number,
    nHead: number,
    opts: {
      projStd: number;
      device: Device;
      dtype?: DType;
      nKvHead?: number;
      bias?: boolean;
      rope?: Tensor | null;
    },
  ) {
    super();
    const nKvHead = opts.nKvHead ?? nHead;
    if (!Number.isInteger(nHead) || nHead < 1 || width % nHead !== 0) {
      throw new DenotronError(
        `CausalSelfAttention: nHead ${nHead} does not divide the width ${width}`,
      );
    }
    if (!Number.isInteger(nKvHead) || nKvHead < 1 || nHead % nKvHead !== 0) {
      throw new DenotronError(
        `CausalSelfAttention: nKvHead ${nKvHead} must be a positive divisor of nHead ${nHead}`,
      );
    }
    this.nHead = nHead;
    this.nKvHead = nKvHead;
    this.headSize = width / nHead;
    this.rope = opts.rope ?? null;
    const o = { device: opts.device, dtype: opts.dtype, bias: opts.bias ?? true };
    this.qkv = this.child("qkv", new Linear(width, (nHead + 2 * nKvHead) * this.headSize, o));
    this.proj = this.child("proj", new Linear(width, width, { ...o, std: opts.projStd }));
  }
  /**
   * The queries, keys and values of x, q and k turned to their positions when rotary:
   * what the core attention (and a KV cache) reads.
   *
   * @param x (B,T,C) the normalised residual stream
   * @param pos0 the position of the first token @default 0
   * @returns (B,T,(nHead + 2·nKvHead)·headSize)
   */
  project(x: Tensor, pos0 = 0): Tensor {
    const qkv = this.qkv.forward(x);
    if (!this.rope) return qkv;
    return rope(qkv, { nHead: this.nHead, nKvHead: this.nKvHead, invFreq: this.rope, pos0 });
  }

  /**
   * (B,T,C) → (B,T,C)
   *
   * @param x the normalised residual stream
   * @param pos0 the position of the first token (rotary positions) @default 0
   */
  forward(x: Tensor, pos0 = 0): Tensor {
    const qkv = this.project(x, pos0);
    // (B,T,(nHead+2·nKvHead)·hs) → (B,T,C)
    const core = (q: Tensor) => attention(q, this.nHead, this.nKvHead);
    const y = this.recomputeCoreAttention ? checkpoint(qkv, core) : core(qkv);
    return this.proj.forward(y);
  }
}
