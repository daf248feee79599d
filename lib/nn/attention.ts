/**
 * defines: CausalSelfAttention — qkv projection, fused causal attention, output projection.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { attention } from "../ops/attention.ts";
import type { DType, Tensor } from "../tensor.ts";
import { Linear } from "./layers.ts";
import { Module } from "./module.ts";
import { checkpoint } from "./recompute.ts";

/** Multi-head causal self-attention, GPT-2 style. */
export class CausalSelfAttention extends Module {
  /** (C → 3C): queries, keys and values side by side. */
  readonly qkv: Linear;
  /** (C → C): the output projection. */
  readonly proj: Linear;
  /** Number of heads. */
  readonly nHead: number;
  /** Selective recomputation: keep only qkv; backward reruns the core attention. */
  recomputeCoreAttention = false;
  /** Creates the qkv and output projections. */
  constructor(
    width: number,
    nHead: number,
    opts: { projStd: number; device: Device; dtype?: DType },
  ) {
    super();
    this.nHead = nHead;
    this.qkv = this.child(
      "qkv",
      new Linear(width, 3 * width, { device: opts.device, dtype: opts.dtype }),
    );
    this.proj = this.child(
      "proj",
      new Linear(width, width, { std: opts.projStd, device: opts.device, dtype: opts.dtype }),
    );
  }
  /** (B,T,C) → (B,T,C) */
  forward(x: Tensor): Tensor {
    const qkv = this.qkv.forward(x); // (B,T,3C)
    const core = (q: Tensor) => attention(q, this.nHead); // (B,T,3C) → (B,T,C)
    const y = this.recomputeCoreAttention ? checkpoint(qkv, core) : core(qkv);
    return this.proj.forward(y);
  }
}
