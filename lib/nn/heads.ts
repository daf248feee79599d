/**
 * defines: Pooler, MaskedLMHead, MaskedRows, maskedRows — BERT's heads above the encoder: the pooler on each
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
    return linear(this.transform(hidden), output, this.bias);
  }
  /**
   * The transform before the output layer: LN(gelu(dense(h))).
   *
   * @param hidden (..., C)
   * @returns (..., C)
   */
  transform(hidden: Tensor): Tensor {
    const h = linearActivation(hidden, this.dense.weight, this.dense.bias, `gelu-${this.gelu}`);
    return this.ln.forward(h);
  }
}

/** The masked positions of a batch: where the masked-LM head runs, and their labels. */
export interface MaskedRows {
  /** int32 (M): the flat (B·T) row of each masked token; [0] when none is masked. */
  index: Tensor;
  /** int32 (M): the original token at each; [-1] (not counted) when none is masked. */
  labels: Tensor;
  /** The labels on the host. */
  labelValues: Int32Array;
}

/**
 * The rows the masked-LM head reads: the output layer runs only at the masked positions
 * (~15% of the tokens), the same loss as over all (B,T) positions without the (B,T,Vp)
 * logits. With no masked token, one row whose target does not count (a zero loss).
 *
 * @param targets (B·T) host values: the original token at each masked position, -1 elsewhere
 * @param device where the model runs
 */
export function maskedRows(targets: Int32Array, device: Device): MaskedRows {
  const where: number[] = [];
  targets.forEach((t, i) => t !== -1 && where.push(i));
  const rows = where.length ? where : [0];
  const labelValues = where.length ? Int32Array.from(where, (i) => targets[i]) : Int32Array.of(-1);
  const i32 = (a: Int32Array) => Tensor.fromArray(a, [a.length], { dtype: "i32", device });
  return { index: i32(Int32Array.from(rows)), labels: i32(labelValues), labelValues };
}
