/**
 * defines: MLP — the 4x feed-forward block, its first projection fused with bias and GELU.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { linearGelu } from "../ops/matmul.ts";
import type { DType, Tensor } from "../tensor.ts";
import { Linear } from "./layers.ts";
import { Module } from "./module.ts";

/** fc (C → hidden), GELU, proj (hidden → C). */
export class MLP extends Module {
  /** (C → hidden), followed by GELU. */
  readonly fc: Linear;
  /** (hidden → C): back into the residual stream. */
  readonly proj: Linear;
  /** Creates the two projections. */
  constructor(
    width: number,
    hidden: number,
    opts: { projStd: number; device: Device; dtype?: DType },
  ) {
    super();
    this.fc = this.child(
      "fc",
      new Linear(width, hidden, { device: opts.device, dtype: opts.dtype }),
    );
    this.proj = this.child(
      "proj",
      new Linear(hidden, width, { std: opts.projStd, device: opts.device, dtype: opts.dtype }),
    );
  }
  /** (B,T,C) → (B,T,C) */
  forward(x: Tensor): Tensor {
    // fc, its bias and the GELU in one call (one GEMM with cuBLASLt's GELU epilogue)
    const a = linearGelu(x, this.fc.weight, this.fc.bias); // (B,T,hidden)
    return this.proj.forward(a);
  }
}
