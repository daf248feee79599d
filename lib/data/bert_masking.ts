/**
 * BERT's masked-LM corruption: which tokens are predicted and what the model sees there,
 * as Megatron's `create_masked_lm_predictions`.
 *
 * defines: MaskingVocab, MaskingOptions, MaskedSequence, checkMaskingVocab, maskTokens,
 *          roundHalfEven
 *
 * 1. The candidates are the tokens other than [CLS] [SEP] [PAD] [MASK] [UNK], one per
 *    token, or with whole-word masking one per word (a token and the "##" pieces after it).
 * 2. `count = min(maxPredictions, max(1, round(n * probability)))` of the n candidate
 *    tokens are predicted; Python's round, half to even, as Megatron computes it. The
 *    candidates are shuffled and taken in order, a word that would pass `count` skipped.
 * 3. Each predicted token becomes [MASK] with probability 0.8, stays itself with 0.1 and
 *    becomes a random non-special token with 0.1 (Megatron's two draws: < 0.8, then
 *    < 0.5 of the rest).
 *
 * Where Megatron differs: it counts [CLS] and [SEP] in n, draws the random token from
 * the whole vocabulary, and by default also masks n-grams of up to three words; here n
 * is the candidates only, the random token is never special, and masking is of single
 * tokens or single words.
 *
 * @module
 */

import { DenotronError } from "../errors.ts";
import type { Rng } from "./gpt_dataset.ts";

/** What masking needs of a vocabulary; `WordPieceTokenizer` (wordpiece.ts) is one. */
export interface MaskingVocab {
  /** Short name for messages. */
  readonly name: string;
  /** Number of ids. */
  readonly vocabSize: number;
  /** Id of [CLS]. */
  readonly cls: number;
  /** Id of [SEP]. */
  readonly sep: number;
  /** Id of [PAD]. */
  readonly pad: number;
  /** Id of [MASK]. */
  readonly mask: number;
  /** Id of [UNK]. */
  readonly unk: number;
  /**
   * Whether an id continues the word before it ("##" piece).
   *
   * @param id in [0, vocabSize)
   */
  isContinuation(id: number): boolean;
}

/** Options for {@link maskTokens}. */
export interface MaskingOptions {
  /** Share of the candidate tokens predicted. @default 0.15 */
  probability?: number;
  /** Most tokens predicted in one sequence. @default no limit */
  maxPredictions?: number;
  /** Mask whole words: a token and its "##" pieces together. @default false */
  wholeWord?: boolean;
}

/** A sequence after masking. */
export interface MaskedSequence {
  /** The tokens the model sees. (T) */
  tokens: Int32Array;
  /** The original token at each predicted position, -1 elsewhere. (T) */
  labels: Int32Array;
  /** The predicted positions, ascending. */
  positions: number[];
}

const SPECIAL_FIELDS = ["cls", "sep", "pad", "mask", "unk"] as const;
const SPECIAL_TOKENS = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"];

/**
 * Refuses a tokenizer that lacks BERT's special tokens (a GPT-2 tokenizer given to a BERT
 * dataset, say).
 *
 * @param vocab anything offered as a masking vocabulary
 * @param where what to name in the message
 * @returns `vocab`, typed
 * @throws {DenotronError} naming the first missing special token
 */
export function checkMaskingVocab(vocab: unknown, where: string): MaskingVocab {
  const v = vocab as Partial<Record<string, unknown>> & { name?: unknown; vocabSize?: unknown };
  const name = typeof v?.name === "string" ? v.name : "the tokenizer";
  SPECIAL_FIELDS.forEach((field, k) => {
    const id = v?.[field];
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= Number(v.vocabSize)) {
      throw new DenotronError(
        `${where}: tokenizer ${name} has no ${SPECIAL_TOKENS[k]} token; BERT data needs a ` +
          "WordPiece vocabulary (--tokenizer-type BertWordPieceLowerCase --vocab-file vocab.txt)",
      );
    }
  });
  if (typeof v.isContinuation !== "function") {
    throw new DenotronError(`${where}: tokenizer ${name} cannot tell "##" pieces apart`);
  }
  return v as unknown as MaskingVocab;
}

/**
 * Python's `round`: to the nearest integer, halves to the even one.
 *
 * @param x a finite number
 * @returns the rounded value
 * @example
 * ```ts
 * import { roundHalfEven } from "./bert_masking.ts";
 * [roundHalfEven(4.5), roundHalfEven(5.5), roundHalfEven(4.6)]; // [4, 6, 5]
 * ```
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A uniform float in [0, 1). */
function uniform(rng: Rng): number {
  return rng.nextU32() / 2 ** 32;
}

/**
 * Chooses the predicted tokens of one sequence and corrupts them (see the module notes).
 *
 * @param input the sequence, [CLS] and [SEP] included (T)
 * @param vocab the special ids, the vocabulary size and the "##" test
 * @param rng the generator (advanced)
 * @param options probability, prediction cap and whole-word masking
 * @returns the corrupted tokens, the labels and the positions
 * @example
 * ```ts
 * import { maskTokens } from "./bert_masking.ts";
 * import { Rng } from "./gpt_dataset.ts";
 * const vocab = {
 *   name: "toy", vocabSize: 10, pad: 0, unk: 1, cls: 2, sep: 3, mask: 4,
 *   isContinuation: (id: number) => id === 9,
 * };
 * const { labels, positions } = maskTokens([2, 5, 6, 7, 8, 9, 3], vocab, new Rng(1));
 * positions.length; // 1: round(5 * 0.15)
 * labels[positions[0]] !== -1; // true
 * ```
 */
export function maskTokens(
  input: ArrayLike<number>,
  vocab: MaskingVocab,
  rng: Rng,
  options: MaskingOptions = {},
): MaskedSequence {
  const p = options.probability ?? 0.15;
  const special = new Set(SPECIAL_FIELDS.map((f) => vocab[f]));
  // Candidate groups of positions: one token each, or one word each.
  const groups: number[][] = [];
  let n = 0;
  let inWord = false;
  for (let i = 0; i < input.length; i++) {
    if (special.has(input[i])) {
      inWord = false;
      continue;
    }
    n++;
    if (options.wholeWord && inWord && vocab.isContinuation(input[i])) groups.at(-1)!.push(i);
    else groups.push([i]);
    inWord = true;
  }
  const tokens = Int32Array.from(input);
  const labels = new Int32Array(input.length).fill(-1);
  const positions: number[] = [];
  if (n === 0 || p <= 0) return { tokens, labels, positions };
  const count = Math.min(options.maxPredictions ?? Infinity, Math.max(1, roundHalfEven(n * p)));
  const order = rng.shuffle(Int32Array.from(groups.keys()));
  for (const g of order) {
    if (positions.length >= count) break;
    if (positions.length + groups[g].length > count) continue;
    for (const i of groups[g]) {
      positions.push(i);
      labels[i] = input[i];
      if (uniform(rng) < 0.8) tokens[i] = vocab.mask;
      else if (uniform(rng) >= 0.5) tokens[i] = randomToken(vocab, special, rng, input[i]);
    }
  }
  positions.sort((a, b) => a - b);
  return { tokens, labels, positions };
}

/** A uniform non-special id; `fallback` when the vocabulary has only special ones. */
function randomToken(vocab: MaskingVocab, special: Set<number>, rng: Rng, fallback: number) {
  if (special.size >= vocab.vocabSize) return fallback;
  for (;;) {
    const id = rng.below(vocab.vocabSize);
    if (!special.has(id)) return id;
  }
}
