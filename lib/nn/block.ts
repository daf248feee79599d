/**
 * defines: Block — one pre-LN transformer layer.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { add, dropout } from "../ops/elementwise.ts";
import type { Generator } from "../random.ts";
import type { DType, Tensor } from "../tensor.ts";
import { CausalSelfAttention } from "./attention.ts";
import { LayerNorm } from "./layers.ts";
import { MLP } from "./mlp.ts";
import { Module } from "./module.ts";

/** Options of a {@linkcode Block}. */
export interface BlockOptions {
  width: number;
  nHead: number;
  hidden: number;
  dropout: number;
  eps: number;
  projStd: number;
  device: Device;
  /** Parameter (and so activation) dtype. @default "f32" */
  dtype?: DType;
}

/** x + drop(attn(ln1(x))), then + drop(mlp(ln2(x))). */
export class Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln2: LayerNorm;
  readonly mlp: MLP;
  readonly dropout: number;
  constructor(o: BlockOptions) {
    super();
    this.dropout = o.dropout;
    this.ln1 = this.child(
      "ln1",
      new LayerNorm(o.width, { eps: o.eps, device: o.device, dtype: o.dtype }),
    );
    this.attn = this.child("attn", new CausalSelfAttention(o.width, o.nHead, o));
    this.ln2 = this.child(
      "ln2",
      new LayerNorm(o.width, { eps: o.eps, device: o.device, dtype: o.dtype }),
    );
    this.mlp = this.child("mlp", new MLP(o.width, o.hidden, o));
  }
  /** (B,T,C) → (B,T,C) */
  forward(x: Tensor, rng: Generator): Tensor {
    const p = this.training ? this.dropout : 0;
    const a = dropout(this.attn.forward(this.ln1.forward(x)), p, rng);
    const x1 = add(x, a);
    const m = dropout(this.mlp.forward(this.ln2.forward(x1)), p, rng);
    return add(x1, m);
  }
}
