/**
 * defines: Activation, biasActivation, biasGelu, biasTanh, activationBackward — a pointwise
 * activation of x + bias, fused: GPT-2's tanh GELU, the exact (erf) GELU of BERT, and
 * tanh (BERT's pooler).
 *
 * @module
 */
import { gradOf, needsGrad, record, writeGrad } from "../autograd.ts";
import { DenotronError } from "../errors.ts";
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
 * A pointwise activation of the fused kernels:
 * - "gelu-tanh": u/2 · (1 + tanh(√(2/π) (u + 0.044715 u³))), GPT-2's approximation
 *   (Hugging Face's "gelu_new");
 * - "gelu-erf": u · Φ(u) = u/2 · (1 + erf(u/√2)), the exact GELU (Hugging Face's "gelu",
 *   as BERT uses it);
 * - "tanh": tanh(u) (BERT's pooler).
 */
export type Activation = "gelu-tanh" | "gelu-erf" | "tanh";

/** The DN_ACT_* code of each activation (kernels/include/denotron.h). */
const ACTIVATION_CODE: Record<Activation, number> = { "gelu-tanh": 0, "gelu-erf": 1, tanh: 2 };

/**
 * The kernel code of `act`, or a DenotronError naming the choices.
 *
 * @param op the op named in the error
 * @param act the activation
 * @returns its DN_ACT_* code
 */
export function activationCode(op: string, act: Activation): number {
  const code = ACTIVATION_CODE[act];
  if (code === undefined) {
    throw new DenotronError(
      `${op}: activation must be one of ${
        Object.keys(ACTIVATION_CODE).map((k) => `"${k}"`).join(", ")
      }, got ${JSON.stringify(act)}`,
    );
  }
  return code;
}

/**
 * act(x + bias), elementwise over the last dimension's bias.
 *
 * @param x (..., C) the pre-activation
 * @param bias (C) or null
 * @param act the activation
 * @returns (..., C)
 * @example
 * ```ts
 * import { biasActivation } from "./activation.ts";
 * import { Tensor } from "../tensor.ts";
 * using x = Tensor.fromArray([-1, 0, 1], [1, 3]);
 * using y = biasActivation(x, null, "gelu-erf");
 * console.log(y.toArray()); // ≈ [-0.1587, 0, 0.8413]
 * ```
 */
export function biasActivation(
  x: Tensor,
  bias: Tensor | null | undefined,
  act: Activation,
): Tensor {
  return biasActivationAs("biasActivation", x, bias, act);
}

/** {@linkcode biasActivation}, its errors naming `op`. */
function biasActivationAs(
  op: string,
  x: Tensor,
  bias: Tensor | null | undefined,
  act: Activation,
): Tensor {
  const code = activationCode(op, act);
  expectTensor(op, "x", x, FLOAT);
  if (bias) expectTensor(op, "bias", bias, FLOAT);
  expectSameDeviceAndDtype(op, { x, bias });
  const C = x.shape[x.ndim - 1] ?? 0;
  if (bias) expectShape(op, "bias", bias, [C], "the last dimension of x");
  const N = C === 0 ? 0 : x.numel / C;
  const out = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
  const lib = x.device.lib;
  lib.check(
    lib.sym.dn_bias_act_forward(
      DTYPE_CODE[x.dtype],
      code,
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
        activationBackward(act, g, x, bias ?? null, dx, db, accumulate, `${op} backward`);
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
 * gelu(x + bias) with GPT-2's tanh approximation: {@linkcode biasActivation} with
 * "gelu-tanh".
 *
 * @param x (..., C) the pre-activation
 * @param bias (C) or null
 * @returns (..., C)
 */
export function biasGelu(x: Tensor, bias?: Tensor | null): Tensor {
  return biasActivationAs("biasGelu", x, bias, "gelu-tanh");
}

/**
 * tanh(x + bias): {@linkcode biasActivation} with "tanh".
 *
 * @param x (..., C) the pre-activation
 * @param bias (C) or null
 * @returns (..., C)
 */
export function biasTanh(x: Tensor, bias?: Tensor | null): Tensor {
  return biasActivationAs("biasTanh", x, bias, "tanh");
}

/**
 * dn_bias_act_backward: dx = g · act'(x + bias) (added into dx with `accumulate`, else
 * written), and db += its column sums when db is given. Shapes as in
 * {@linkcode biasActivation}.
 *
 * @param act the activation of the forward
 * @param g (..., C) the output's gradient
 * @param x (..., C) the forward's pre-activation
 * @param bias (C) or null
 * @param dx (..., C) receives the pre-activation's gradient
 * @param db (C) or null: the bias gradient, added into
 * @param accumulate add into dx rather than overwrite it
 * @param what names the call in errors
 */
export function activationBackward(
  act: Activation,
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
    lib.sym.dn_bias_act_backward(
      dtypeWithGrad(g.dtype, db ? db.dtype : g.dtype),
      activationCode(what, act),
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
