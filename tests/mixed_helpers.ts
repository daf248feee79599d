/**
 * Mixed-precision test helpers: an op in bf16 or fp16 against the same op in fp32 on the
 * same (rounded) inputs, by normwise relative error ‖x₁₆ − x₃₂‖ / ‖x₃₂‖ (see
 * tests/mixed_ops_test.ts for the bounds).
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { type DType, Tensor, tidy } from "../lib/tensor.ts";
import { randomArray } from "./helpers.ts";

/** The bounds on the normwise relative error: a few units of each format's rounding. */
export const TOL: Record<"bf16" | "f16", number> = { bf16: 1e-2, f16: 2.5e-3 };

/** ‖a − b‖₂ / ‖b‖₂ */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** An input of an op under test (as OpInput of tests/helpers.ts). */
export interface MixedInput {
  name: string;
  shape: number[];
  data?: Float64Array;
  ints?: Int32Array;
  grad?: boolean;
}

/**
 * Runs `run` in fp32 and in `dtype` on the same inputs (rounded to dtype first) and
 * compares the outputs and the gradients of sum(out · g).
 */
export function checkMixed(
  name: string,
  dtype: "bf16" | "f16",
  inputs: MixedInput[],
  run: (xs: Tensor[]) => Tensor,
  opts: { devName?: string; tol?: number } = {},
): void {
  const dev = device(opts.devName ?? "cpu");
  const tol = opts.tol ?? TOL[dtype];
  tidy(() => {
    const make = (dt: DType) =>
      inputs.map((inp) =>
        inp.ints ? Tensor.fromArray(inp.ints, inp.shape, { device: dev }) : (() => {
          // the 16-bit rounding of the data, so both runs see the same values
          const r = Tensor.fromArray(inp.data!, inp.shape, { device: dev, dtype }).toArray();
          return Tensor.fromArray(r, inp.shape, {
            device: dev,
            dtype: dt,
            requiresGrad: inp.grad ?? true,
          });
        })()
      );
    const x32 = make("f32"), x16 = make(dtype);
    const y32 = run(x32), y16 = run(x16);
    const e = relErr(y16.toArray(), y32.toArray());
    assert.ok(e <= tol, `${name} ${dtype} forward: relative error ${e.toExponential(2)} > ${tol}`);
    const gData = randomArray(y32.numel, 77);
    const gRounded = Tensor.fromArray(gData, y32.shape, { device: dev, dtype }).toArray();
    y32.backward(Tensor.fromArray(gRounded, y32.shape, { device: dev }));
    y16.backward(Tensor.fromArray(gRounded, y16.shape, { device: dev, dtype: y16.dtype }));
    inputs.forEach((inp, k) => {
      if (inp.ints || inp.grad === false) return;
      const ge = relErr(x16[k].grad!.toArray(), x32[k].grad!.toArray());
      assert.ok(
        ge <= tol,
        `${name} ${dtype} d${inp.name}: relative error ${ge.toExponential(2)} > ${tol}`,
      );
    });
  });
}
