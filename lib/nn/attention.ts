/**
 * defines: CausalSelfAttention — qkv projection, fused attention (causal, or over the key
 *          ranges of a layout), output projection;
 *          SequenceLayout, sequenceLayout — documents packed into rows;
 *          paddingLayout — an encoder's rows of valid tokens followed by padding.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { DenotronError } from "../errors.ts";
import { attention, documentSpans } from "../ops/attention.ts";
import { rope } from "../ops/rope.ts";
import { type DType, Tensor } from "../tensor.ts";
import { Linear } from "./layers.ts";
import { Module } from "./module.ts";
import { checkpoint } from "./recompute.ts";

/**
 * Self-attention with nHead query heads sharing nKvHead key/value heads: GPT-2's
 * multi-head attention when nKvHead = nHead (the default), grouped-query attention
 * (Llama-family) when fewer. Causal without a layout; with one, each query reads its
 * layout's key range (an encoder's whole row of valid tokens, see paddingLayout).
 */
export class CausalSelfAttention extends Module {
  /** (C → (nHead + 2·nKvHead)·hs): query heads, then key heads, then value heads. */
  readonly qkv: Linear;
  /** (C → C): the output projection. */
  readonly proj: Linear;
  /** Number of query heads. */
  readonly nHead: number;
  /** Number of key/value heads; divides nHead. */
  readonly nKvHead: number;
  /** Size of each head, C / nHead. */
  readonly headSize: number;
  /** Rotary frequencies (headSize/2, f32), owned by the model; null: no rotation. */
  readonly rope: Tensor | null;
  /** Selective recomputation: keep only qkv; backward reruns the core attention. */
  recomputeCoreAttention = false;
  /**
   * Creates the qkv and output projections.
   *
   * @param width the model width C
   * @param nHead query heads; must divide C
   * @param opts projStd, device, dtype; nKvHead: key/value heads, a divisor of nHead
   *   (default nHead); bias: biases in both projections (default true); rope: rotary
   *   frequencies applied to q and k (default none: learned positions outside)
   */
  constructor(
    width: number,
    nHead: number,
    opts: {
      projStd: number;
      device: Device;
      dtype?: DType;
      nKvHead?: number;
      bias?: boolean;
      rope?: Tensor | null;
    },
  ) {
    super();
    const nKvHead = opts.nKvHead ?? nHead;
    if (!Number.isInteger(nHead) || nHead < 1 || width % nHead !== 0) {
      throw new DenotronError(
        `CausalSelfAttention: nHead ${nHead} does not divide the width ${width}`,
      );
    }
    if (!Number.isInteger(nKvHead) || nKvHead < 1 || nHead % nKvHead !== 0) {
      throw new DenotronError(
        `CausalSelfAttention: nKvHead ${nKvHead} must be a positive divisor of nHead ${nHead}`,
      );
    }
    this.nHead = nHead;
    this.nKvHead = nKvHead;
    this.headSize = width / nHead;
    this.rope = opts.rope ?? null;
    const o = { device: opts.device, dtype: opts.dtype, bias: opts.bias ?? true };
    this.qkv = this.child("qkv", new Linear(width, (nHead + 2 * nKvHead) * this.headSize, o));
    this.proj = this.child("proj", new Linear(width, width, { ...o, std: opts.projStd }));
  }
  /**
   * The queries, keys and values of x, q and k turned to their positions when rotary:
   * what the core attention (and a KV cache) reads.
   *
   * @param x (B,T,C) the normalised residual stream
   * @param pos0 the position of the first token @default 0
   * @param layout packed documents: each token's position @default none
   * @returns (B,T,(nHead + 2·nKvHead)·headSize)
   */
  project(x: Tensor, pos0 = 0, layout?: SequenceLayout): Tensor {
    const qkv = this.qkv.forward(x);
    if (!this.rope) return qkv;
    const { nHead, nKvHead } = this;
    return layout
      ? rope(qkv, { nHead, nKvHead, invFreq: this.rope, positions: layout.positions })
      : rope(qkv, { nHead, nKvHead, invFreq: this.rope, pos0 });
  }

  /**
   * (B,T,C) → (B,T,C)
   *
   * @param x the normalised residual stream
   * @param pos0 the position of the first token (rotary positions) @default 0
   * @param layout packed documents: positions, and key ranges that stay inside each
   *   document @default none (one causal sequence per row)
   */
  forward(x: Tensor, pos0 = 0, layout?: SequenceLayout): Tensor {
    const qkv = this.project(x, pos0, layout);
    // (B,T,(nHead+2·nKvHead)·hs) → (B,T,C)
    const core = (q: Tensor) => attention(q, this.nHead, this.nKvHead, layout?.spans);
    const y = this.recomputeCoreAttention ? checkpoint(qkv, core) : core(qkv);
    return this.proj.forward(y);
  }
}

/**
 * How the tokens of each row of a batch see each other: every token's position, and the
 * key range its attention reads. Packed documents ({@linkcode sequenceLayout}): positions
 * restart at each document and a token reads its document's start to itself. Padded
 * encoder rows ({@linkcode paddingLayout}): positions 0..T-1 and every token reads the
 * row's valid tokens.
 */
export interface SequenceLayout {
  /** (B,T) i32: the position of each token in its document. */
  readonly positions: Tensor;
  /** (B,T,2) i32: each query's key range [lo, hi) (see attention()). */
  readonly spans: Tensor;
}

/**
 * The layout of packed rows, from where each document starts.
 *
 * @param documentStarts for each row, the positions where a document starts (0 always is)
 * @param T the row length
 * @param device where the tensors go @default the default device
 * @returns positions and spans; the caller disposes them
 * @example
 * ```ts
 * import { sequenceLayout } from "./attention.ts";
 * const layout = sequenceLayout([[0, 3]], 5); // documents [0, 3) and [3, 5)
 * layout.positions.toArray(); // [0, 1, 2, 0, 1]
 * layout.positions.dispose();
 * layout.spans.dispose();
 * ```
 */
export function sequenceLayout(
  documentStarts: readonly (readonly number[])[],
  T: number,
  device?: Device,
): SequenceLayout {
  const B = documentStarts.length;
  documentStarts.forEach((starts, b) => {
    if (starts.some((t) => !Number.isInteger(t) || t < 0 || t >= T)) {
      throw new DenotronError(
        `sequenceLayout: row ${b} has document starts [${starts.join(", ")}] outside [0, ${T})`,
      );
    }
  });
  const spans = documentSpans(documentStarts, T);
  const positions = new Int32Array(B * T);
  for (let i = 0; i < B * T; i++) positions[i] = i % T - spans[2 * i];
  const opts = device ? { device } : {};
  return {
    positions: Tensor.fromArray(positions, [B, T], opts),
    spans: Tensor.fromArray(spans, [B, T, 2], opts),
  };
}

/**
 * The layout of an encoder's padded rows: each row's first `validLengths[b]` tokens are
 * real, the rest padding. Every query of a row, padding included, reads keys
 * [0, validLengths[b]), so the valid tokens never see the padding (the padding positions'
 * outputs are defined but meaningless: give them target -1). Positions are 0..T-1.
 *
 * @param validLengths for each row, its valid tokens, in [0, T]
 * @param T the row length
 * @param device where the tensors go @default the default device
 * @returns positions (B,T) and spans (B,T,2); the caller disposes them
 * @example
 * ```ts
 * import { paddingLayout } from "./attention.ts";
 * const layout = paddingLayout([3], 5); // 3 tokens, then 2 of padding
 * layout.spans.toArray(); // [0, 3, 0, 3, 0, 3, 0, 3, 0, 3]
 * layout.positions.dispose();
 * layout.spans.dispose();
 * ```
 */
export function paddingLayout(
  validLengths: readonly number[],
  T: number,
  device?: Device,
): SequenceLayout {
  if (!Number.isInteger(T) || T < 1) {
    throw new DenotronError(`paddingLayout: T must be a positive integer, got ${T}`);
  }
  const B = validLengths.length;
  const spans = new Int32Array(B * T * 2);
  const positions = new Int32Array(B * T);
  validLengths.forEach((n, b) => {
    if (!Number.isInteger(n) || n < 0 || n > T) {
      throw new DenotronError(
        `paddingLayout: row ${b} has ${n} valid tokens; expected an integer in [0, ${T}]`,
      );
    }
    for (let t = 0; t < T; t++) {
      spans[2 * (b * T + t) + 1] = n;
      positions[b * T + t] = t;
    }
  });
  const opts = device ? { device } : {};
  return {
    positions: Tensor.fromArray(positions, [B, T], opts),
    spans: Tensor.fromArray(spans, [B, T, 2], opts),
  };
}
