/**
 * defines: GenerateOptions, generate, generateStream — text continuation with a KV
 * cache: the prompt is run once (prefill), then each new token costs one cached
 * position (decode).
 *
 * @module
 */
import { Rng } from "../data/gpt_dataset.ts";
import { DenotronError } from "../errors.ts";
import type { GPT } from "../nn/gpt.ts";
import { Tensor } from "../tensor.ts";
import { forwardCached, KVCache } from "./kv_cache.ts";
import { type SampleOptions, sampleToken } from "./sampling.ts";

/** What to generate and how to draw each token. */
export interface GenerateOptions extends SampleOptions {
  /** Tokens to generate at most. */
  maxNewTokens: number;
  /** Seeds the sampling stream: the same seed, model and prompt give the same tokens. @default 0 */
  seed?: number;
  /**
   * Token ids that end generation (typically the tokenizer's end-of-text id). The
   * stopping token is returned and streamed as the last token. @default none
   */
  stopAt?: number | readonly number[];
  /** Called with each new token as soon as it is drawn. */
  onToken?: (token: number) => void;
}

/**
 * The new tokens one at a time. When the model's context is full, the cache is
 * rebuilt from the most recent half of the context, so generation can run past
 * blockSize (each rebuild costs one prefill).
 */
function* decode(model: GPT, prompt: readonly number[], opts: GenerateOptions): Generator<number> {
  const { maxNewTokens } = opts;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
    throw new DenotronError(`generate: maxNewTokens must be an integer >= 0, got ${maxNewTokens}`);
  }
  if (prompt.length === 0) {
    throw new DenotronError(
      "generate: the prompt is empty; start from at least one token (e.g. end-of-text)",
    );
  }
  const V = model.config.vocabSize;
  const bad = prompt.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= V);
  if (bad >= 0) {
    throw new DenotronError(
      `generate: prompt token ${prompt[bad]} at index ${bad} is outside the vocabulary [0, ${V})`,
    );
  }
  const stop = new Set(typeof opts.stopAt === "number" ? [opts.stopAt] : opts.stopAt ?? []);
  const rng = new Rng(opts.seed ?? 0);
  const sampling: SampleOptions = {
    temperature: opts.temperature,
    topK: opts.topK,
    topP: opts.topP,
  };
  const blockSize = model.config.blockSize;
  const wasTraining = model.training;
  model.eval();
  using cache = new KVCache(model);
  try {
    // Everything the model has seen, for rebuilding the cache when it fills up.
    const context = prompt.slice(-blockSize);
    let feed = context.slice();
    for (let n = 0; n < maxNewTokens; n++) {
      if (feed.length > cache.remaining) {
        cache.reset();
        feed = context.slice(-Math.max(1, Math.floor(blockSize / 2)));
      }
      const row = step(model, cache, feed);
      const token = sampleToken(row, sampling, rng);
      opts.onToken?.(token);
      yield token;
      if (stop.has(token)) return;
      context.push(token);
      feed = [token];
    }
  } finally {
    model.train(wasTraining);
  }
}

/** Runs `tokens` through the cache and returns the logits after the last one, (V). */
function step(model: GPT, cache: KVCache, tokens: number[]): Float32Array {
  using input = Tensor.fromArray(Int32Array.from(tokens), [1, tokens.length], {
    device: model.device,
  });
  using logits = forwardCached(model, input, cache, { lastOnly: true }); // (1,1,Vp)
  // a padded vocabulary's extra columns are no token's
  return (logits.toArray() as Float32Array).subarray(0, model.config.vocabSize);
}

/**
 * Continues `prompt` by up to `maxNewTokens` tokens.
 *
 * @param model the model (switched to eval mode for the call, then restored)
 * @param prompt token ids, at least one; only the last blockSize are used
 * @param opts length, sampling, seed, stop tokens, streaming callback
 * @returns the new tokens (the stop token included when one ended generation)
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { generate } from "./generate.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * const out = generate(model, [104, 105], { maxNewTokens: 5, temperature: 0.8, topK: 20, seed: 1 });
 * console.log(out.length); // 5
 * model.dispose();
 * ```
 */
export function generate(model: GPT, prompt: readonly number[], opts: GenerateOptions): number[] {
  return [...decode(model, prompt, opts)];
}

/**
 * The same tokens as {@linkcode generate}, as an async iterator that yields to the
 * event loop between tokens (so a server or UI stays responsive while streaming).
 *
 * @param model the model
 * @param prompt token ids, at least one
 * @param opts as for generate
 * @returns an async iterator over the new tokens
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { generateStream } from "./generate.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * for await (const t of generateStream(model, [104], { maxNewTokens: 3, seed: 2 })) console.log(t);
 * model.dispose();
 * ```
 */
export async function* generateStream(
  model: GPT,
  prompt: readonly number[],
  opts: GenerateOptions,
): AsyncGenerator<number> {
  for (const token of decode(model, prompt, opts)) {
    yield token;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}
