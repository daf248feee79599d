/**
 * defines: add (the residual connection), addScaled (a scaled residual branch), dropout,
 * accumulateInto (dst += src, for gradients).
 *
 * @module
 */
import { gradOf, needsGrad, record } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import type { Generator } from "../random.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { dtypeWithGrad, expectNumber, expectSameDeviceAndDtype, expectTensor } from "./check.ts";

const FLOAT = ["f32", "bf16", "f16"] as const;

/** dst += src over all elements (dst may be an fp32 main gradient of a 16-bit src). */
export function accumulateInto(dst: Tensor, src: Tensor): void {
  const lib = dst.device.lib;
  lib.check(
    lib.sym.dn_axpby(
      dtypeWithGrad(src.dtype, dst.dtype),
      dst.ptr,
      1,
      src.ptr,
      1,
      BigInt(dst.numel),
    ),
    "accumulate",
  );
}

/**
 * a + b, elementwise, same shapes.
 *
 * @returns a new tensor of a's shape
 */
export function add(a: Tensor, b: Tensor): Tensor {
  const op = "add";
  expectTensor(op, "a", a, FLOAT);
  expectTensor(op, "b", b, FLOAT);
  expectSameDeviceAndDtype(op, { a, b });
  if (a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new DenotronError(`${op}: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`);
  }
  const out = Tensor.empty(a.shape, { dtype: a.dtype, device: a.device });
  const lib = a.device.lib;
  lib.check(lib.sym.dn_add(DTYPE_CODE[a.dtype], out.ptr, a.ptr, b.ptr, BigInt(a.numel)), op);
  return record(out, {
    name: op,
    inputs: [a, b],
    backward(g) {
      if (needsGrad(a)) accumulateInto(gradOf(a), g);
      if (needsGrad(b)) accumulateInto(gradOf(b), g);
    },
  });
}

/**
 * a + s·b, elementwise, same shapes: a residual branch scaled by s (progressive
 * layer dropping scales a kept layer's branches by 1 / its keep probability).
 *
 * @param a the residual stream
 * @param b the branch
 * @param s the branch's scale
 * @returns a new tensor of a's shape
 */
export function addScaled(a: Tensor, b: Tensor, s: number): Tensor {
  const op = "addScaled";
  expectTensor(op, "a", a, FLOAT);
  expectTensor(op, "b", b, FLOAT);
  expectSameDeviceAndDtype(op, { a, b });
  if (typeof s !== "number" || !Number.isFinite(s)) {
    throw new DenotronError(`${op}: scale must be a finite number, got ${String(s)}`);
  }
  if (a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new DenotronError(`${op}: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`);
  }
  const out = Tensor.empty(a.shape, { dtype: a.dtype, device: a.device });
  const lib = a.device.lib;
  lib.check(lib.sym.dn_memcpy_d2d(out.ptr, a.ptr, BigInt(a.bytes)), op);
  // out = s·b + 1·out
  lib.check(lib.sym.dn_axpby(DTYPE_CODE[a.dtype], out.ptr, s, b.ptr, 1, BigInt(a.numel)), op);
  return record(out, {
    name: op,
    inputs: [a, b],
    backward(g) {
      if (needsGrad(a)) accumulateInto(gradOf(a), g);
      if (needsGrad(b)) {
        const gb = gradOf(b);
        lib.check(
          lib.sym.dn_axpby(dtypeWithGrad(g.dtype, gb.dtype), gb.ptr, s, g.ptr, 1, BigInt(g.numel)),
          `${op} backward`,
        );
      }
    },
  });
}

/**
 * Zeroes each element with probability p and scales the rest by 1/(1-p). The mask is
 * a function of the generator's (seed, offset) only, so it is the same for any thread
 * count, and backward recomputes it instead of storing it. With p = 0 it returns x.
 *
 * @param x the input
 * @param p drop probability in [0, 1)
 * @param gen the stream the mask's counters come from
 */
export function dropout(x: Tensor, p: number, gen: Generator): Tensor {
  const op = "dropout";
  expectTensor(op, "x", x, FLOAT);
  expectNumber(op, "p", p, 0, 1);
  if (p === 0) return x;
  const { seed, offset } = gen.take(x.numel);
  const out = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
  const lib = x.device.lib;
  const code = DTYPE_CODE[x.dtype];
  lib.check(
    lib.sym.dn_dropout_forward(
      code,
      out.ptr,
      x.ptr,
      BigInt(x.numel),
      p,
      BigInt(seed),
      BigInt(offset),
    ),
    op,
  );
  return record(out, {
    name: op,
    inputs: [x],
    backward(g) {
      lib.check(
        lib.sym.dn_dropout_backward(
          code,
          gradOf(x).ptr,
          g.ptr,
          BigInt(x.numel),
          p,
          BigInt(seed),
          BigInt(offset),
        ),
        `${op} backward`,
      );
    },
  });
}
