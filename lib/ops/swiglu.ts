/**
 * defines: swiglu — the gated activation of Llama's MLP, on the fused gate/up projection.
 *
 * @module
 */
import { record, writeGrad } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { big, expectNonEmpty, expectTensor } from "./check.ts";

/**
 * silu(gate) · up, silu(g) = g / (1 + e⁻ᵍ), where each row of `h` holds gate and up side
 * by side, as one column-parallel linear of width 2F writes them.
 *
 * @param h (..., 2F): gate in the first F columns, up in the last F
 * @returns (..., F)
 *
 * @example
 * ```ts
 * import { Tensor } from "../tensor.ts";
 * import { swiglu } from "./swiglu.ts";
 * using h = Tensor.fromArray([0, 2, 5, 3], [1, 4]); // gate [0, 2], up [5, 3]
 * using y = swiglu(h);
 * console.log(y.toArray()); // ≈ [0, 5.2848]: [silu(0)·5, silu(2)·3]
 * ```
 */
export function swiglu(h: Tensor): Tensor {
  const op = "swiglu";
  expectTensor(op, "h", h, ["f32", "bf16", "f16"]);
  expectNonEmpty(op, "h", h);
  const width = h.shape[h.ndim - 1];
  if (width % 2 !== 0) {
    throw new DenotronError(
      `${op}: h ${fmtShape(h.shape)} must have an even last dimension 2F ([gate | up])`,
    );
  }
  const F = width / 2, N = h.numel / width;
  const out = Tensor.empty([...h.shape.slice(0, -1), F], { dtype: h.dtype, device: h.device });
  const lib = h.device.lib;
  lib.check(lib.sym.dn_swiglu_forward(DTYPE_CODE[h.dtype], out.ptr, h.ptr, ...big(N, F)), op);
  return record(out, {
    name: op,
    inputs: [h],
    backward(g) {
      writeGrad(h, (dh, accumulate) =>
        lib.check(
          lib.sym.dn_swiglu_backward(
            DTYPE_CODE[g.dtype],
            dh.ptr,
            g.ptr,
            h.ptr,
            ...big(N, F),
            accumulate ? 1 : 0,
          ),
          `${op} backward`,
        ));
    },
  });
}
