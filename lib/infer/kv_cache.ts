/**
 * defines: KVCache, forwardCached — a GPT forward pass that keeps each layer's keys
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
  if (
    cache.k.length !== model.blocks.length ||
    model.blocks.some((b, i) => cache.k[i].shape[2] !== b.attn.nKvHead * b.attn.headSize)
  ) {
    throw new DenotronError(`${op}: the cache was made for another model`);
  }
  const [B, Tn] = tokens.shape;
  const pos = cache.length;
  if (Tn > cache.remaining) {
    throw new DenotronError(
      `${op}: ${Tn} new tokens do not fit after position ${pos} in a cache of ${cache.maxT} ` +
        `positions; reset the cache or keep fewer tokens`,
    );
  }
  const C = model.config.nEmbd;
  const wpe = model.emb.wpe;
  const logits = noGrad(() =>
    tidy(() => {
      // The embedding kernel adds wpe rows 0..Tn-1; a view that starts at row `pos`
      // makes those rows pos..pos+Tn-1.
      // Rotary models have no table: their positions turn q and k below.
      const wpeFrom = wpe ? wpe.view([wpe.shape[0] - pos, C], pos * C) : null;
      let x = embedding(tokens, model.emb.wte, wpeFrom, model.config.vocabSize); // (B,Tn,C)
      model.blocks.forEach((block, i) => {
        const { nHead, nKvHead } = block.attn;
        // (B,Tn,(nHead+2·nKvHead)·hs), rotated to positions pos.. when rotary
        const qkv = block.attn.project(block.ln1.forward(x), pos);
        kvAppend(cache.k[i], cache.v[i], qkv, nHead, pos, nKvHead);
        const y = attentionDecode(qkv, cache.k[i], cache.v[i], nHead, pos, nKvHead); // (B,Tn,C)
        const x1 = add(x, block.attn.proj.forward(y));
        x = add(x1, block.mlp.forward(block.ln2.forward(x1)));
      });
      if (opts.lastOnly && Tn > 1) {
        // Gather the last row of each sequence: (B,1,C).
        const last = Tensor.empty([B, 1, C], { device: x.device, dtype: x.dtype });
        for (let b = 0; b < B; b++) {
          last.view([C], b * C).copy_(x.view([C], (b * Tn + Tn - 1) * C));
        }
        x = last;
      }
      return linear(model.lnf.forward(x), model.outputWeight, null);
    })
  );
  cache.length = pos + Tn;
  return logits;
}
