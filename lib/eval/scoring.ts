/**
 * defines: EvalModel, gptEvalModel, continuationScore, streamNll, perplexity,
 * lambadaScore, multipleChoiceScore — log-likelihood scoring of token sequences with
 * any model that gives next-token logits.
 *
 * Everything here works on an {@linkcode EvalModel}, a plain function from tokens to
 * logits, so the trainer (with its own model in whatever layout) and the evaluation
 * CLI share one scorer.
 *
 * @module
 */
import { noGrad } from "../autograd.ts";
import { DenotronError } from "../errors.ts";
import type { GPT } from "../nn/gpt.ts";
import { Tensor } from "../tensor.ts";

/** What scoring needs from a model. */
export interface EvalModel {
  /** Width of one row of logits (may exceed the tokenizer's vocabulary when padded). */
  readonly vocabSize: number;
  /** Most tokens one call may take (the model's positions). */
  readonly contextLength: number;
  /** Next-token logits for every position of `tokens`, (T,V) row-major. */
  logits(tokens: readonly number[]): Float32Array;
}

/**
 * An {@linkcode EvalModel} over a GPT's full forward pass (no dropout: call
 * `model.eval()` first).
 *
 * @param model the model
 * @returns the scorer's view of it
 */
export function gptEvalModel(model: GPT): EvalModel {
  return {
    vocabSize: model.config.vocabSize,
    contextLength: model.config.blockSize,
    logits: (tokens) =>
      noGrad(() => {
        using t = Tensor.fromArray(Int32Array.from(tokens), [1, tokens.length]);
        using out = model.forward(t); // (1,T,V)
        return out.toArray() as Float32Array;
      }),
  };
}

/** log-softmax of one row at `target`, and whether `target` is the row's argmax. */
function rowLogProb(logits: Float32Array, row: number, V: number, target: number) {
  const off = row * V;
  let max = -Infinity;
  let best = 0;
  for (let v = 0; v < V; v++) {
    if (logits[off + v] > max) {
      max = logits[off + v];
      best = v;
    }
  }
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[off + v] - max);
  return { logProb: logits[off + target] - max - Math.log(sum), greedy: best === target };
}

/** The log-likelihood of a continuation given a context. */
export interface ContinuationScore {
  /** Sum of the continuation tokens' log-probabilities (nats). */
  logProb: number;
  /** Whether greedy decoding would produce every continuation token. */
  greedy: boolean;
  /** Continuation tokens scored. */
  tokens: number;
}

/**
 * Scores `continuation` after `context` in one forward pass. When the two do not fit
 * the model's context, the context is cut from the left.
 *
 * @param model the scorer
 * @param context at least one token (e.g. end-of-text)
 * @param continuation the tokens to score, at least one, fewer than the context length
 * @returns summed log-probability and greedy match
 */
export function continuationScore(
  model: EvalModel,
  context: readonly number[],
  continuation: readonly number[],
): ContinuationScore {
  if (context.length === 0 || continuation.length === 0) {
    throw new DenotronError("continuationScore: context and continuation need a token each");
  }
  if (continuation.length >= model.contextLength) {
    throw new DenotronError(
      `continuationScore: a continuation of ${continuation.length} tokens does not fit a context of ${model.contextLength}`,
    );
  }
  const keep = Math.min(context.length, model.contextLength - continuation.length);
  const input = [...context.slice(context.length - keep), ...continuation];
  const logits = model.logits(input.slice(0, -1)); // (T-1,V)
  let logProb = 0;
  let greedy = true;
  for (let i = 0; i < continuation.length; i++) {
    const r = rowLogProb(logits, keep - 1 + i, model.vocabSize, continuation[i]);
    logProb += r.logProb;
    greedy &&= r.greedy;
  }
  return { logProb, greedy, tokens: continuation.length };
}

/**
 * Negative log-likelihood of a token stream with a sliding window: windows of the
 * model's context length start every `stride` tokens, and each window scores only the
 * tokens no earlier window scored, so every token after the first is scored once with
 * at least `contextLength - stride` tokens of context (all its context in the first
 * window). `stride = contextLength` gives disjoint windows.
 *
 * @param model the scorer
 * @param tokens the stream; its first token is context only
 * @param stride tokens between window starts, in [1, contextLength] @default contextLength
 * @returns summed NLL (nats) and tokens scored (tokens.length - 1)
 */
export function streamNll(
  model: EvalModel,
  tokens: readonly number[],
  stride = model.contextLength,
): { nll: number; tokens: number } {
  const W = model.contextLength;
  if (!Number.isInteger(stride) || stride < 1 || stride > W) {
    throw new DenotronError(`streamNll: stride must be an integer in [1, ${W}], got ${stride}`);
  }
  let nll = 0;
  let scoredTo = 0; // tokens[1..scoredTo] are scored
  for (let start = 0; scoredTo < tokens.length - 1; start += stride) {
    const end = Math.min(start + W, tokens.length - 1); // last target index
    const logits = model.logits(tokens.slice(start, end)); // (end-start,V)
    for (let j = scoredTo + 1; j <= end; j++) {
      nll -= rowLogProb(logits, j - 1 - start, model.vocabSize, tokens[j]).logProb;
    }
    scoredTo = end;
  }
  return { nll, tokens: Math.max(0, tokens.length - 1) };
}

/** Perplexity results over a set of documents. */
export interface PerplexityResult {
  /** exp(mean token NLL). */
  perplexity: number;
  /** Mean token NLL in nats. */
  loss: number;
  /** Total NLL in bits over the UTF-8 bytes of the text scored. */
  bitsPerByte: number;
  /** Tokens scored. */
  tokens: number;
  /** UTF-8 bytes of the text scored. */
  bytes: number;
}

/**
 * Combines summed NLL with token and byte counts.
 *
 * @param nll total NLL, nats
 * @param tokens tokens scored
 * @param bytes UTF-8 bytes of the text those tokens spell
 */
export function perplexityFrom(nll: number, tokens: number, bytes: number): PerplexityResult {
  const loss = tokens > 0 ? nll / tokens : NaN;
  return {
    perplexity: Math.exp(loss),
    loss,
    bitsPerByte: bytes > 0 ? nll / Math.LN2 / bytes : NaN,
    tokens,
    bytes,
  };
}

/**
 * LAMBADA-style last word: the text is split at its last space; the word (with its
 * leading space) is encoded apart from the context, and counts as right when greedy
 * decoding gives every one of its tokens.
 *
 * @param model the scorer
 * @param encode the tokenizer's encode
 * @param eotId end-of-text, put before each context
 * @param text the passage
 * @returns whether it was right, and the word's log-probability
 */
export function lambadaScore(
  model: EvalModel,
  encode: (text: string) => number[],
  eotId: number,
  text: string,
): ContinuationScore {
  const t = text.trim();
  const cut = t.lastIndexOf(" ");
  if (cut <= 0) throw new DenotronError(`lambada: the text has no last word after a space`);
  return continuationScore(model, [eotId, ...encode(t.slice(0, cut))], encode(t.slice(cut)));
}

/**
 * Multiple choice by log-likelihood (HellaSwag): each ending, encoded with a leading
 * space, is scored after the context. `acc` picks the highest summed log-probability;
 * `accNorm` the highest log-probability per UTF-8 byte of the ending (as
 * lm-evaluation-harness normalises by length).
 *
 * @returns the chosen index under each rule and the per-ending scores
 */
export function multipleChoiceScore(
  model: EvalModel,
  encode: (text: string) => number[],
  eotId: number,
  ctx: string,
  endings: readonly string[],
): { pick: number; pickNorm: number; logProbs: number[] } {
  const context = [eotId, ...encode(ctx)];
  const logProbs = endings.map((e) => continuationScore(model, context, encode(" " + e)).logProb);
  const norm = logProbs.map((lp, i) =>
    lp / Math.max(1, new TextEncoder().encode(" " + endings[i]).length)
  );
  const argmaxOf = (xs: number[]) => xs.reduce((b, x, i) => (x > xs[b] ? i : b), 0);
  return { pick: argmaxOf(logProbs), pickNorm: argmaxOf(norm), logProbs };
}
