/**
 * defines: crossEntropy — softmax cross-entropy fused with the logits.
 *
 * @module
 */
import { needsGrad, record, writeGrad } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { big, expectDevice, expectTensor } from "./check.ts";

/**
 * The mean cross-entropy of `logits` against `targets`, over the targets that are not
 * -1. The probabilities are never stored: backward forms them once from the logits
 * and the saved log-sum-exp, straight into the logits' gradient.
 *
 * @param logits (..., V), or (..., ld) whose first `classes` columns are the classes
 * @param targets int32 (...), each in [0, V) or -1 to ignore
 * @param opts classes: how many leading columns are classes; the rest are vocabulary
 *   padding, left out of the softmax and given no gradient @default the last dimension
 * @returns a one-element tensor, the mean loss
 */
export function crossEntropy(
  logits: Tensor,
  targets: Tensor,
  opts: { classes?: number } = {},
): Tensor {
  const op = "crossEntropy";
  expectTensor(op, "logits", logits, ["f32", "bf16", "f16"]);
  expectTensor(op, "targets", targets, ["i32"]);
  expectDevice(op, "targets", targets, logits);
  const ld = logits.shape[logits.ndim - 1] ?? 0;
  const V = opts.classes ?? ld;
  if (!Number.isInteger(V) || V < 1 || V > ld) {
    throw new DenotronError(
      `${op}: classes ${V} must be an integer in [1, ${ld}] (the last dimension of logits ${
        fmtShape(logits.shape)
      })`,
    );
  }
  const lead = logits.shape.slice(0, -1);
  if (
    logits.ndim < 1 || targets.ndim !== lead.length ||
    targets.shape.some((d, i) => d !== lead[i])
  ) {
    throw new DenotronError(
      `${op}: targets ${fmtShape(targets.shape)} must match the leading dimensions of logits ${
        fmtShape(logits.shape)
      }`,
    );
  }
  const N = targets.numel;
  const losses = Tensor.empty([N], { device: logits.device });
  const lse = Tensor.empty([N], { device: logits.device });
  const mean = new Float64Array(1);
  const count = new BigInt64Array(1);
  const lib = logits.device.lib;
  lib.check(
    lib.sym.dn_crossentropy_forward(
      DTYPE_CODE[logits.dtype],
      losses.ptr,
      lse.ptr,
      logits.ptr,
      targets.ptr,
      ...big(N, V, ld),
      mean,
      count,
    ),
    op,
  );
  losses.dispose();
  const counted = Number(count[0]);
  const out = Tensor.fromArray([mean[0]], [1], { device: logits.device });
  const result = record(out, {
    name: op,
    inputs: [logits],
    backward(g) {
      if (!needsGrad(logits) || counted === 0) return;
      const upstream = g.item();
      // The logits' gradient is usually fresh and as large as the logits: the kernel
      // writes all of it instead of adding into a zeroed buffer.
      writeGrad(logits, (grad, accumulate) =>
        lib.check(
          lib.sym.dn_crossentropy_backward(
            DTYPE_CODE[logits.dtype],
            grad.ptr,
            logits.ptr,
            lse.ptr,
            targets.ptr,
            ...big(N, V, ld),
            upstream / counted,
            accumulate ? 1 : 0,
          ),
          `${op} backward`,
        ));
    },
  });
  if (!result.gradFn) lse.dispose();
  return result;
}
