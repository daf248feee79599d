/**
 * defines: Pooler, MaskedLMHead — BERT's heads above the encoder: the pooler on each
 * row's first token ([CLS]) that the binary and classification heads read, and the
 * masked-LM head's transform and output bias around the output layer (the token
 * embedding).
 *
 * @module
 */
import type { Device } from "../device.ts";
import { gatherRows } from "../ops/embedding.ts";
import { linear, linearActivation } from "../ops/matmul.ts";
import { type DType, Tensor } from "../tensor.ts";
import { LayerNorm, Linear } from "./layers.ts";
import { Module } from "./module.ts";

/** tanh(dense(h₀)) of each row's first token: (B,T,C) → (B,C). */
export class Pooler extends Module {
  /** (C → C) */
  readonly dense: Linear;
  /** Creates the dense layer (normal init, zero bias). */
  constructor(width: number, opts: { device: Device; dtype?: DType }) {
    super();
    this.dense = this.child("dense", new Linear(width, width, opts));
  }
  /**
   * The pooled output of each row.
   *
   * @param hidden (B,T,C) the encoder's last hidden states
   * @returns (B,C)
   */
  forward(hidden: Tensor): Tensor {
    const [B, T] = hidden.shape;
    const first = Tensor.fromArray(Int32Array.from({ length: B }, (_, b) => b * T), [B], {
      device: hidden.device,
    });
    const cls = gatherRows(hidden, first); // (B,C)
    // backward reads the indices; without a graph nothing does
    if (!cls.gradFn) first.dispose();
    return linearActivation(cls, this.dense.weight, this.dense.bias, "tanh");
  }
}

/**
 * BERT's masked-LM head: logits = LN(gelu(dense(h))) Wᵀ + bias, with W the output layer
 * (the token embedding, tied) passed in.
 */
export class MaskedLMHead extends Module {
  /** (C → C) before the GELU. */
  readonly dense: Linear;
  /** LayerNorm after the GELU. */
  readonly ln: LayerNorm;
  /** (Vp): the logits' bias; padding columns stay zero. */
  readonly bias: Tensor;
  /** The GELU's form (BERT's hidden_act). */
  readonly gelu: "tanh" | "erf";
  /**
   * Creates the transform and the output bias.
   *
   * @param width C
   * @param outputs Vp, the logits' width (the padded vocabulary)
   * @param opts eps of the LayerNorm, the GELU's form, device and dtype
   */
  constructor(
    width: number,
    outputs: number,
    opts: { eps: number; gelu: "tanh" | "erf"; device: Device; dtype?: DType },
  ) {
    super();
    const o = { device: opts.device, dtype: opts.dtype };
    this.dense = this.child("dense", new Linear(width, width, o));
    this.ln = this.child("ln", new LayerNorm(width, { ...o, eps: opts.eps }));
    this.bias = this.param("bias", [outputs], { kind: "zeros" }, opts.device, opts.dtype);
    this.gelu = opts.gelu;
  }
  /**
   * The logits of every position.
   *
   * @param hidden (..., C) the encoder's last hidden states
   * @param output (Vp, C) the output layer's weight
   * @returns (..., Vp)
   */
  forward(hidden: Tensor, output: Tensor): Tensor {
    const h = linearActivation(hidden, this.dense.weight, this.dense.bias, `gelu-${this.gelu}`);
    return linear(this.ln.forward(h), output, this.bias);
  }
}
