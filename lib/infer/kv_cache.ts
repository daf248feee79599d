/**
 * defines: KVCache, forwardCached, forwardCachedRows — a GPT forward pass that keeps each layer's keys
 * and values, so generation computes only the new positions.
 *
 * The cached pass reuses the model's own layers and weights and the same ops as
 * `GPT.forward`; only the attention differs (it reads past keys and values from the
 * cache), and the position embedding is read from a view of `wpe` that starts at the
 * first new position.
 *
 * @module
 */
import { noGrad } from "../autograd.ts";
import { DenotronError } from "../errors.ts";
import type { GPT } from "../nn/gpt.ts";
import { add } from "../ops/elementwise.ts";
import { embedding } from "../ops/embedding.ts";
import { attentionDecode, kvAppend } from "../ops/kvcache.ts";
import { linear } from "../ops/matmul.ts";
import { rope } from "../ops/rope.ts";
import { Tensor, tidy } from "../tensor.ts";

/**
 * Per-layer key and value caches of one model, for a batch of B sequences that
 * advance together.
 *
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { forwardCached, KVCache } from "./kv_cache.ts";
 * import { Tensor } from "../tensor.ts";
 * const model = new GPT(GPT_PRESETS.tiny).eval();
 * using cache = new KVCache(model);
 * using prompt = Tensor.fromArray(new Int32Array([1, 2, 3]), [1, 3]);
 * forwardCached(model, prompt, cache).dispose(); // (1,3,V)
 * console.log(cache.length); // 3
 * model.dispose();
 * ```
 */
export class KVCache {
  /** Keys of each layer, (B,maxT,nKvHead·hs): the key heads only. */
  readonly k: Tensor[];
  /** Values of each layer, (B,maxT,nKvHead·hs). */
  readonly v: Tensor[];
  /** Sequences decoded together (B). */
  readonly batch: number;
  /** Positions the cache can hold (the model's blockSize unless asked for fewer). */
  readonly maxT: number;
  /** Positions filled so far; the next token goes to this position. */
  length = 0;

  /**
   * Allocates the keys and values of every layer.
   *
   * @param model the model whose keys and values this holds
   * @param batch sequences decoded together @default 1
   * @param maxT positions to hold @default model.config.blockSize
   */
  constructor(model: GPT, batch = 1, maxT = model.config.blockSize) {
    const { nLayer, blockSize } = model.config;
    if (!Number.isInteger(batch) || batch < 1) {
      throw new DenotronError(`KVCache: batch must be a positive integer, got ${batch}`);
    }
    if (!Number.isInteger(maxT) || maxT < 1 || maxT > blockSize) {
      throw new DenotronError(
        `KVCache: maxT must be an integer in [1, ${blockSize}] (the model's positions), got ${maxT}`,
      );
    }
    this.batch = batch;
    this.maxT = maxT;
    const opts = { device: model.device, dtype: model.emb.wte.dtype };
    this.k = [];
    this.v = [];
    for (let i = 0; i < nLayer; i++) {
      const { nKvHead, headSize } = model.blocks[i].attn;
      this.k.push(Tensor.empty([batch, maxT, nKvHead * headSize], opts));
      this.v.push(Tensor.empty([batch, maxT, nKvHead * headSize], opts));
    }
  }

  /** Positions still free. */
  get remaining(): number {
    return this.maxT - this.length;
  }

  /** Forgets every position (the memory is kept for reuse). */
  reset(): void {
    this.length = 0;
  }

  /** Frees the caches. Safe to call twice. */
  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
  }

  /** Frees the cache (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Logits of the next token after each of `tokens`, which continue the sequences held
 * in `cache` (at positions cache.length, cache.length + 1, ...). Appends their keys
 * and values and advances cache.length. Runs without recording gradients; dropout is
 * not applied (put the model in eval mode for results equal to `model.forward`).
 *
 * @param model the model the cache belongs to
 * @param tokens int32 (B,Tn) with B = cache.batch and Tn <= cache.remaining
 * @param cache the model's cache
 * @param opts lastOnly: return only the last new position's logits, (B,1,V), which is
 *   all sampling needs and saves the output layer's work on a long prompt
 * @returns (B,Tn,V), or (B,1,V) with lastOnly (V: the padded width with a padded
 *   vocabulary, see GPTConfig.vocabMultiple)
 */
export function forwardCached(
  model: GPT,
  tokens: Tensor,
  cache: KVCache,
  opts: { lastOnly?: boolean } = {},
): Tensor {
  const op = "forwardCached";
  if (tokens.ndim !== 2 || tokens.shape[0] !== cache.batch || tokens.shape[1] < 1) {
    throw new DenotronError(
      `${op}: tokens must be (${cache.batch}, Tn) with Tn >= 1, got [${tokens.shape.join(", ")}]`,
    );
  }
  const [B, Tn] = tokens.shape;
  const pos = cache.length;
  if (Tn > cache.remaining) {
    throw new DenotronError(
      `${op}: ${Tn} new tokens do not fit after position ${pos} in a cache of ${cache.maxT} ` +
        `positions; reset the cache or keep fewer tokens`,
    );
  }
  const rows = Array.from({ length: B }, (_, b) => b);
  const logits = forwardCachedRows(model, tokens, cache, rows, rows.map(() => pos), opts);
  cache.length = pos + Tn;
  return logits;
}

/**
 * {@linkcode forwardCached} for some rows of the cache, each at a position of its own:
 * what continuous batching needs, where sequences join and leave a running batch. Row
 * `rows[i]` of the cache takes `tokens[i]` at positions `positions[i]`, ... The GEMMs,
 * norms and MLPs run once over all rows; the position embedding, rotary turn, cache
 * append and attention run once per row when the positions differ or the rows are not
 * consecutive (the same kernels, over views). cache.length is neither read nor moved:
 * the caller keeps each row's length.
 *
 * @param model the model the cache belongs to
 * @param tokens int32 (R,Tn): R = rows.length sequences of Tn new tokens each
 * @param cache the model's cache, cache.batch >= every row + 1
 * @param rows distinct cache rows, one per row of tokens
 * @param positions where each row's new tokens start; positions[i] + Tn <= cache.maxT
 * @param opts lastOnly: only the last new position's logits, (R,1,V)
 * @returns (R,Tn,V), or (R,1,V) with lastOnly
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { forwardCachedRows, KVCache } from "./kv_cache.ts";
 * import { Tensor } from "../tensor.ts";
 * const model = new GPT(GPT_PRESETS.tiny).eval();
 * using cache = new KVCache(model, 4);
 * using a = Tensor.fromArray(new Int32Array([1, 2, 3]), [1, 3]);
 * forwardCachedRows(model, a, cache, [2], [0]).dispose(); // row 2 holds 3 positions
 * using b = Tensor.fromArray(new Int32Array([4, 5]), [2, 1]);
 * // row 2 at position 3 and row 0 at position 0, in one batch: (2,1,V)
 * forwardCachedRows(model, b, cache, [2, 0], [3, 0]).dispose();
 * model.dispose();
 * ```
 */
export function forwardCachedRows(
  model: GPT,
  tokens: Tensor,
  cache: KVCache,
  rows: readonly number[],
  positions: readonly number[],
  opts: { lastOnly?: boolean } = {},
): Tensor {
  const op = "forwardCachedRows";
  const R = rows.length;
  if (
    tokens.ndim !== 2 || tokens.dtype !== "i32" || tokens.shape[0] !== R || R < 1 ||
    tokens.shape[1] < 1
  ) {
    throw new DenotronError(
      `${op}: tokens must be int32 (${R}, Tn) with Tn >= 1 (one row per cache row), got ` +
        `${tokens.dtype} [${tokens.shape.join(", ")}]`,
    );
  }
  const Tn = tokens.shape[1];
  if (positions.length !== R) {
    throw new DenotronError(`${op}: ${R} rows but ${positions.length} positions`);
  }
  rows.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 0 || r >= cache.batch || rows.indexOf(r) !== i) {
      throw new DenotronError(
        `${op}: rows must be distinct integers in [0, ${cache.batch}), got [${rows.join(", ")}]`,
      );
    }
    const p = positions[i];
    if (!Number.isInteger(p) || p < 0 || p + Tn > cache.maxT) {
      throw new DenotronError(
        `${op}: ${Tn} new tokens do not fit after position ${p} in a cache of ${cache.maxT} ` +
          `positions (row ${r}); reset the row or keep fewer tokens`,
      );
    }
  });
  if (
    cache.k.length !== model.blocks.length ||
    model.blocks.some((b, i) => cache.k[i].shape[2] !== b.attn.nKvHead * b.attn.headSize)
  ) {
    throw new DenotronError(`${op}: the cache was made for another model`);
  }
  const C = model.config.nEmbd;
  const wpe = model.emb.wpe;
  const maxT = cache.maxT;
  type Group = { first: number; count: number; row: number; pos: number };
  // One call covers every row when they share a position and are consecutive rows of the
  // cache; otherwise each row gets its own call over views (same kernels, same results).
  const samePos = positions.every((p) => p === positions[0]);
  const groups = samePos && rows.every((r, i) => r === rows[0] + i)
    ? [{ first: 0, count: R, row: rows[0], pos: positions[0] }]
    : rows.map((row, i) => ({ first: i, count: 1, row, pos: positions[i] }));
  /** Runs `fn` per group on views of `t` (R,Tn,W) and gathers the results into (R,Tn,W'). */
  const perGroup = (t: Tensor, width: number, fn: (part: Tensor, g: Group) => Tensor) => {
    if (groups.length === 1) return fn(t, groups[0]);
    const W = t.shape[2];
    let out: Tensor | null = null;
    for (const g of groups) {
      const part = fn(t.view([1, Tn, W], g.first * Tn * W), g);
      out ??= Tensor.empty([R, Tn, width], { device: part.device, dtype: part.dtype });
      out.view([1, Tn, width], g.first * Tn * width).copy_(part);
    }
    return out!;
  };
  const logits = noGrad(() =>
    tidy(() => {
      // The embedding kernel adds wpe rows 0..Tn-1; a view that starts at row `pos`
      // makes those rows pos..pos+Tn-1.
      // Rotary models have no table: their positions turn q and k below.
      const embed = (ids: Tensor, pos: number) => {
        const wpeFrom = wpe ? wpe.view([wpe.shape[0] - pos, C], pos * C) : null;
        return embedding(ids, model.emb.wte, wpeFrom, model.config.vocabSize); // (r,Tn,C)
      };
      let x = samePos ? embed(tokens, positions[0]) : perGroup(
        tokens.view([R, Tn, 1]),
        C,
        (ids, g) => embed(ids.view([1, Tn]), g.pos),
      ); // (R,Tn,C)
      model.blocks.forEach((block, i) => {
        const { nHead, nKvHead, headSize, rope: invFreq } = block.attn;
        const h = block.ln1.forward(x);
        // (R,Tn,(nHead+2·nKvHead)·hs), rotated to each row's positions when rotary
        const qkv = samePos ? block.attn.project(h, positions[0]) : perGroup(
          block.attn.qkv.forward(h),
          (nHead + 2 * nKvHead) * headSize,
          (part, g) => invFreq ? rope(part, { nHead, nKvHead, invFreq, pos0: g.pos }) : part,
        );
        const W = nKvHead * headSize;
        const y = perGroup(qkv, C, (part, g) => {
          const k = cache.k[i].view([g.count, maxT, W], g.row * maxT * W);
          const v = cache.v[i].view([g.count, maxT, W], g.row * maxT * W);
          kvAppend(k, v, part, nHead, g.pos, nKvHead);
          return attentionDecode(part, k, v, nHead, g.pos, nKvHead); // (r,Tn,C)
        });
        const x1 = add(x, block.attn.proj.forward(y));
        x = add(x1, block.mlp.forward(block.ln2.forward(x1)));
      });
      if (opts.lastOnly && Tn > 1) {
        // Gather the last row of each sequence: (R,1,C).
        const last = Tensor.empty([R, 1, C], { device: x.device, dtype: x.dtype });
        for (let b = 0; b < R; b++) {
          last.view([C], b * C).copy_(x.view([C], (b * Tn + Tn - 1) * C));
        }
        x = last;
      }
      return linear(model.lnf.forward(x), model.outputWeight, null);
    })
  );
  return logits;
}
