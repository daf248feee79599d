/**
 * Sequence-classification samples for an encoder: `[CLS] text [SEP]`, cut to the row and
 * padded with [PAD], with the example's label (the head reads the pooled [CLS]).
 *
 * defines: ClassificationExample, ClassificationVocab, ClassificationDatasetOptions,
 *          ClassificationSample, ClassificationDataset, ClassificationBatch,
 *          ClassificationBatchIterator
 *
 * The reading order has the pre-training datasets' shape: `length` samples, epoch after
 * epoch over the examples (sample i is example `i % examples`), each epoch in its own
 * seeded order, so a fine-tuning run of many epochs sees every example once per epoch
 * and resumes from `consumedSamples` by the rule of {@link MicroBatchSampler}.
 *
 * @module
 */

import { DenotronError } from "../errors.ts";
import { type BatchIteratorOptions, MicroBatchSampler, Rng } from "./gpt_dataset.ts";

/** One text and its class. */
export interface ClassificationExample {
  /** The text. */
  readonly text: string;
  /** The class, an integer from 0. */
  readonly label: number;
}

/** What the samples need of a tokenizer: a `WordPieceTokenizer` is one. */
export interface ClassificationVocab {
  /** Name for messages. */
  readonly name: string;
  /** Id of [CLS]. */
  readonly cls: number;
  /** Id of [SEP]. */
  readonly sep: number;
  /** Id of [PAD]. */
  readonly pad: number;
  /** Text to ids, no special tokens added. */
  encode(text: string): number[];
}

/** Options for {@link ClassificationDataset}. */
export interface ClassificationDatasetOptions {
  /** Tokens per row (T), [CLS], [SEP] and padding included. */
  seqLength: number;
  /** The special ids and the encoder of the text. */
  vocab: ClassificationVocab;
  /** Seed of the epochs' orders. @default 1234 */
  seed?: number;
  /** Samples wanted; whole epochs are added until there are as many. @default one epoch */
  numSamples?: number;
  /** Shuffle each epoch; false reads the examples in order (evaluation). @default true */
  shuffle?: boolean;
  /** Name for messages ("train", "valid"...). @default "data" */
  name?: string;
}

/** One row. */
export interface ClassificationSample {
  /** [CLS] text [SEP], then [PAD]. (T) */
  tokens: Int32Array;
  /** Tokens before the padding. */
  validLength: number;
  /** The example's class. */
  label: number;
}

/**
 * Classification rows over a list of examples, tokenized when first read.
 *
 * @example
 * ```ts
 * import { ClassificationDataset } from "./classification_dataset.ts";
 * import { WordPieceTokenizer } from "./wordpiece.ts";
 * const vocab = WordPieceTokenizer.fromVocabTxt("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nwin\nnow\n");
 * const ds = new ClassificationDataset([{ text: "Win now", label: 1 }], { seqLength: 6, vocab });
 * ds.sample(0); // tokens [2, 5, 6, 3, 0, 0], validLength 4, label 1
 * ```
 */
export class ClassificationDataset {
  /** Name for messages. */
  readonly name: string;
  /** Tokens per row (T). */
  readonly seqLength: number;
  /** Number of samples: epochs times the examples. */
  readonly length: number;
  /** Epochs the samples cover. */
  readonly epochs: number;
  /** Sample order: position k reads sample `shuffleIndex[k]`. */
  readonly shuffleIndex: Int32Array;
  readonly #examples: readonly ClassificationExample[];
  readonly #vocab: ClassificationVocab;
  /** The truncated ids of each example once read: `[CLS] text [SEP]`. */
  readonly #rows: (Int32Array | undefined)[];

  /**
   * Checks the examples and builds the reading order.
   *
   * @param examples the texts and labels
   * @param options row length, vocabulary, seed, sample count and order
   */
  constructor(examples: readonly ClassificationExample[], options: ClassificationDatasetOptions) {
    this.name = options.name ?? "data";
    const T = options.seqLength;
    if (!Number.isInteger(T) || T < 3) {
      throw new DenotronError(
        `${this.name}: seqLength ${T} leaves no room for a token beside [CLS] and [SEP]; use at least 3`,
      );
    }
    if (examples.length === 0) throw new DenotronError(`${this.name}: no examples`);
    const bad = examples.findIndex((e) => !Number.isInteger(e.label) || e.label < 0);
    if (bad >= 0) {
      throw new DenotronError(
        `${this.name}: example ${bad} has label ${examples[bad].label}, not an integer from 0`,
      );
    }
    this.seqLength = T;
    this.#examples = examples;
    this.#vocab = options.vocab;
    this.#rows = new Array(examples.length);
    const n = examples.length;
    this.epochs = Math.max(1, Math.ceil((options.numSamples ?? n) / n));
    this.length = this.epochs * n;
    this.shuffleIndex = Int32Array.from({ length: this.length }, (_, i) => i);
    if (options.shuffle ?? true) {
      const rng = new Rng(options.seed ?? 1234);
      for (let e = 0; e < this.epochs; e++) {
        rng.shuffle(this.shuffleIndex.subarray(e * n, e * n + n));
      }
    }
  }

  /** Number of distinct examples (one epoch). */
  get exampleCount(): number {
    return this.#examples.length;
  }

  /**
   * Sample `i` (before the shuffle): example `i % exampleCount` as a padded row.
   *
   * @param i in [0, length)
   * @returns the row, its valid length and label
   */
  sample(i: number): ClassificationSample {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new RangeError(`${this.name}: sample ${i} is outside [0, ${this.length})`);
    }
    const e = i % this.#examples.length;
    const v = this.#vocab;
    let row = this.#rows[e];
    if (row === undefined) {
      const ids = v.encode(this.#examples[e].text);
      // a text longer than the row keeps its start, where subject and greeting are
      row = Int32Array.from([v.cls, ...ids.slice(0, this.seqLength - 2), v.sep]);
      this.#rows[e] = row;
    }
    const tokens = new Int32Array(this.seqLength).fill(v.pad);
    tokens.set(row);
    return { tokens, validLength: row.length, label: this.#examples[e].label };
  }
}

/** One micro-batch of classification rows. */
export interface ClassificationBatch {
  /** Token ids. (B, T) */
  tokens: Int32Array;
  /** Segment ids, all 0: one segment per row. (B, T) */
  tokenTypes: Int32Array;
  /** Tokens before the padding in each row. (B) */
  validLengths: Int32Array;
  /** Classes. (B) */
  labels: Int32Array;
  /** B */
  batchSize: number;
  /** T */
  seqLength: number;
}

/**
 * Micro-batches in the dataset's order from a resumable position, by the rule every
 * batch iterator shares ({@link MicroBatchSampler}).
 *
 * @example
 * ```ts
 * import {
 *   ClassificationBatchIterator,
 *   type ClassificationDataset,
 * } from "./classification_dataset.ts";
 * function firstBatch(ds: ClassificationDataset) {
 *   const it = new ClassificationBatchIterator(ds, { microBatchSize: 16 });
 *   return it.next(); // tokens, tokenTypes (16, T); validLengths, labels (16)
 * }
 * void firstBatch;
 * ```
 */
export class ClassificationBatchIterator {
  /** The dataset read. */
  readonly dataset: ClassificationDataset;
  /** B */
  readonly microBatchSize: number;
  readonly #sampler: MicroBatchSampler;

  /**
   * Starts iterating a dataset at the options' resume point.
   *
   * @param dataset the rows
   * @param options batch size, resume point and data-parallel place
   */
  constructor(dataset: ClassificationDataset, options: BatchIteratorOptions) {
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
  next(): ClassificationBatch {
    const B = this.microBatchSize;
    const T = this.dataset.seqLength;
    const batch: ClassificationBatch = {
      tokens: new Int32Array(B * T),
      tokenTypes: new Int32Array(B * T),
      validLengths: new Int32Array(B),
      labels: new Int32Array(B),
      batchSize: B,
      seqLength: T,
    };
    this.#sampler.next(this.dataset).forEach((i, r) => {
      const s = this.dataset.sample(i);
      batch.tokens.set(s.tokens, r * T);
      batch.validLengths[r] = s.validLength;
      batch.labels[r] = s.label;
    });
    return batch;
  }
}
