/**
 * Argument checks shared by the ops: every public op validates dtypes, shapes and
 * devices here, before any native call, and fails with a sentence naming the op.
 *
 * @module
 */
import { DenotronError, fmtShape } from "../errors.ts";
import { type DType, DTYPE_CODE, type Tensor } from "../tensor.ts";

/** Throws unless `t` is a live tensor of one of `dtypes`. */
export function expectTensor(
  op: string,
  arg: string,
  t: unknown,
  dtypes: readonly DType[],
): asserts t is Tensor {
  if (!t || typeof t !== "object" || !("shape" in t) || !("dtype" in t)) {
    throw new DenotronError(
      `${op}: ${arg} must be a Tensor, got ${t === null ? "null" : typeof t}`,
    );
  }
  const tensor = t as Tensor;
  if (tensor.disposed) throw new DenotronError(`${op}: ${arg} ${tensor.describe()} was disposed`);
  if (!dtypes.includes(tensor.dtype)) {
    throw new DenotronError(
      `${op}: ${arg} has dtype ${tensor.dtype}, expected ${dtypes.join(" or ")}`,
    );
  }
}

/** Throws unless `t` has exactly `ndim` dimensions. */
export function expectRank(op: string, arg: string, t: Tensor, ndim: number): void {
  if (t.ndim !== ndim) {
    throw new DenotronError(
      `${op}: ${arg} must have ${ndim} dimensions, got shape ${fmtShape(t.shape)}`,
    );
  }
}

/** Throws unless `t` has at least one dimension and at least one element. */
export function expectNonEmpty(op: string, arg: string, t: Tensor): void {
  if (t.ndim === 0 || t.numel === 0) {
    throw new DenotronError(
      `${op}: ${arg} must have at least one dimension and one element, got shape ${
        fmtShape(t.shape)
      }`,
    );
  }
}

/** Throws unless every tensor lives on the same device and has the same float dtype. */
export function expectSameDeviceAndDtype(
  op: string,
  tensors: Record<string, Tensor | null | undefined>,
): void {
  let first: [string, Tensor] | undefined;
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    if (!first) {
      first = [name, t];
      continue;
    }
    if (t.device !== first[1].device) {
      throw new DenotronError(
        `${op}: ${name} is on ${t.device.name} but ${first[0]} is on ${first[1].device.name}`,
      );
    }
    if (t.dtype !== first[1].dtype) {
      throw new DenotronError(
        `${op}: ${name} has dtype ${t.dtype} but ${first[0]} has ${first[1].dtype}`,
      );
    }
  }
}

/** Throws unless `t.shape` equals `shape`. */
export function expectShape(
  op: string,
  arg: string,
  t: Tensor,
  shape: readonly number[],
  why = "",
): void {
  if (t.ndim !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new DenotronError(
      `${op}: ${arg} has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}${
        why ? ` (${why})` : ""
      }`,
    );
  }
}

/** Throws unless `t` is on `device` (for index tensors, which have their own dtype). */
export function expectDevice(op: string, arg: string, t: Tensor, other: Tensor): void {
  if (t.device !== other.device) {
    throw new DenotronError(
      `${op}: ${arg} is on ${t.device.name} but the weights are on ${other.device.name}`,
    );
  }
}

/** Throws unless `x` is a finite number in [lo, hi). */
export function expectNumber(
  op: string,
  arg: string,
  x: unknown,
  lo: number,
  hi: number,
): asserts x is number {
  if (typeof x !== "number" || !Number.isFinite(x) || x < lo || x >= hi) {
    throw new DenotronError(`${op}: ${arg} must be a number in [${lo}, ${hi}), got ${String(x)}`);
  }
}

/**
 * The dtype argument of a kernel whose parameter-gradient outputs (dweight, dbias, a
 * GEMM's C) have `gradDtype` while its other tensors have `dtype`:
 * `DN_DTYPE_WITH_GRAD` of kernels/include/denotron.h. bf16 weights with fp32 main
 * gradients use it; equal dtypes give the plain code.
 */
export function dtypeWithGrad(dtype: DType, gradDtype: DType): number {
  const code = DTYPE_CODE[dtype];
  return gradDtype === dtype ? code : code | ((DTYPE_CODE[gradDtype] + 1) << 8);
}

/** Converts sizes to the bigint the FFI's i64 parameters take. */
export function big<T extends number[]>(...xs: T): { [K in keyof T]: bigint } {
  return xs.map((x) => BigInt(x)) as { [K in keyof T]: bigint };
}
