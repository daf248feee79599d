/**
 * defines: biasGelu, geluBackward — GELU (tanh approximation) of x + bias, fused.
 *
 * @module
 */
import { gradOf, needsGrad, record, writeGrad } from "../autograd.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import {
  big,
  dtypeWithGrad,
  expectSameDeviceAndDtype,
  expectShape,
  expectTensor,
} from "./check.ts";

const FLOAT = ["f32", "bf16", "f16"] as const;

/**
 * gelu(x + bias), with gelu(u) = u/2 · (1 + tanh(√(2/π) (u + 0.044715 u³))).
 *
 * @param x (..., C) the pre-activation
 * @param bias (C) or null
 * @returns (..., C)
 */
export function biasGelu(x: Tensor, bias?: Tensor | null): Tensor {
  const op = "biasGelu";
  expectTensor(op, "x", x, FLOAT);
  if (bias) expectTensor(op, "bias", bias, FLOAT);
  expectSameDeviceAndDtype(op, { x, bias });
  const C = x.shape[x.ndim - 1] ?? 0;
  if (bias) expectShape(op, "bias", bias, [C], "the last dimension of x");
  const N = C === 0 ? 0 : x.numel / C;
  const out = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
  const lib = x.device.lib;
  lib.check(
    lib.sym.dn_bias_gelu_forward(
      DTYPE_CODE[x.dtype],
      out.ptr,
      x.ptr,
      bias ? bias.ptr : null,
      ...big(N, C),
    ),
    op,
  );
  return record(out, {
    name: op,
    inputs: bias ? [x, bias] : [x],
    backward(g) {
      const db = bias && needsGrad(bias) ? gradOf(bias) : null;
      const run = (dx: Tensor, accumulate: boolean) =>
        geluBackward(g, x, bias ?? null, dx, db, accumulate, `${op} backward`);
      if (needsGrad(x)) {
        writeGrad(x, run); // a fresh gradient is written, not zeroed and added into
      } else {
        // the kernel always writes the pre-activation gradient: a scratch takes it
        using scratch = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
        run(scratch, false);
      }
    },
  });
}

/**
 * dn_bias_gelu_backward: dx = g · gelu'(x + bias) (added into dx with `accumulate`, else
 * written), and db += its column sums when db is given. Shapes as in {@linkcode biasGelu}.
 *
 * @param what names the call in errors
 */
export function geluBackward(
  g: Tensor,
  x: Tensor,
  bias: Tensor | null,
  dx: Tensor,
  db: Tensor | null,
  accumulate: boolean,
  what: string,
): void {
  const C = x.shape[x.ndim - 1] ?? 0;
  const lib = x.device.lib;
  lib.check(
    lib.sym.dn_bias_gelu_backward(
      dtypeWithGrad(g.dtype, db ? db.dtype : g.dtype),
      dx.ptr,
      db ? db.ptr : null,
      g.ptr,
      x.ptr,
      bias ? bias.ptr : null,
      ...big(C === 0 ? 0 : x.numel / C, C),
      accumulate ? 1 : 0,
    ),
    what,
  );
}
