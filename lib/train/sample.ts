/**
 * A plain sampling loop over the full forward pass (no KV cache): enough to
 * show what a freshly trained model writes.
 *
 * defines: SampleOptions, sampleTokens
 *
 * @module
 */

import { noGrad } from "../autograd.ts";
import { Rng } from "../data/gpt_dataset.ts";
import type { GPT } from "../nn/gpt.ts";
import { Tensor, tidy } from "../tensor.ts";

/** Options of {@link sampleTokens}. */
export interface SampleOptions {
  /** Tokens to add. @default 200 */
  maxNewTokens?: number;
  /** Softmax temperature; 0 takes the most likely token. @default 0.8 */
  temperature?: number;
  /** Sample among the k most likely tokens only; 0 for all. @default 40 */
  topK?: number;
  /** Seed of the sampler. @default 0 */
  seed?: number;
  /** Stop early at this token (e.g. end-of-text). */
  stopToken?: number;
}

/**
 * Continues `prompt` one token at a time, each step a forward pass over the
 * last `blockSize` tokens.
 *
 * @param model the model (put in eval mode for the call)
 * @param prompt token ids to start from (at least one)
 * @param options length, temperature, top-k, seed, stop token
 * @returns the new tokens only
 */
export function sampleTokens(
  model: GPT,
  prompt: readonly number[],
  options: SampleOptions = {},
): number[] {
  if (prompt.length === 0) throw new Error("sampleTokens: the prompt needs at least one token");
  const { maxNewTokens = 200, temperature = 0.8, topK = 40, seed = 0, stopToken } = options;
  const rng = new Rng(seed);
  const tokens = [...prompt];
  const V = model.config.vocabSize;
  const wasTraining = model.training;
  model.eval();
  try {
    const B = model.config.blockSize;
    // The window starts where it started before until it is full, then jumps
    // forward by half a block, rather than sliding by one: a small model asked
    // for every token at its last position drifts into doubled letters.
    let start = Math.max(0, tokens.length - B);
    for (let n = 0; n < maxNewTokens; n++) {
      if (tokens.length - start > B) start += Math.max(1, B >> 1);
      const context = Int32Array.from(tokens.slice(start));
      const T = context.length;
      // Only the last position's logits matter: (1, T, V) -> the last V values.
      const logits = noGrad(() =>
        tidy(() => {
          using x = Tensor.fromArray(context, [1, T], { device: model.device });
          return model.forward(x).toArray().slice((T - 1) * V, T * V) as Float32Array;
        })
      );
      const next = pick(logits, temperature, topK, rng);
      tokens.push(next);
      if (next === stopToken) break;
    }
  } finally {
    model.train(wasTraining);
  }
  return tokens.slice(prompt.length);
}

/** Draws a token from softmax(logits / temperature) restricted to the top k. */
function pick(logits: Float32Array, temperature: number, topK: number, rng: Rng): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature <= 0) return best;
  let ids = Array.from(logits.keys());
  if (topK > 0 && topK < ids.length) {
    ids = ids.sort((a, b) => logits[b] - logits[a]).slice(0, topK);
  }
  const weights = ids.map((i) => Math.exp((logits[i] - logits[best]) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let u = (rng.nextU32() / 2 ** 32) * total;
  for (let j = 0; j < ids.length; j++) {
    u -= weights[j];
    if (u <= 0) return ids[j];
  }
  return ids[ids.length - 1];
}
