/**
 * defines: rope, ropeInvFreq, RopeOptions, RopeScaling — rotary position embedding
 * ("rotate half", as Hugging Face Llama and Megatron's default) on the packed attention
 * projection, and its frequencies, plain or with Llama 3's scaling.
 *
 * @module
 */
import { record, writeGrad } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import {
  big,
  expectNonEmpty,
  expectNumber,
  expectRank,
  expectShape,
  expectTensor,
} from "./check.ts";

/**
 * Llama 3's frequency scaling (Hugging Face `rope_scaling` with `rope_type: "llama3"`):
 * wavelengths 2π/f shorter than originalMaxPositionEmbeddings / highFreqFactor keep their
 * frequency, those longer than originalMaxPositionEmbeddings / lowFreqFactor are slowed
 * by `factor`, and the band between blends the two linearly in
 * originalMaxPositionEmbeddings / wavelength.
 */
export interface RopeScaling {
  /** The only scaling implemented here. */
  ropeType: "llama3";
  /** How much the low frequencies are slowed (8 for Llama 3.1, 32 for Llama 3.2). */
  factor: number;
  /** Wavelengths above originalMaxPositionEmbeddings / lowFreqFactor are fully scaled. */
  lowFreqFactor: number;
  /** Wavelengths below originalMaxPositionEmbeddings / highFreqFactor are not scaled. */
  highFreqFactor: number;
  /** The context length the model was first trained for (8192 for Llama 3). */
  originalMaxPositionEmbeddings: number;
}

/**
 * The headDim/2 rotary frequencies f_j = theta^(-2j/headDim), optionally with Llama 3's
 * scaling: pass them to {@linkcode rope} as an f32 tensor. Computed in float64 and
 * rounded once to fp32 (Hugging Face computes in fp32, so the two may differ in the last
 * bit).
 *
 * @param headDim the head size; must be even
 * @param theta the base (10000 for Llama 2, 500000 for Llama 3)
 * @param scaling Llama 3's rope_scaling, or none
 * @returns (headDim/2) frequencies, in radians per position
 *
 * @example
 * ```ts
 * import { ropeInvFreq } from "./rope.ts";
 * console.log(ropeInvFreq(4, 10000)); // Float32Array ≈ [1, 0.01]
 * ```
 */
export function ropeInvFreq(headDim: number, theta: number, scaling?: RopeScaling): Float32Array {
  const op = "ropeInvFreq";
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) {
    throw new DenotronError(`${op}: headDim must be a positive even integer, got ${headDim}`);
  }
  if (typeof theta !== "number" || !Number.isFinite(theta) || theta <= 1) {
    throw new DenotronError(`${op}: theta must be a finite number above 1, got ${theta}`);
  }
  const freqs = Array.from({ length: headDim / 2 }, (_, j) => theta ** (-2 * j / headDim));
  return Float32Array.from(scaling ? freqs.map(llama3Scaler(scaling)) : freqs);
}

/** The Llama 3 map of one frequency, after checking the scaling's fields. */
function llama3Scaler(s: RopeScaling): (f: number) => number {
  const op = "ropeInvFreq";
  if (s.ropeType !== "llama3") {
    throw new DenotronError(
      `${op}: rope scaling type ${JSON.stringify(s.ropeType)} is not supported (only "llama3")`,
    );
  }
  expectNumber(op, "scaling.factor", s.factor, 1, Infinity);
  expectNumber(op, "scaling.lowFreqFactor", s.lowFreqFactor, Number.MIN_VALUE, Infinity);
  expectNumber(op, "scaling.highFreqFactor", s.highFreqFactor, Number.MIN_VALUE, Infinity);
  expectNumber(
    op,
    "scaling.originalMaxPositionEmbeddings",
    s.originalMaxPositionEmbeddings,
    1,
    Infinity,
  );
  if (s.highFreqFactor <= s.lowFreqFactor) {
    throw new DenotronError(
      `${op}: scaling.highFreqFactor ${s.highFreqFactor} must exceed lowFreqFactor ${s.lowFreqFactor}`,
    );
  }
  const context = s.originalMaxPositionEmbeddings;
  const longest = context / s.lowFreqFactor, shortest = context / s.highFreqFactor;
  return (f) => {
    const wavelength = 2 * Math.PI / f;
    if (wavelength < shortest) return f;
    if (wavelength > longest) return f / s.factor;
    // 0 at the long end of the band, 1 at the short end
    const blend = (context / wavelength - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - blend) * f / s.factor + blend * f;
  };
}

/** The head layout and positions of {@linkcode rope}. */
export interface RopeOptions {
  /** Query heads per token. */
  nHead: number;
  /** Key (and value) heads per token: nHead for multi-head, 1 for multi-query attention. */
  nKvHead: number;
  /** (hs/2) f32 frequencies on qkv's device, from {@linkcode ropeInvFreq}. */
  invFreq: Tensor;
  /** The position of token 0 (the tokens already in a KV cache). @default 0 */
  pos0?: number;
  /**
   * (B,T) i32: each token's own position, in place of pos0 + t (packed documents restart
   * at 0), each >= 0. On cuda opt-in: it needs DENOTRON_CUDA_SPANS=1 (as attention over
   * spans does) until the GPU check has passed it, and there the positions are not checked
   * (a negative one counts as 0; the CPU refuses it). @default none
   */
  positions?: Tensor;
}

/**
 * Rotary position embedding of the packed attention projection: every query and key
 * head is rotated, the value heads are copied. In each head of size hs, for j < hs/2 the
 * pair (x_j, x_{j+hs/2}) of token t turns by the angle (pos0 + t) · invFreq_j, i.e.
 * x·cos + rotate_half(x)·sin with rotate_half(x) = [−x_{hs/2..}, x_{..hs/2}]. Angles,
 * sines and cosines are computed in double and rounded once to fp32. Backward rotates the
 * gradient back; the value heads' gradient passes through.
 *
 * @param qkv (B,T,(nHead+2·nKvHead)·hs): per token nHead query heads, then nKvHead key
 *   heads, then nKvHead value heads
 * @param opts the heads, the frequencies and the first position
 * @returns (B,T,(nHead+2·nKvHead)·hs), the same layout
 *
 * @example
 * ```ts
 * import { Tensor } from "../tensor.ts";
 * import { rope, ropeInvFreq } from "./rope.ts";
 * using invFreq = Tensor.fromArray(ropeInvFreq(2, 10000), [1]);
 * // one token at position 1, one head each of q, k, v with hs = 2
 * using qkv = Tensor.fromArray([1, 0, 1, 0, 1, 0], [1, 1, 6]);
 * using y = rope(qkv, { nHead: 1, nKvHead: 1, invFreq, pos0: 1 });
 * console.log(y.toArray()); // ≈ [cos 1, sin 1, cos 1, sin 1, 1, 0]
 * ```
 */
export function rope(qkv: Tensor, opts: RopeOptions): Tensor {
  const op = "rope";
  expectTensor(op, "qkv", qkv, ["f32", "bf16", "f16"]);
  expectRank(op, "qkv", qkv, 3);
  expectNonEmpty(op, "qkv", qkv);
  const { nHead, nKvHead, invFreq, pos0 = 0 } = opts;
  for (const [name, n] of [["nHead", nHead], ["nKvHead", nKvHead]] as const) {
    if (!Number.isInteger(n) || n < 1) {
      throw new DenotronError(`${op}: ${name} must be a positive integer, got ${n}`);
    }
  }
  const [B, T, width] = qkv.shape;
  const heads = nHead + 2 * nKvHead;
  const hs = width / heads;
  if (!Number.isInteger(hs) || hs % 2 !== 0) {
    throw new DenotronError(
      `${op}: qkv ${fmtShape(qkv.shape)} must have a last dimension of ` +
        `(nHead + 2·nKvHead) · hs = ${heads} · hs with an even head size hs`,
    );
  }
  expectTensor(op, "invFreq", invFreq, ["f32"]);
  if (invFreq.device !== qkv.device) {
    throw new DenotronError(
      `${op}: invFreq is on ${invFreq.device.name} but qkv is on ${qkv.device.name}`,
    );
  }
  expectShape(op, "invFreq", invFreq, [hs / 2], `half the head size ${hs}`);
  if (!Number.isSafeInteger(pos0) || pos0 < 0) {
    throw new DenotronError(`${op}: pos0 must be a non-negative integer, got ${pos0}`);
  }
  const positions = opts.positions;
  if (positions) {
    expectTensor(op, "positions", positions, ["i32"]);
    expectShape(op, "positions", positions, [B, T], "one per token of qkv");
    if (positions.device !== qkv.device) {
      throw new DenotronError(`${op}: positions must be on the device of qkv`);
    }
    if (pos0 !== 0) throw new DenotronError(`${op}: give positions or pos0, not both`);
  }
  const sizes = big(B, T, nHead, nKvHead, hs, pos0);
  const shape = big(B, T, nHead, nKvHead, hs);
  const out = Tensor.empty(qkv.shape, { dtype: qkv.dtype, device: qkv.device });
  const lib = qkv.device.lib;
  const code = DTYPE_CODE[qkv.dtype];
  lib.check(
    positions
      ? lib.sym.dn_rope_positions_forward(
        code,
        out.ptr,
        qkv.ptr,
        invFreq.ptr,
        positions.ptr,
        ...shape,
      )
      : lib.sym.dn_rope_forward(code, out.ptr, qkv.ptr, invFreq.ptr, ...sizes),
    op,
  );
  return record(out, {
    name: op,
    inputs: [qkv],
    backward(g) {
      writeGrad(qkv, (dqkv, accumulate) =>
        lib.check(
          positions
            ? lib.sym.dn_rope_positions_backward(
              DTYPE_CODE[g.dtype],
              dqkv.ptr,
              g.ptr,
              invFreq.ptr,
              positions.ptr,
              ...shape,
              accumulate ? 1 : 0,
            )
            : lib.sym.dn_rope_backward(
              DTYPE_CODE[g.dtype],
              dqkv.ptr,
              g.ptr,
              invFreq.ptr,
              ...sizes,
              accumulate ? 1 : 0,
            ),
          `${op} backward`,
        ));
    },
  });
}
