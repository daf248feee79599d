/**
 * defines: layernorm — forward keeps fp32 mean and 1/std per row for backward.
 *
 * @module
 */
import { gradOf, needsGrad, record } from "../autograd.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import {
  big,
  dtypeWithGrad,
  expectNumber,
  expectSameDeviceAndDtype,
  expectShape,
  expectTensor,
} from "./check.ts";

const FLOAT = ["f32", "bf16", "f16"] as const;

/**
 * Layer normalisation over the last dimension.
 *
 * @param x (..., C)
 * @param weight (C)
 * @param bias (C)
 * @param eps added to the variance @default 1e-5
 * @returns (..., C)
 */
export function layernorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const op = "layernorm";
  expectTensor(op, "x", x, FLOAT);
  expectTensor(op, "weight", weight, FLOAT);
  expectTensor(op, "bias", bias, FLOAT);
  expectSameDeviceAndDtype(op, { x, weight, bias });
  expectNumber(op, "eps", eps, Number.MIN_VALUE, 1);
  const C = x.shape[x.ndim - 1] ?? 0;
  expectShape(op, "weight", weight, [C], "the last dimension of x");
  expectShape(op, "bias", bias, [C], "the last dimension of x");
  const N = x.numel / C;
  const out = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
  const mean = Tensor.empty([N], { device: x.device });
  const rstd = Tensor.empty([N], { device: x.device });
  const lib = x.device.lib;
  lib.check(
    lib.sym.dn_layernorm_forward(
      DTYPE_CODE[x.dtype],
      out.ptr,
      mean.ptr,
      rstd.ptr,
      x.ptr,
      weight.ptr,
      bias.ptr,
      ...big(N, C),
      eps,
    ),
    op,
  );
  const node = record(out, {
    name: op,
    inputs: [x, weight, bias],
    backward(g) {
      const dw = needsGrad(weight) ? gradOf(weight) : null;
      const db = needsGrad(bias) ? gradOf(bias) : null;
      if (dw && db && dw.dtype !== db.dtype) {
        throw new Error(`${op} backward: weight and bias gradients differ in dtype`);
      }
      lib.check(
        lib.sym.dn_layernorm_backward(
          dtypeWithGrad(g.dtype, (dw ?? db)?.dtype ?? g.dtype),
          needsGrad(x) ? gradOf(x).ptr : null,
          dw ? dw.ptr : null,
          db ? db.ptr : null,
          g.ptr,
          x.ptr,
          weight.ptr,
          mean.ptr,
          rstd.ptr,
          ...big(N, C),
        ),
        `${op} backward`,
      );
    },
  });
  if (!node.gradFn) {
    mean.dispose();
    rstd.dispose();
  }
  return node;
}
