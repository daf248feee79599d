/**
 * defines: gradNorm, clipFactor, clipGradNorm — the global gradient norm and clipping.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import { DTYPE_CODE, type Tensor } from "../tensor.ts";

function asList(grads: Tensor | readonly Tensor[]): readonly Tensor[] {
  return Array.isArray(grads) ? grads : [grads as Tensor];
}

/**
 * The L2 norm of all gradients together (sum of squares in fp64, one native call).
 *
 * @param grads the flat gradient buffer, or a list of gradient tensors
 */
export function gradNorm(grads: Tensor | readonly Tensor[]): number {
  const list = asList(grads);
  if (list.length === 0) return 0;
  const lib = list[0].device.lib;
  const out = new Float64Array(1);
  lib.check(
    lib.sym.dn_norm_sq(
      DTYPE_CODE[list[0].dtype],
      BigInt(list.length),
      BigUint64Array.from(list, (t) => t.address),
      BigInt64Array.from(list, (t) => BigInt(t.numel)),
      out,
    ),
    "gradNorm",
  );
  return Math.sqrt(out[0]);
}

/** The factor that brings `norm` down to `maxNorm` (1 when it is already below). */
export function clipFactor(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) {
    throw new DenotronError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  }
  return norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}

/**
 * Scales the gradients in place so their global norm is at most `maxNorm`.
 *
 * @returns the norm before clipping
 */
export function clipGradNorm(grads: Tensor | readonly Tensor[], maxNorm: number): number {
  const norm = gradNorm(grads);
  const f = clipFactor(norm, maxNorm);
  if (f !== 1) {
    const list = asList(grads);
    const lib = list[0].device.lib;
    lib.check(
      lib.sym.dn_scale(
        DTYPE_CODE[list[0].dtype],
        BigInt(list.length),
        BigUint64Array.from(list, (t) => t.address),
        BigInt64Array.from(list, (t) => BigInt(t.numel)),
        f,
      ),
      "clipGradNorm",
    );
  }
  return norm;
}
