/**
 * Data curriculum: samples ordered or filtered by a difficulty metric.
 *
 * defines: BatchSource, SampleDifficulty, DifficultyBatchOptions, DifficultyBatchIterator,
 *          longestDocumentRun, rareTokenShare, tokenCounts
 *
 * A metric is any function from a sample's tokens to a number (larger is
 * harder); a schedule is any function from the step to the largest difficulty
 * allowed. The iterator scores every sample once, then walks the dataset's
 * shuffled order (or easiest first) and skips samples above the allowed
 * difficulty. Samples are never cut: the sequence-length curriculum is the
 * one that changes lengths.
 *
 * @module
 */

import type { Batch, SampleDataset } from "../data/gpt_dataset.ts";

/** What the trainer reads batches from. */
export interface BatchSource {
  /** The next micro-batch. */
  next(): Batch;
  /** Samples handed out so far. */
  readonly consumedSamples: number;
  /**
   * Its position as a JSON value, saved in checkpoints (`dataState` in state.json).
   * A source without it cannot resume a run: Trainer.load() refuses.
   */
  stateDict?(): unknown;
  /** Restores a position from stateDict(); throws when it does not fit this source. */
  loadStateDict?(state: unknown): void;
}

/** Difficulty of one sample: its `seqLength + 1` tokens in, a number out (larger is harder). */
export type SampleDifficulty = (tokens: Int32Array) => number;

/** Options of {@link DifficultyBatchIterator}. */
export interface DifficultyBatchOptions {
  /** B */
  microBatchSize: number;
  /** The metric. */
  difficulty: SampleDifficulty;
  /** The largest difficulty allowed at a step. @default no limit */
  schedule?: (step: number) => number;
  /** "shuffled": the dataset's order; "easiest-first": ascending difficulty. @default "shuffled" */
  order?: "shuffled" | "easiest-first";
}

/**
 * Batches of samples no harder than the schedule allows at the current step.
 * Set `step` before each optimizer step (the {@link Curriculum} does this when
 * the iterator is given to the trainer).
 *
 * @example
 * ```ts ignore
 * const data = new DifficultyBatchIterator(trainData, {
 *   microBatchSize: 32,
 *   difficulty: longestDocumentRun(tokenizer.eotId),
 *   schedule: (step) => (step < 200 ? 32 : Infinity),
 * });
 * const trainer = new Trainer({ config, train: trainData, tokenizer, batches: data });
 * ```
 */
export class DifficultyBatchIterator implements BatchSource {
  /** The samples. */
  readonly dataset: SampleDataset;
  /** B */
  readonly microBatchSize: number;
  /** Each sample's difficulty, by sample index (not shuffled position). */
  readonly difficulties: Float64Array;
  /** The optimizer step the schedule is evaluated at. */
  step = 0;
  #order: Int32Array;
  #cursor = 0;
  #consumed = 0;
  readonly #schedule: (step: number) => number;
  readonly #row: Int32Array;

  /**
   * Scores every sample once (the metric runs `dataset.length` times).
   *
   * @param dataset the samples
   * @param options batch size, metric, schedule and order
   */
  constructor(dataset: SampleDataset, options: DifficultyBatchOptions) {
    this.dataset = dataset;
    this.microBatchSize = options.microBatchSize;
    this.#schedule = options.schedule ?? (() => Infinity);
    this.#row = new Int32Array(dataset.seqLength + 1);
    const n = dataset.length;
    this.difficulties = new Float64Array(n);
    for (let s = 0; s < n; s++) {
      dataset.sample(s, this.#row);
      this.difficulties[s] = options.difficulty(this.#row);
    }
    this.#order = Int32Array.from(dataset.shuffleIndex.subarray(0, n));
    if (options.order === "easiest-first") {
      // Stable: equal difficulties keep the shuffled order.
      const rank = new Int32Array(n);
      this.#order.forEach((s, i) => (rank[s] = i));
      this.#order.sort((a, b) => this.difficulties[a] - this.difficulties[b] || rank[a] - rank[b]);
    }
  }

  /** Samples handed out so far. */
  get consumedSamples(): number {
    return this.#consumed;
  }

  /** The position: cursor in the order, samples handed out, step, and the sample count. */
  stateDict(): { cursor: number; consumed: number; step: number; samples: number } {
    return {
      cursor: this.#cursor,
      consumed: this.#consumed,
      step: this.step,
      samples: this.#order.length,
    };
  }

  /**
   * Restores a position saved by {@linkcode stateDict} over the same dataset, metric and
   * order (which are rebuilt, not saved).
   *
   * @param state what stateDict() returned
   */
  loadStateDict(state: unknown): void {
    const s = state as Record<string, unknown> | null;
    const n = this.#order.length;
    const int = (k: string) => typeof s?.[k] === "number" && Number.isInteger(s[k]);
    if (!int("cursor") || !int("consumed") || !int("step") || !int("samples")) {
      throw new Error(
        `data curriculum: saved position ${JSON.stringify(state)} lacks integer cursor, ` +
          `consumed, step and samples`,
      );
    }
    if (s!.samples !== n || (s!.cursor as number) < 0 || (s!.cursor as number) >= n) {
      throw new Error(
        `data curriculum: the saved position (cursor ${s!.cursor} of ${s!.samples} samples) ` +
          `does not fit this dataset of ${n} samples`,
      );
    }
    this.#cursor = s!.cursor as number;
    this.#consumed = s!.consumed as number;
    this.step = s!.step as number;
  }

  /**
   * The next micro-batch of allowed samples, in order, wrapping around.
   *
   * @returns the batch
   */
  next(): Batch {
    const B = this.microBatchSize, T = this.dataset.seqLength, n = this.#order.length;
    const limit = this.#schedule(this.step);
    const inputs = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      let tried = 0;
      while (this.difficulties[this.#order[this.#cursor]] > limit) {
        this.#cursor = (this.#cursor + 1) % n;
        if (++tried > n) {
          throw new Error(
            `data curriculum: no sample has difficulty <= ${limit} at step ${this.step}; ` +
              `the easiest is ${Math.min(...this.difficulties)}: raise the schedule's start`,
          );
        }
      }
      this.dataset.sample(this.#order[this.#cursor], this.#row);
      inputs.set(this.#row.subarray(0, T), b * T);
      targets.set(this.#row.subarray(1), b * T);
      this.#cursor = (this.#cursor + 1) % n;
    }
    this.#consumed += B;
    return { inputs, targets, batchSize: B, seqLength: T };
  }
}

/**
 * Difficulty as the longest stretch of the sample without a document boundary:
 * samples packed from short documents need less long-range context.
 *
 * @param eotId the end-of-text token
 * @returns the metric
 * @example
 * ```ts
 * import { longestDocumentRun } from "./data.ts";
 * longestDocumentRun(0)(Int32Array.of(5, 6, 0, 7, 8, 9)); // 3
 * ```
 */
export function longestDocumentRun(eotId: number): SampleDifficulty {
  return (tokens) => {
    let best = 0, run = 0;
    for (const t of tokens) {
      run = t === eotId ? 0 : run + 1;
      if (run > best) best = run;
    }
    return best;
  };
}

/**
 * Token counts over every sample of a dataset (the input to {@link rareTokenShare}).
 *
 * @param dataset the samples
 * @param vocabSize ids are below this
 * @returns counts by token id
 */
export function tokenCounts(dataset: SampleDataset, vocabSize: number): Float64Array {
  const counts = new Float64Array(vocabSize);
  const row = new Int32Array(dataset.seqLength + 1);
  for (let s = 0; s < dataset.length; s++) {
    dataset.sample(s, row);
    for (const t of row) counts[t]++;
  }
  return counts;
}

/**
 * Difficulty as the share of a sample's tokens that are rare: those whose count
 * is below `rareBelow`.
 *
 * @param counts corpus counts by token id (see {@link tokenCounts})
 * @param rareBelow the count under which a token is rare
 * @returns the metric, in [0, 1]
 * @example
 * ```ts
 * import { rareTokenShare } from "./data.ts";
 * rareTokenShare(Float64Array.of(100, 1, 50), 10)(Int32Array.of(0, 1, 2, 1)); // 0.5
 * ```
 */
export function rareTokenShare(counts: ArrayLike<number>, rareBelow: number): SampleDifficulty {
  return (tokens) => {
    let rare = 0;
    for (const t of tokens) if ((counts[t] ?? 0) < rareBelow) rare++;
    return tokens.length ? rare / tokens.length : 0;
  };
}
