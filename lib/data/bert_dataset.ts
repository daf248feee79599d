/**
 * BERT pre-training samples over a sentence-split Megatron indexed dataset (each sequence
 * a sentence, documents grouping them: `preprocess --split-sentences`).
 *
 * defines: BertPairTask, BertSampleIndexOptions, buildBertSampleIndex, BertDatasetOptions,
 *          BertSample, BertDataset, BertBatch, BertBatchIterator, BertSplitOptions,
 *          buildBertDatasets
 *
 * The construction follows Megatron-LM's BERT dataset (`build_mapping` in helpers.cpp,
 * then the masked dataset's `__getitem__`):
 *
 * 1. The sample index walks each document's sentences, once per epoch, cutting runs of
 *    sentences until a run holds its target length in tokens: the whole budget
 *    (`seqLength` less [CLS] and the [SEP]s), or with probability `shortSeqProb` a length
 *    drawn uniformly from [2, budget]. A run never leaves one sentence behind, so every
 *    sample has at least two sentences for the pair tasks. Documents with fewer sentences
 *    than that, or with a sentence over 512 tokens, are skipped, as Megatron does.
 * 2. The shuffle index permutes all samples of all epochs together.
 * 3. Sample i draws from its own generator (seeded by the seed and i, as Megatron seeds
 *    NumPy with `seed + idx`), so it is the same whatever order it is read in: segment A
 *    is the first 1 to n - 1 sentences, B the rest; for sentence order ("sop") the two are
 *    swapped with probability 0.5 (isRandom 1 = swapped); for next-sentence prediction
 *    ("nsp") B is, with probability 0.5, sentences from another document (isRandom 1).
 *    The longer segment loses a token from its front or back (even odds, as Megatron's
 *    masked dataset) until the pair fits the target; then `[CLS] A [SEP] B [SEP]`, token
 *    types 0 then 1, masking ({@link maskTokens}, at most `max(1, floor(maskProb *
 *    target))` predictions, Megatron's `max_predictions_per_seq`) and [PAD] up to
 *    `seqLength`.
 *
 * Splits, epochs and shuffles use the GPT dataset's rules and generator
 * ({@link splitDocuments}, {@link Rng}), so the orders differ from Megatron's NumPy ones.
 *
 * @module
 */

import { DenotronError } from "../errors.ts";
import {
  type BatchIteratorOptions,
  MicroBatchSampler,
  Rng,
  splitDocuments,
} from "./gpt_dataset.ts";
import type { IndexedDataset } from "./indexed_dataset.ts";
import { checkMaskingVocab, type MaskingVocab, maskTokens } from "./bert_masking.ts";

/** The sentence-pair task: sentence order, next sentence, or one segment and no label. */
export type BertPairTask = "sop" | "nsp" | "none";

/** Megatron skips documents holding a sentence longer than this (LONG_SENTENCE_LEN). */
const LONG_SENTENCE = 512;

/** Options for {@link buildBertSampleIndex}. */
export interface BertSampleIndexOptions {
  /** Token budget of a sample: its length less the special tokens. */
  maxTokens: number;
  /** Sentences a sample needs: 2 for the pair tasks, 1 otherwise. */
  minSentences: number;
  /** Probability of a short target length, drawn from [2, maxTokens]. */
  shortSeqProb: number;
  /** Samples wanted; whole epochs are walked until there are as many. @default one epoch */
  numSamples?: number;
}

/**
 * The sample index: runs of consecutive sentences of one document, Megatron's
 * `build_mapping` with our generator.
 *
 * @param documentIndices the dataset's document boundaries (D + 1), in sentences
 * @param sentenceLengths tokens per sentence (S)
 * @param documents the `[start, end)` documents to walk
 * @param options budget, sentence minimum, short-sequence probability and sample count
 * @param rng draws the target lengths (advanced)
 * @returns (N, 4) rows of first sentence, end sentence (exclusive), target length and
 *   document, flattened, and the epochs walked; N is 0 when no document qualifies
 */
export function buildBertSampleIndex(
  documentIndices: ArrayLike<number>,
  sentenceLengths: ArrayLike<number>,
  documents: readonly [number, number],
  options: BertSampleIndexOptions,
  rng: Rng,
): { index: Int32Array; epochs: number } {
  const { maxTokens, minSentences, shortSeqProb } = options;
  const target = () =>
    rng.nextU32() / 2 ** 32 < shortSeqProb ? 2 + rng.below(maxTokens - 1) : maxTokens;
  const rows: number[] = [];
  let epochs = 0;
  do {
    epochs++;
    for (let doc = documents[0]; doc < documents[1]; doc++) {
      const first = documentIndices[doc];
      const end = documentIndices[doc + 1];
      if (end - first < minSentences) continue;
      let long = false;
      for (let s = first; s < end && !long; s++) long = sentenceLengths[s] > LONG_SENTENCE;
      if (long) continue;
      let start = first;
      let tokens = 0;
      let want = target();
      for (let s = first; s < end; s++) {
        tokens += sentenceLengths[s];
        const left = end - s - 1;
        // Cut at the target unless one sentence would be left alone; always at the end.
        if ((tokens >= want && left > 1 && s + 1 - start >= minSentences) || left === 0) {
          rows.push(start, s + 1, want, doc);
          start = s + 1;
          tokens = 0;
          want = target();
        }
      }
    }
  } while (rows.length > 0 && rows.length / 4 < (options.numSamples ?? 0));
  return { index: Int32Array.from(rows), epochs };
}

/** Options for {@link BertDataset}. */
export interface BertDatasetOptions {
  /** Tokens per sample (T), [CLS], [SEP]s and padding included. */
  seqLength: number;
  /** The special ids and "##" test: a `WordPieceTokenizer`. */
  vocab: MaskingVocab;
  /** Seed of the sample index, the shuffle and every sample's draws. @default 1234 */
  seed?: number;
  /** Samples wanted; more than one epoch's worth repeats the data. @default one epoch */
  numSamples?: number;
  /** Name for messages ("train", "valid"...). @default "data" */
  name?: string;
  /** Probability of a sample with a short target length. @default 0.1 */
  shortSeqProb?: number;
  /** The sentence-pair task. @default "sop" */
  pairTask?: BertPairTask;
  /** Share of the tokens predicted. @default 0.15 */
  maskProb?: number;
  /** Mask whole words. @default false */
  wholeWordMasking?: boolean;
}

/** One BERT sample, padded to T. */
export interface BertSample {
  /** [CLS] A [SEP] B [SEP], masked, then [PAD]. (T) */
  tokens: Int32Array;
  /** 0 for [CLS], A and its [SEP]; 1 for B and its [SEP]; 0 on padding. (T) */
  tokenTypes: Int32Array;
  /** The original token where one is predicted, -1 elsewhere. (T) */
  labels: Int32Array;
  /** 1 when B was swapped with A ("sop") or drawn from another document ("nsp"). */
  isRandom: 0 | 1;
  /** Tokens before the padding. */
  validLength: number;
}

/**
 * BERT samples over some documents of a sentence-split indexed dataset.
 *
 * @example
 * ```ts
 * import { BertDataset } from "./bert_dataset.ts";
 * import type { IndexedDataset } from "./indexed_dataset.ts";
 * import type { WordPieceTokenizer } from "./wordpiece.ts";
 * function firstSample(ds: IndexedDataset, vocab: WordPieceTokenizer) {
 *   const bert = new BertDataset(ds, [0, ds.documentCount], { seqLength: 128, vocab });
 *   return bert.sample(bert.shuffleIndex[0]); // tokens, tokenTypes, labels: 128 each
 * }
 * void firstSample;
 * ```
 */
export class BertDataset {
  /** Name for messages. */
  readonly name: string;
  /** Tokens per sample (T). */
  readonly seqLength: number;
  /** Number of samples. */
  readonly length: number;
  /** Epochs walked to make the samples. */
  readonly epochs: number;
  /** (length, 4): first sentence, end sentence, target length, document; flattened. */
  readonly sampleIndex: Int32Array;
  /** Sample order: position k reads sample `shuffleIndex[k]`. */
  readonly shuffleIndex: Int32Array;
  readonly #data: IndexedDataset;
  readonly #vocab: MaskingVocab;
  readonly #seed: number;
  readonly #pairTask: BertPairTask;
  readonly #maskProb: number;
  readonly #wholeWord: boolean;
  /** Documents of the range holding a sentence: where "nsp" draws its random B. */
  readonly #others: Int32Array;

  /**
   * Builds the sample and shuffle indices over a range of documents.
   *
   * @param data the indexed dataset, one sentence per sequence
   * @param documents the `[start, end)` documents this dataset draws from
   * @param options sequence length, vocabulary, seed, sample count and task
   */
  constructor(
    data: IndexedDataset,
    documents: readonly [number, number],
    options: BertDatasetOptions,
  ) {
    this.name = options.name ?? "data";
    const T = options.seqLength;
    this.#pairTask = options.pairTask ?? "sop";
    const specials = this.#pairTask === "none" ? 2 : 3;
    if (!["sop", "nsp", "none"].includes(this.#pairTask)) {
      throw new DenotronError(`${this.name}: pairTask "${this.#pairTask}" is not sop, nsp or none`);
    }
    if (!Number.isInteger(T) || T < specials + 2) {
      throw new DenotronError(
        `${this.name}: seqLength ${T} leaves no room for two tokens beside the ${specials} ` +
          `special ones; use at least ${specials + 2}`,
      );
    }
    const shortSeqProb = options.shortSeqProb ?? 0.1;
    this.#maskProb = options.maskProb ?? 0.15;
    for (const [field, p] of [["shortSeqProb", shortSeqProb], ["maskProb", this.#maskProb]]) {
      if (!(typeof p === "number" && p >= 0 && p <= 1)) {
        throw new DenotronError(`${this.name}: ${field} ${p} is not a probability in [0, 1]`);
      }
    }
    this.#vocab = checkMaskingVocab(options.vocab, `${this.name} (${data.prefix})`);
    this.seqLength = T;
    this.#data = data;
    this.#seed = options.seed ?? 1234;
    this.#wholeWord = options.wholeWordMasking ?? false;
    const minSentences = this.#pairTask === "none" ? 1 : 2;
    const { index, epochs } = buildBertSampleIndex(
      data.documentIndices,
      data.sequenceLengths,
      documents,
      { maxTokens: T - specials, minSentences, shortSeqProb, numSamples: options.numSamples },
      new Rng(this.#seed),
    );
    if (index.length === 0) {
      throw new DenotronError(
        `${this.name}: none of documents [${documents[0]}, ${documents[1]}) of ${data.prefix} ` +
          `has ${minSentences === 2 ? "two sentences" : "a sentence"} and none over ` +
          `${LONG_SENTENCE} tokens; preprocess the text with --split-sentences`,
      );
    }
    this.sampleIndex = index;
    this.epochs = epochs;
    this.length = index.length / 4;
    this.shuffleIndex = new Rng(this.#seed + 1).shuffle(
      Int32Array.from({ length: this.length }, (_, i) => i),
    );
    const others: number[] = [];
    for (let d = documents[0]; d < documents[1]; d++) {
      if (data.documentIndices[d + 1] > data.documentIndices[d]) others.push(d);
    }
    if (this.#pairTask === "nsp" && others.length < 2) {
      throw new DenotronError(
        `${this.name}: next-sentence prediction needs two documents, ${data.prefix} has ` +
          `${others.length} in [${documents[0]}, ${documents[1]}); use pairTask "sop"`,
      );
    }
    this.#others = Int32Array.from(others);
  }

  /**
   * Sample `i` (before the shuffle); the same on every call.
   *
   * @param i in [0, length)
   * @returns the padded sample
   */
  sample(i: number): BertSample {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new RangeError(`${this.name}: sample ${i} is outside [0, ${this.length})`);
    }
    const [first, end, target, doc] = this.sampleIndex.subarray(4 * i, 4 * i + 4);
    const rng = new Rng((Math.imul(this.#seed, 0x9e3779b1) + i) >>> 0);
    const uniform = () => rng.nextU32() / 2 ** 32;
    const n = end - first;
    let a: number[];
    let b: number[] = [];
    let isRandom: 0 | 1 = 0;
    if (this.#pairTask === "none") {
      a = this.#tokens(first, end);
    } else {
      const pivot = n >= 3 ? 1 + rng.below(n - 1) : 1;
      a = this.#tokens(first, first + pivot);
      if (uniform() < 0.5) isRandom = 1;
      if (this.#pairTask === "sop") {
        b = this.#tokens(first + pivot, end);
        if (isRandom) [a, b] = [b, a];
      } else {
        b = isRandom
          ? this.#randomB(doc, target - a.length, rng)
          : this.#tokens(first + pivot, end);
      }
    }
    // Trim the longer segment (B on a tie), front or back at even odds, to the target.
    let [a0, a1, b0, b1] = [0, a.length, 0, b.length];
    while (a1 - a0 + b1 - b0 > target) {
      const front = uniform() < 0.5;
      if (a1 - a0 > b1 - b0) {
        if (front) a0++;
        else a1--;
      } else if (front) b0++;
      else b1--;
    }
    const v = this.#vocab;
    const seq = [v.cls, ...a.slice(a0, a1), v.sep];
    const typeOnes = b1 > b0 ? b1 - b0 + 1 : 0;
    if (typeOnes > 0) seq.push(...b.slice(b0, b1), v.sep);
    const masked = maskTokens(seq, v, rng, {
      probability: this.#maskProb,
      maxPredictions: Math.max(1, Math.floor(this.#maskProb * target + 1e-9)),
      wholeWord: this.#wholeWord,
    });
    const T = this.seqLength;
    const tokens = new Int32Array(T).fill(v.pad);
    tokens.set(masked.tokens);
    const tokenTypes = new Int32Array(T);
    tokenTypes.fill(1, seq.length - typeOnes, seq.length);
    const labels = new Int32Array(T).fill(-1);
    labels.set(masked.labels);
    return { tokens, tokenTypes, labels, isRandom, validLength: seq.length };
  }

  /** The tokens of sentences [from, to), checked against the vocabulary. */
  #tokens(from: number, to: number): number[] {
    const out: number[] = [];
    const V = this.#vocab.vocabSize;
    for (let s = from; s < to; s++) {
      const ids = this.#data.read(s);
      const bad = ids.findIndex((id) => id < 0 || id >= V);
      if (bad >= 0) {
        throw new DenotronError(
          `${this.#data.prefix}.bin: sentence ${s} holds token ${ids[bad]}, outside the ` +
            `vocabulary [0, ${V}) of ${this.#vocab.name}; was it preprocessed with another tokenizer?`,
        );
      }
      for (const id of ids) out.push(id);
    }
    return out;
  }

  /** NSP's random B: sentences of another document from a random one on, `want` tokens. */
  #randomB(doc: number, want: number, rng: Rng): number[] {
    let other = doc;
    while (other === doc) other = this.#others[rng.below(this.#others.length)];
    const first = this.#data.documentIndices[other];
    const end = this.#data.documentIndices[other + 1];
    const out: number[] = [];
    for (let s = first + rng.below(end - first); s < end && out.length < Math.max(1, want); s++) {
      out.push(...this.#tokens(s, s + 1));
    }
    return out;
  }
}

/** One micro-batch of BERT samples. */
export interface BertBatch {
  /** Token ids. (B, T) */
  tokens: Int32Array;
  /** Segment ids, 0 or 1. (B, T) */
  tokenTypes: Int32Array;
  /** MLM targets, -1 where none. (B, T) */
  labels: Int32Array;
  /** Sentence-pair labels, 0 or 1. (B) */
  isRandom: Int32Array;
  /** Tokens before the padding in each row. (B) */
  validLengths: Int32Array;
  /** B */
  batchSize: number;
  /** T */
  seqLength: number;
}

/**
 * Micro-batches in shuffled order from a resumable position, by the GPT iterator's
 * rule ({@link MicroBatchSampler}): each step takes `B * dataParallelSize` samples, this rank reads its B of them,
 * and past the end the order starts over.
 *
 * @example
 * ```ts
 * import { BertBatchIterator, type BertDataset } from "./bert_dataset.ts";
 * function firstBatch(ds: BertDataset) {
 *   const it = new BertBatchIterator(ds, { microBatchSize: 8 });
 *   return it.next(); // tokens, tokenTypes, labels (8, T); isRandom, validLengths (8)
 * }
 * void firstBatch;
 * ```
 */
export class BertBatchIterator {
  /** The dataset read. */
  readonly dataset: BertDataset;
  /** B */
  readonly microBatchSize: number;
  readonly #sampler: MicroBatchSampler;

  /**
   * Starts iterating a dataset at the options' resume point.
   *
   * @param dataset the samples
   * @param options batch size, resume point and data-parallel place
   */
  constructor(dataset: BertDataset, options: BatchIteratorOptions) {
    this.dataset = dataset;
    this.#sampler = new MicroBatchSampler(options);
    this.microBatchSize = this.#sampler.microBatchSize;
  }

  /** Samples consumed by all ranks so far: save it to resume. */
  get consumedSamples(): number {
    return this.#sampler.consumedSamples;
  }

  /**
   * Reads the next micro-batch and advances by `B * dataParallelSize` samples.
   *
   * @returns the batch
   */
  next(): BertBatch {
    const B = this.microBatchSize;
    const T = this.dataset.seqLength;
    const batch: BertBatch = {
      tokens: new Int32Array(B * T),
      tokenTypes: new Int32Array(B * T),
      labels: new Int32Array(B * T),
      isRandom: new Int32Array(B),
      validLengths: new Int32Array(B),
      batchSize: B,
      seqLength: T,
    };
    this.#sampler.next(this.dataset).forEach((i, r) => {
      const s = this.dataset.sample(i);
      batch.tokens.set(s.tokens, r * T);
      batch.tokenTypes.set(s.tokenTypes, r * T);
      batch.labels.set(s.labels, r * T);
      batch.isRandom[r] = s.isRandom;
      batch.validLengths[r] = s.validLength;
    });
    return batch;
  }
}

/** Options for {@link buildBertDatasets}: a dataset's options less its name, plus the split. */
export interface BertSplitOptions extends Omit<BertDatasetOptions, "name" | "numSamples"> {
  /** Train / valid / test weights. @default "969,30,1" */
  split?: string | readonly number[];
  /** Samples wanted per split (train usually trainIters * globalBatchSize). */
  numSamples?: [number?, number?, number?];
}

/**
 * Splits the documents of a sentence-split indexed dataset and builds one
 * {@link BertDataset} per non-empty split.
 *
 * @param data the indexed dataset, one sentence per sequence
 * @param options split weights and the datasets' options
 * @returns train, valid and test datasets (undefined where the split is empty)
 */
export function buildBertDatasets(
  data: IndexedDataset,
  options: BertSplitOptions,
): { train?: BertDataset; valid?: BertDataset; test?: BertDataset } {
  const { split, numSamples, ...rest } = options;
  const ranges = splitDocuments(split ?? "969,30,1", data.documentCount);
  const names = ["train", "valid", "test"] as const;
  const out: { train?: BertDataset; valid?: BertDataset; test?: BertDataset } = {};
  ranges.forEach(([start, end], k) => {
    if (end <= start) return;
    out[names[k]] = new BertDataset(data, [start, end], {
      ...rest,
      name: names[k],
      numSamples: numSamples?.[k],
    });
  });
  return out;
}
