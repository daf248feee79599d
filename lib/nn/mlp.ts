/**
 * defines: MLP — the 4x feed-forward block with a fused bias + GELU.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { biasGelu } from "../ops/gelu.ts";
import { linear } from "../ops/matmul.ts";
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
    // The fc bias is added inside the fused GELU kernel rather than by the GEMM.
    const h = linear(x, this.fc.weight, null); // (B,T,hidden)
    const a = biasGelu(h, this.fc.bias); // (B,T,hidden)
    return this.proj.forward(a);
  }
}
