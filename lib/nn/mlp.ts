/**
 * defines: MLP — the feed-forward block: GPT-2's GELU MLP (its first projection fused with
 * bias and GELU), or Llama's SwiGLU (one projection to gate and up side by side).
 *
 * @module
 */
import type { Device } from "../device.ts";
import { linear, linearGelu } from "../ops/matmul.ts";
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
  /** Creates the two projections. */
  constructor(
    width: number,
    hidden: number,
    opts: {
      projStd: number;
      device: Device;
      dtype?: DType;
      activation?: "gelu" | "swiglu";
      bias?: boolean;
    },
  ) {
    super();
    this.activation = opts.activation ?? "gelu";
    const fcOut = this.activation === "swiglu" ? 2 * hidden : hidden;
    const o = { device: opts.device, dtype: opts.dtype, bias: opts.bias ?? true };
    this.fc = this.child("fc", new Linear(width, fcOut, o));
    this.proj = this.child("proj", new Linear(hidden, width, { ...o, std: opts.projStd }));
  }
  /** (B,T,C) → (B,T,C) */
  forward(x: Tensor): Tensor {
    const a = this.activation === "swiglu"
      ? swiglu(linear(x, this.fc.weight, this.fc.bias)) // (B,T,2·hidden) → (B,T,hidden)
      // fc, its bias and the GELU in one call (one GEMM with cuBLASLt's GELU epilogue)
      : linearGelu(x, this.fc.weight, this.fc.bias); // (B,T,hidden)
    return this.proj.forward(a);
  }
}
