/**
 * defines: rmsnorm — Llama's normalisation; forward keeps fp32 1/rms per row for backward.
 *
 * @module
 */
import { gradOf, needsGrad, record } from "../autograd.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import {
  big,
  dtypeWithGrad,
  expectNonEmpty,
  expectNumber,
  expectSameDeviceAndDtype,
  expectShape,
  expectTensor,
} from "./check.ts";

const FLOAT = ["f32", "bf16", "f16"] as const;

/**
 * Root-mean-square normalisation over the last dimension:
 * y = x / √(mean(x²) + eps) · weight, with no mean subtraction and no bias.
 *
 * @param x (..., C)
 * @param weight (C)
 * @param eps added to the mean square @default 1e-5
 * @returns (..., C)
 *
 * @example
 * ```ts
 * import { Tensor } from "../tensor.ts";
 * import { rmsnorm } from "./rmsnorm.ts";
 * using x = Tensor.fromArray([3, 4], [1, 2]);
 * using w = Tensor.fromArray([1, 1], [2]);
 * using y = rmsnorm(x, w);
 * console.log(y.toArray()); // ≈ [0.8485, 1.1314]: x / √12.5
 * ```
 */
export function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-5): Tensor {
  const op = "rmsnorm";
  expectTensor(op, "x", x, FLOAT);
  expectTensor(op, "weight", weight, FLOAT);
  expectSameDeviceAndDtype(op, { x, weight });
  expectNonEmpty(op, "x", x);
  expectNumber(op, "eps", eps, Number.MIN_VALUE, 1);
  const C = x.shape[x.ndim - 1] ?? 0;
  expectShape(op, "weight", weight, [C], "the last dimension of x");
  const N = x.numel / C;
  const out = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
  const rstd = Tensor.empty([N], { device: x.device });
  const lib = x.device.lib;
  lib.check(
    lib.sym.dn_rmsnorm_forward(
      DTYPE_CODE[x.dtype],
      out.ptr,
      rstd.ptr,
      x.ptr,
      weight.ptr,
      ...big(N, C),
      eps,
    ),
    op,
  );
  const node = record(out, {
    name: op,
    inputs: [x, weight],
    backward(g) {
      const dw = needsGrad(weight) ? gradOf(weight) : null;
      lib.check(
        lib.sym.dn_rmsnorm_backward(
          dtypeWithGrad(g.dtype, dw?.dtype ?? g.dtype),
          needsGrad(x) ? gradOf(x).ptr : null,
          dw ? dw.ptr : null,
          g.ptr,
          x.ptr,
          weight.ptr,
          rstd.ptr,
          ...big(N, C),
        ),
        `${op} backward`,
      );
    },
  });
  if (!node.gradFn) rstd.dispose();
  return node;
}
