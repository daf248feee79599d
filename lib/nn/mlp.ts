/**
 * defines: MLP — the feed-forward block: the GELU MLP of GPT-2 (tanh GELU) and BERT (exact
 * GELU), its first projection fused with bias and GELU, or Llama's SwiGLU (one projection
 * to gate and up side by side).
 *
 * @module
 */
import type { Device } from "../device.ts";
import { linear, linearActivation } from "../ops/matmul.ts";
import { swiglu } from "../ops/swiglu.ts";
import type { DType, Tensor } from "../tensor.ts";
import { Linear } from "./layers.ts";
import { Module } from "./module.ts";

/** fc (C → hidden), GELU, proj (hidden → C); or fc (C → 2·hidden), SwiGLU, proj. */
export class MLP extends Module {
  /** (C → hidden) before GELU, or (C → 2·hidden): gate then up, before SwiGLU. */
  readonly fc: Linear;
  /** (hidden → C): back into the residual stream. */
  readonly proj: Linear;
  /** "gelu" or "swiglu". */
  readonly activation: "gelu" | "swiglu";
  /** The GELU's form: GPT-2's "tanh" approximation or the exact "erf". */
  readonly gelu: "tanh" | "erf";
  /**
   * Creates the two projections.
   *
   * @param width the model width C
   * @param hidden the hidden width
   * @param opts projStd, device, dtype; activation (default "gelu"), gelu: its form
   *   (default "tanh"), bias (default true)
   */
  constructor(
    width: number,
    hidden: number,
    opts: {
      projStd: number;
      device: Device;
      dtype?: DType;
      activation?: "gelu" | "swiglu";
      gelu?: "tanh" | "erf";
      bias?: boolean;
    },
  ) {
    super();
    this.activation = opts.activation ?? "gelu";
    this.gelu = opts.gelu ?? "tanh";
    const fcOut = this.activation === "swiglu" ? 2 * hidden : hidden;
    const o = { device: opts.device, dtype: opts.dtype, bias: opts.bias ?? true };
    this.fc = this.child("fc", new Linear(width, fcOut, o));
    this.proj = this.child("proj", new Linear(hidden, width, { ...o, std: opts.projStd }));
  }
  /** (B,T,C) → (B,T,C) */
  forward(x: Tensor): Tensor {
    const a = this.activation === "swiglu"
      ? swiglu(linear(x, this.fc.weight, this.fc.bias)) // (B,T,2·hidden) → (B,T,hidden)
      // fc, its bias and the GELU in one call (with the tanh GELU, one GEMM with cuBLASLt's
      // GELU epilogue)
      : linearActivation(x, this.fc.weight, this.fc.bias, `gelu-${this.gelu}`); // (B,T,hidden)
    return this.proj.forward(a);
  }
}
