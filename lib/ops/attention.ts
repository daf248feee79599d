/**
 * defines: attention, qkvHeads, documentSpans — causal self-attention with grouped key/value heads (GQA)
 * as one fused op per direction; multi-head (nKvHead = nHead) and multi-query
 * (nKvHead = 1) attention are its two ends.
 *
 * @module
 */
import { gradOf, record } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { big, expectRank, expectTensor } from "./check.ts";

/** The sizes of a packed qkv projection (B,T,(nHead+2·nKvHead)·headSize). */
export interface QkvHeads {
  B: number;
  T: number;
  /** Query heads. */
  nHead: number;
  /** Key/value heads; divides nHead. */
  nKvHead: number;
  /** Size of every head. */
  headSize: number;
}

/**
 * Checks that `qkv` (B,T,(nHead+2·nKvHead)·headSize) packs nHead query heads, then nKvHead
 * key heads, then nKvHead value heads per token, and returns the sizes.
 *
 * @param op the op named in errors
 * @param qkv the packed projection
 * @param nHead query heads
 * @param nKvHead key/value heads; must divide nHead
 * @returns B, T, the head counts and the head size
 */
export function qkvHeads(op: string, qkv: Tensor, nHead: number, nKvHead: number): QkvHeads {
  for (const [name, v] of [["nHead", nHead], ["nKvHead", nKvHead]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new DenotronError(`${op}: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (nHead % nKvHead !== 0) {
    throw new DenotronError(
      `${op}: nHead ${nHead} is not a multiple of nKvHead ${nKvHead}; each key/value head ` +
        `must serve the same number of query heads`,
    );
  }
  expectRank(op, "qkv", qkv, 3);
  const [B, T, W] = qkv.shape, heads = nHead + 2 * nKvHead;
  if (W % heads !== 0 || W < heads) {
    throw new DenotronError(
      `${op}: qkv ${fmtShape(qkv.shape)} must have a last dimension of ` +
        `(nHead + 2·nKvHead)·headSize = ${heads}·headSize (nHead ${nHead}, nKvHead ${nKvHead})`,
    );
  }
  return { B, T, nHead, nKvHead, headSize: W / heads };
}

/**
 * softmax(q kᵀ/√hs + causal mask) v for each query head; query head h uses key/value head
 * h / (nHead/nKvHead), read in place (no repeated copy). Only the log-sum-exp of each score
 * row (B,nHead,T) is kept for backward, which recomputes the probabilities.
 *
 * @example
 * ```ts
 * import { attention } from "./attention.ts";
 * import { Tensor } from "../tensor.ts";
 * // 4 query heads sharing 2 key/value heads of size 8: width (4 + 2·2)·8 = 64
 * using qkv = Tensor.zeros([1, 5, 64]);
 * using y = attention(qkv, 4, 2);
 * console.log(y.shape); // [1, 5, 32]
 * ```
 *
 * @param qkv (B,T,(nHead+2·nKvHead)·hs): per token nHead query heads, then nKvHead key
 *   heads, then nKvHead value heads (GPT-2's (B,T,3C) when nKvHead = nHead)
 * @param nHead query heads
 * @param nKvHead key/value heads; must divide nHead @default nHead
 * @param spans (B,T,2) i32: each query's key range [lo, hi), 0 ≤ lo ≤ hi ≤ T, for packed
 *   documents ({@link documentSpans}) or padding masks; a query with an empty range gives 0.
 *   On CUDA opt-in with DENOTRON_CUDA_SPANS=1 until the GPU check has passed it.
 *   @default the causal range [0, t] of query t
 * @returns (B,T,nHead·hs)
 */
export function attention(
  qkv: Tensor,
  nHead: number,
  nKvHead: number = nHead,
  spans?: Tensor,
): Tensor {
  const op = "attention";
  expectTensor(op, "qkv", qkv, ["f32", "bf16", "f16"]);
  const { B, T, headSize } = qkvHeads(op, qkv, nHead, nKvHead);
  if (spans) {
    expectTensor(op, "spans", spans, ["i32"]);
    if (
      spans.shape.length !== 3 || spans.shape[0] !== B || spans.shape[1] !== T ||
      spans.shape[2] !== 2
    ) {
      throw new DenotronError(
        `${op}: spans ${fmtShape(spans.shape)} must be (B,T,2) = ${fmtShape([B, T, 2])}`,
      );
    }
    if (spans.device !== qkv.device) {
      throw new DenotronError(`${op}: spans must be on the device of qkv`);
    }
  }
  const sizes = big(B, T, nHead, nKvHead, headSize);
  const out = Tensor.empty([B, T, nHead * headSize], { dtype: qkv.dtype, device: qkv.device });
  const lse = Tensor.empty([B, nHead, T], { device: qkv.device });
  const lib = qkv.device.lib;
  const code = DTYPE_CODE[qkv.dtype];
  lib.check(
    spans
      ? lib.sym.dn_attention_spans_forward(code, out.ptr, lse.ptr, qkv.ptr, spans.ptr, ...sizes)
      : lib.sym.dn_attention_forward(code, out.ptr, lse.ptr, qkv.ptr, ...sizes),
    op,
  );
  const result = record(out, {
    name: op,
    inputs: [qkv],
    backward(g) {
      const args = [
        DTYPE_CODE[g.dtype],
        gradOf(qkv).ptr,
        g.ptr,
        qkv.ptr,
        out.ptr,
        lse.ptr,
      ] as const;
      lib.check(
        spans
          ? lib.sym.dn_attention_spans_backward(...args, spans.ptr, ...sizes)
          : lib.sym.dn_attention_backward(...args, ...sizes),
        `${op} backward`,
      );
    },
  });
  if (!result.gradFn) lse.dispose();
  return result;
}

/**
 * The key ranges of packed sequences for {@link attention}: query t of a row reads from
 * the start of its document to itself, so no document sees another.
 *
 * @param documentStarts for each row of the batch, the positions where a document starts
 *   (0 is always one)
 * @param T the sequence length
 * @returns (B·T·2) values [lo, hi), to upload as a (B,T,2) i32 tensor
 * @example
 * ```ts
 * import { documentSpans } from "./attention.ts";
 * documentSpans([[0, 2]], 4); // [0,1, 0,2, 2,3, 2,4]
 * ```
 */
export function documentSpans(
  documentStarts: readonly (readonly number[])[],
  T: number,
): Int32Array {
  const spans = new Int32Array(documentStarts.length * T * 2);
  documentStarts.forEach((starts, b) => {
    let start = 0;
    for (let t = 0; t < T; t++) {
      if (starts.includes(t)) start = t;
      spans[2 * (b * T + t)] = start;
      spans[2 * (b * T + t) + 1] = t + 1;
    }
  });
  return spans;
}
