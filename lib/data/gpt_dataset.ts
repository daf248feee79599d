/**
 * GPT pre-training samples over a Megatron indexed dataset.
 *
 * defines: parseSplit, splitDocuments, buildDocumentIndex, buildSampleIndex,
 *          Rng, SampleDataset, GptDataset, MicroBatchSampler, GptBatchIterator,
 *          buildGptDatasets
 *
 * The construction follows Megatron-LM's GPTDataset:
 *
 * 1. The document index lists the split's sequences once per epoch, shuffled
 *    (the last epoch shuffled on its own when it is used for less than 80%,
 *    so a partial epoch still sees a uniform sample of documents).
 * 2. The sample index walks that list cutting `seqLength + 1` token windows
 *    that run across document boundaries; consecutive samples share one token
 *    (the last target of sample i is the first input of sample i + 1).
 * 3. The shuffle index permutes the samples.
 *
 * Shuffles use a seeded xoshiro128** generator ({@link Rng}), not NumPy's, so orders differ
 * from Megatron's while the structure is the same.
 *
 * @module
 */

import { DenotronError, fmtValue } from "../errors.ts";
import type { IndexedDataset } from "./indexed_dataset.ts";

/**
 * Parses Megatron's `--split` weights.
 *
 * @param split "969,30,1" (also "/" separated), or up to three numbers; missing
 *   parts are 0
 * @returns the three weights normalized to sum 1
 * @example
 * ```ts
 * import { parseSplit } from "./gpt_dataset.ts";
 * parseSplit("90,10"); // [0.9, 0.1, 0]
 * ```
 */
export function parseSplit(split: string | readonly number[]): [number, number, number] {
  const parts = typeof split === "string"
    ? split.split(/[,/]/).map((s) => Number(s.trim()))
    : [...split];
  if (parts.length === 0 || parts.length > 3 || parts.some((w) => !Number.isFinite(w) || w < 0)) {
    throw new DenotronError(
      `split ${fmtValue(split)}: expected up to three non-negative weights like "969,30,1"`,
    );
  }
  while (parts.length < 3) parts.push(0);
  const sum = parts[0] + parts[1] + parts[2];
  if (sum <= 0) throw new DenotronError(`split ${fmtValue(split)}: weights sum to 0`);
  return [parts[0] / sum, parts[1] / sum, parts[2] / sum];
}

/**
 * Cuts `count` documents into contiguous train / valid / test ranges by
 * weight, rounding each boundary and giving any rounding drift to the first
 * split (Megatron's rule).
 *
 * @param split weights, as for {@link parseSplit}
 * @param count number of documents
 * @returns three `[start, end)` ranges
 * @example
 * ```ts
 * import { splitDocuments } from "./gpt_dataset.ts";
 * splitDocuments("969,30,1", 1000); // [[0, 969], [969, 999], [999, 1000]]
 * ```
 */
export function splitDocuments(
  split: string | readonly number[],
  count: number,
): [[number, number], [number, number], [number, number]] {
  const w = parseSplit(split);
  const bounds = [0];
  for (const x of w) bounds.push(bounds[bounds.length - 1] + Math.round(x * count));
  const drift = bounds[3] - count;
  for (let i = 1; i < 4; i++) bounds[i] = Math.max(0, bounds[i] - drift);
  return [[bounds[0], bounds[1]], [bounds[1], bounds[2]], [bounds[2], bounds[3]]];
}

/** A small seeded generator: xoshiro128**, its state mixed from the seed. */
export class Rng {
  #s: Uint32Array;

  /**
   * Starts the stream of `seed`.
   *
   * @param seed any integer
   */
  constructor(seed: number) {
    this.#s = new Uint32Array(4);
    let x = (seed >>> 0) ^ 0x9e3779b9;
    for (let i = 0; i < 4; i++) {
      x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
      x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
      x ^= x >>> 16;
      this.#s[i] = x === 0 ? 0x6d2b79f5 + i : x;
    }
  }

  /**
   * The next draw.
   *
   * @returns a uniform 32-bit unsigned integer (xoshiro128**)
   */
  nextU32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /**
   * A uniform integer below `n`.
   *
   * @param n upper bound, 1 to 2^32
   * @returns a uniform integer in [0, n), without modulo bias
   */
  below(n: number): number {
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /**
   * Fisher-Yates shuffle in place.
   *
   * @param a the array
   * @returns `a`
   */
  shuffle<T extends { length: number; [i: number]: number }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.below(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * The document index: `sequences` repeated `epochs` times and shuffled; when
 * `separateLastEpoch`, the last copy is shuffled on its own after the others.
 *
 * @param sequences sequence ids of the split
 * @param epochs copies
 * @param rng the generator (advanced)
 * @param separateLastEpoch keep the last epoch apart
 * @returns sequence ids, `epochs * sequences.length` of them
 */
export function buildDocumentIndex(
  sequences: Int32Array,
  epochs: number,
  rng: Rng,
  separateLastEpoch: boolean,
): Int32Array {
  const n = sequences.length;
  const out = new Int32Array(n * epochs);
  for (let e = 0; e < epochs; e++) out.set(sequences, e * n);
  if (!separateLastEpoch || epochs === 1) return rng.shuffle(out);
  rng.shuffle(out.subarray(0, n * (epochs - 1)));
  rng.shuffle(out.subarray(n * (epochs - 1)));
  return out;
}

/**
 * The sample index: entry i is (position in the document index, token offset)
 * where sample i starts; sample i ends at entry i + 1, that token included.
 *
 * @param lengths tokens per sequence id
 * @param documentIndex sequence ids in reading order
 * @param seqLength tokens per sample input (T); samples hold T + 1
 * @param numSamples samples to cut; the document index must hold
 *   `numSamples * T + 1` tokens
 * @returns (numSamples + 1, 2) pairs, flattened
 */
export function buildSampleIndex(
  lengths: Int32Array,
  documentIndex: Int32Array,
  seqLength: number,
  numSamples: number,
): Int32Array {
  const out = new Int32Array(2 * (numSamples + 1));
  let doc = 0;
  let offset = 0;
  for (let i = 1; i <= numSamples; i++) {
    // Move T tokens forward: the next sample starts on this one's last token.
    let remaining = seqLength;
    while (remaining > 0) {
      const left = lengths[documentIndex[doc]] - offset;
      if (left > remaining) {
        offset += remaining;
        remaining = 0;
      } else {
        remaining -= left;
        doc++;
        offset = 0;
      }
    }
    // Landing exactly on a document's end means starting the next one.
    while (offset >= lengths[documentIndex[doc]]) (doc++, offset = 0);
    out[2 * i] = doc;
    out[2 * i + 1] = offset;
  }
  return out;
}

/** Options for {@link GptDataset}. */
export interface GptDatasetOptions {
  /** Tokens per sample input (T); each sample holds T + 1. */
  seqLength: number;
  /** Seed of the document and sample shuffles. @default 1234 */
  seed?: number;
  /** Samples wanted; more than one epoch's worth repeats the data. @default one epoch */
  numSamples?: number;
  /** Name for messages ("train", "valid"...). @default "data" */
  name?: string;
  /**
   * The model's vocabulary: a sample holding a token outside [0, vocabSize) is an error
   * naming the file and the sequence (a dataset made with another tokenizer).
   * @default unchecked
   */
  vocabSize?: number;
}

/**
 * What the batch iterators and the trainer read: `length` samples of `seqLength + 1`
 * tokens, and the order to read them in. A {@link GptDataset} is one; a blend of several
 * (lib/data/blended_dataset.ts) is another.
 */
export interface SampleDataset {
  /** Name for messages ("train", "valid"...). */
  readonly name: string;
  /** Tokens per sample input (T). */
  readonly seqLength: number;
  /** Number of samples. */
  readonly length: number;
  /** The reading order: position k reads sample `shuffleIndex[k]`. */
  readonly shuffleIndex: Int32Array;
  /**
   * Sample `i` (before the reading order): T + 1 tokens.
   *
   * @param i in [0, length)
   * @param out where to write (T + 1 values)
   * @returns `out`
   */
  sample(i: number, out?: Int32Array): Int32Array;
  /**
   * Packed samples only (fine-tuning data): the documents inside sample `i` and the
   * targets that do not count. Absent: one document per sample, every target counts.
   *
   * @param i in [0, length)
   */
  packing?(i: number): SamplePacking;
}

/** The documents packed into one sample, and the targets its loss leaves out. */
export interface SamplePacking {
  /** Where each document starts among the T inputs, ascending; 0 always is one. */
  readonly starts: readonly number[];
  /**
   * (T) 1 where the target does not count: a prompt token's next token, a document's last
   * token (its next token is another document's), padding. Absent: all count.
   */
  readonly ignore?: Uint8Array;
}

/**
 * Fixed-length samples over some sequences of an indexed dataset.
 *
 * @example
 * ```ts
 * import { GptDataset } from "./gpt_dataset.ts";
 * import type { IndexedDataset } from "./indexed_dataset.ts";
 * function firstSample(ds: IndexedDataset) {
 *   const all = Int32Array.from({ length: ds.sequenceCount }, (_, i) => i);
 *   return new GptDataset(ds, all, { seqLength: 64 }).sample(0); // 65 tokens
 * }
 * void firstSample;
 * ```
 */
export class GptDataset implements SampleDataset {
  /** Name for messages. */
  readonly name: string;
  /** Tokens per sample input (T). */
  readonly seqLength: number;
  /** Number of samples. */
  readonly length: number;
  /** Epochs over the sequences that the samples use. */
  readonly epochs: number;
  /** Sequence ids in reading order. */
  readonly documentIndex: Int32Array;
  /** (length + 1, 2) start positions, flattened. */
  readonly sampleIndex: Int32Array;
  /** Sample order. */
  readonly shuffleIndex: Int32Array;
  readonly #data: IndexedDataset;
  readonly #vocabSize: number;

  /**
   * Builds the document, sample and shuffle indices over the given sequences.
   *
   * @param data the indexed dataset
   * @param sequences the sequence ids this dataset draws from
   * @param options sequence length, seed and sample count
   */
  constructor(data: IndexedDataset, sequences: Int32Array, options: GptDatasetOptions) {
    const T = options.seqLength;
    this.name = options.name ?? "data";
    if (!Number.isInteger(T) || T < 1) throw new DenotronError(`${this.name}: bad seqLength ${T}`);
    this.seqLength = T;
    this.#data = data;
    this.#vocabSize = options.vocabSize ?? Infinity;
    let tokensPerEpoch = 0;
    for (const s of sequences) tokensPerEpoch += data.sequenceLengths[s];
    const perEpoch = Math.floor((tokensPerEpoch - 1) / T);
    if (perEpoch < 1) {
      throw new DenotronError(
        `${this.name}: ${tokensPerEpoch} tokens in ${sequences.length} sequences of ` +
          `${data.prefix} cannot fill one sample of ${T + 1} tokens; use a smaller seqLength or ` +
          "a larger split",
      );
    }
    const wanted = options.numSamples ?? perEpoch;
    let epochs = 1;
    while (epochs * tokensPerEpoch - 1 < wanted * T) epochs++;
    // Megatron's rule: a last epoch used for under 80% is shuffled apart.
    const fromLast = wanted - Math.floor(((epochs - 1) * tokensPerEpoch - 1) / T);
    const separate = epochs > 1 && fromLast < Math.floor(0.8 * perEpoch);
    const rng = new Rng(options.seed ?? 1234);
    this.epochs = epochs;
    this.documentIndex = buildDocumentIndex(sequences, epochs, rng, separate);
    const total = Math.floor((epochs * tokensPerEpoch - 1) / T);
    this.sampleIndex = buildSampleIndex(data.sequenceLengths, this.documentIndex, T, total);
    this.length = total;
    const order = Int32Array.from({ length: total }, (_, i) => i);
    if (separate) {
      const head = Math.floor(((epochs - 1) * tokensPerEpoch - 1) / T);
      rng.shuffle(order.subarray(0, head));
      rng.shuffle(order.subarray(head));
    } else {
      rng.shuffle(order);
    }
    this.shuffleIndex = order;
  }

  /**
   * Sample `i` before shuffling: T + 1 consecutive tokens of the document stream.
   *
   * @param i in [0, length)
   * @param out where to write (T + 1 values)
   * @returns `out`
   */
  sample(i: number, out: Int32Array = new Int32Array(this.seqLength + 1)): Int32Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new RangeError(`${this.name}: sample ${i} is outside [0, ${this.length})`);
    }
    let doc = this.sampleIndex[2 * i];
    let offset = this.sampleIndex[2 * i + 1];
    let filled = 0;
    while (filled < out.length) {
      const seq = this.documentIndex[doc];
      const take = Math.min(this.#data.sequenceLengths[seq] - offset, out.length - filled);
      const tokens = this.#data.read(seq, offset, take);
      this.#expectInVocab(tokens, seq, offset);
      out.set(tokens, filled);
      filled += take;
      doc++;
      offset = 0;
    }
    return out;
  }

  #expectInVocab(tokens: Int32Array, seq: number, offset: number): void {
    const V = this.#vocabSize;
    if (V === Infinity) return;
    for (let j = 0; j < tokens.length; j++) {
      if (tokens[j] >= 0 && tokens[j] < V) continue;
      throw new DenotronError(
        `${this.#data.prefix}.bin: sequence ${seq} holds token ${tokens[j]} at position ` +
          `${offset + j}, outside the model's vocabulary [0, ${V}); was it preprocessed ` +
          `with another tokenizer?`,
      );
    }
  }
}

/**
 * One micro-batch: B samples of T inputs and their T targets, for a decoder or (with
 * validLengths) an encoder.
 */
export interface Batch {
  /** Token ids (an encoder's: masked). (B, T) */
  inputs: Int32Array;
  /**
   * A decoder's next token after each input, or an encoder's original token at each masked
   * position; -1 where the target does not count. (B, T)
   */
  targets: Int32Array;
  /** B */
  batchSize: number;
  /** T */
  seqLength: number;
  /**
   * Packed rows: for each of the B rows, where its documents start (0 first). Positions
   * restart and attention stays inside each document (see nn/attention.ts
   * sequenceLayout). Absent: one sequence per row.
   */
  documentStarts?: readonly (readonly number[])[];
  /**
   * Encoder rows (BERT): each row's tokens before its padding; every token of a row reads
   * its valid tokens both ways (see nn/attention.ts paddingLayout). (B)
   */
  validLengths?: Int32Array;
  /** Encoder rows: each token's segment, 0 or 1. (B, T) */
  tokenTypes?: Int32Array;
  /**
   * One label per row: the binary head's (sentence order: 1 when swapped), or a class for
   * sequence classification. (B)
   */
  rowLabels?: Int32Array;
}

/** Options for {@link MicroBatchSampler} and the batch iterators built on it. */
export interface BatchIteratorOptions {
  /** Micro-batch size per rank (B). */
  microBatchSize: number;
  /** Samples already consumed by all ranks together (resume point). @default 0 */
  consumedSamples?: number;
  /** This rank's place among data-parallel ranks. @default 0 */
  dataParallelRank?: number;
  /** Number of data-parallel ranks. @default 1 */
  dataParallelSize?: number;
}

/**
 * The one position rule of every batch iterator (Megatron's pre-training sampler): each
 * step takes `B * dataParallelSize` consecutive places of the reading order, this rank
 * reads its B of them, and past the end the order starts over. Iterators keep one and
 * differ only in what they read at each sample.
 *
 * @example
 * ```ts
 * import { MicroBatchSampler } from "./gpt_dataset.ts";
 * const order = { length: 5, shuffleIndex: Int32Array.from([4, 3, 2, 1, 0]) };
 * const s = new MicroBatchSampler({ microBatchSize: 2, dataParallelRank: 1, dataParallelSize: 2 });
 * s.next(order); // Int32Array [2, 1]: places 2 and 3 of the order
 * s.next(order); // Int32Array [3, 2]: places 6 and 7 wrap to 1 and 2
 * s.consumedSamples; // 8
 * ```
 */
export class MicroBatchSampler {
  /** B */
  readonly microBatchSize: number;
  #consumed: number;
  readonly #rank: number;
  readonly #world: number;

  /**
   * Checks the options and starts at their resume point.
   *
   * @param options batch size, resume point and data-parallel place
   */
  constructor(options: BatchIteratorOptions) {
    this.microBatchSize = options.microBatchSize;
    this.#consumed = options.consumedSamples ?? 0;
    this.#rank = options.dataParallelRank ?? 0;
    this.#world = options.dataParallelSize ?? 1;
    if (!Number.isInteger(this.microBatchSize) || this.microBatchSize < 1) {
      throw new DenotronError(
        `microBatchSize must be a positive integer, got ${this.microBatchSize}`,
      );
    }
    if (this.#rank < 0 || this.#rank >= this.#world) {
      throw new DenotronError(`dataParallelRank ${this.#rank} is outside [0, ${this.#world})`);
    }
  }

  /** Samples consumed by all ranks so far: save it to resume. */
  get consumedSamples(): number {
    return this.#consumed;
  }

  /**
   * This rank's samples of the next step, and a step forward.
   *
   * @param order the dataset's sample count and reading order
   * @returns the B sample ids to read, in row order
   */
  next(order: { readonly length: number; readonly shuffleIndex: Int32Array }): Int32Array {
    const B = this.microBatchSize;
    const first = this.#consumed + this.#rank * B;
    const ids = new Int32Array(B);
    for (let b = 0; b < B; b++) ids[b] = order.shuffleIndex[(first + b) % order.length];
    this.#consumed += B * this.#world;
    return ids;
  }
}

/**
 * Micro-batches in shuffled order from a resumable position, by the
 * {@link MicroBatchSampler} rule. Each step takes `B * dataParallelSize` samples; this
 * rank reads its B of them (Megatron's pre-training sampler). Past the end, the order
 * starts over.
 *
 * @example
 * ```ts
 * import { GptBatchIterator, type GptDataset } from "./gpt_dataset.ts";
 * function firstBatch(ds: GptDataset) {
 *   const it = new GptBatchIterator(ds, { microBatchSize: 4 });
 *   const { inputs, targets } = it.next(); // (4, T) each
 *   return [inputs, targets, it.consumedSamples]; // consumedSamples is now 4
 * }
 * void firstBatch;
 * ```
 */
export class GptBatchIterator {
  /** The dataset read. */
  readonly dataset: SampleDataset;
  /** B */
  readonly microBatchSize: number;
  readonly #sampler: MicroBatchSampler;
  readonly #row: Int32Array;

  /**
   * Starts iterating a dataset at the options' resume point.
   *
   * @param dataset the samples
   * @param options batch size, resume point and data-parallel place
   */
  constructor(dataset: SampleDataset, options: BatchIteratorOptions) {
    this.dataset = dataset;
    this.#sampler = new MicroBatchSampler(options);
    this.microBatchSize = this.#sampler.microBatchSize;
    this.#row = new Int32Array(dataset.seqLength + 1);
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
  next(): Batch {
    const B = this.microBatchSize;
    const T = this.dataset.seqLength;
    const inputs = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    const packed = this.dataset.packing !== undefined;
    const documentStarts: (readonly number[])[] = [];
    this.#sampler.next(this.dataset).forEach((i, b) => {
      this.dataset.sample(i, this.#row);
      inputs.set(this.#row.subarray(0, T), b * T);
      targets.set(this.#row.subarray(1), b * T);
      if (!packed) return;
      const p = this.dataset.packing!(i);
      documentStarts.push(p.starts);
      if (p.ignore) p.ignore.forEach((skip, t) => skip && (targets[b * T + t] = -1));
    });
    return { inputs, targets, batchSize: B, seqLength: T, ...(packed ? { documentStarts } : {}) };
  }
}

/** Options for {@link buildGptDatasets}. */
export interface GptSplitOptions {
  /** Train / valid / test weights. @default "969,30,1" */
  split?: string | readonly number[];
  /** Tokens per sample input (T). */
  seqLength: number;
  /** Shuffle seed. @default 1234 */
  seed?: number;
  /** Samples wanted per split (train usually trainIters * globalBatchSize). */
  numSamples?: [number?, number?, number?];
  /** The model's vocabulary, checked in every sample. @default unchecked */
  vocabSize?: number;
}

/**
 * Splits the documents of an indexed dataset and builds one
 * {@link GptDataset} per non-empty split.
 *
 * @param data the indexed dataset
 * @param options split weights, sequence length, seed and sample counts
 * @returns train, valid and test datasets (undefined where the split is empty)
 */
export function buildGptDatasets(
  data: IndexedDataset,
  options: GptSplitOptions,
): { train?: GptDataset; valid?: GptDataset; test?: GptDataset } {
  const ranges = splitDocuments(options.split ?? "969,30,1", data.documentCount);
  const names = ["train", "valid", "test"] as const;
  const out: { train?: GptDataset; valid?: GptDataset; test?: GptDataset } = {};
  ranges.forEach(([start, end], k) => {
    if (end <= start) return;
    const first = data.documentIndices[start];
    const last = data.documentIndices[end];
    const sequences = Int32Array.from({ length: last - first }, (_, i) => first + i);
    out[names[k]] = new GptDataset(data, sequences, {
      seqLength: options.seqLength,
      seed: options.seed,
      numSamples: options.numSamples?.[k],
      name: names[k],
      vocabSize: options.vocabSize,
    });
  });
  return out;
}
