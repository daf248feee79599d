/**
 * defines: wordTokens, BagOfWords, BaselineOptions, BaselineResult, bagOfWordsBaseline —
 * the bag-of-words logistic-regression baseline a fine-tuned text classifier is measured
 * against (the spam task's held-out accuracy is reported beside it).
 *
 * The recipe, kept plain so that anyone can reproduce it: lower-cased runs of letters and
 * digits are the words; the vocabulary is every word seen at least twice in the training
 * texts (rarer ones cannot generalise and would only be memorised); a text's features say
 * which words it holds (binary, not counts, so a long message weighs no more than a short
 * one); {@link fitLogistic} fits the weights on the training split for each penalty of a
 * small grid, the validation split picks the penalty, and the test split is scored once.
 *
 * @module
 */

import type { ClassificationExample } from "../data/classification_dataset.ts";
import { type BinaryMetrics, binaryMetrics } from "./classification.ts";
import { fitLogistic, predictProbabilities, type SparseRows } from "./logistic.ts";

/**
 * The words of a text: lower-cased runs of letters and digits.
 *
 * @param text any text
 * @returns the words, in order, repeats included
 * @example
 * ```ts
 * import { wordTokens } from "./bag_of_words.ts";
 * wordTokens("FREE $$$ offer: Click-here NOW!"); // ["free", "offer", "click", "here", "now"]
 * ```
 */
export function wordTokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** A vocabulary of words, and the binary feature rows of texts over it. */
export class BagOfWords {
  /** The feature of each id, in order of first appearance in the fitting texts. */
  readonly words: readonly string[];
  readonly #ids: ReadonlyMap<string, number>;

  /**
   * A vocabulary as given; {@link BagOfWords.fit} builds one from texts.
   *
   * @param words the vocabulary, one feature per word
   */
  constructor(words: readonly string[]) {
    this.words = words;
    this.#ids = new Map(words.map((w, i) => [w, i]));
  }

  /**
   * The words seen at least `minCount` times in some texts.
   *
   * @param texts the training texts
   * @param minCount fewest occurrences (all texts together) for a word to be kept
   * @default minCount 2
   * @returns the vocabulary
   * @example
   * ```ts
   * import { BagOfWords } from "./bag_of_words.ts";
   * BagOfWords.fit(["a b", "b c", "b a"]).words; // ["a", "b"]
   * ```
   */
  static fit(texts: readonly string[], minCount = 2): BagOfWords {
    const counts = new Map<string, number>();
    for (const t of texts) for (const w of wordTokens(t)) counts.set(w, (counts.get(w) ?? 0) + 1);
    return new BagOfWords([...counts].filter(([, c]) => c >= minCount).map(([w]) => w));
  }

  /**
   * Binary feature rows: each text's known words, each once, ids ascending.
   *
   * @param texts the texts
   * @returns one row per text
   */
  rows(texts: readonly string[]): SparseRows {
    const offsets = new Int32Array(texts.length + 1);
    const ids: number[] = [];
    texts.forEach((t, r) => {
      const row = new Set<number>();
      for (const w of wordTokens(t)) {
        const id = this.#ids.get(w);
        if (id !== undefined) row.add(id);
      }
      ids.push(...[...row].sort((a, b) => a - b));
      offsets[r + 1] = ids.length;
    });
    return { rows: texts.length, features: this.words.length, offsets, ids: Int32Array.from(ids) };
  }
}

/** Options for {@link bagOfWordsBaseline}. */
export interface BaselineOptions {
  /** Penalties tried, the validation split choosing. @default [1e-2, 1e-3, 1e-4, 1e-5, 1e-6] */
  l2Grid?: readonly number[];
  /** Fewest training occurrences of a word in the vocabulary. @default 2 */
  minCount?: number;
}

/** The baseline's choice and its scores. */
export interface BaselineResult {
  /** The penalty the validation split chose. */
  readonly l2: number;
  /** Words in the vocabulary. */
  readonly features: number;
  /** L-BFGS iterations of the chosen fit. */
  readonly iterations: number;
  /** Whether the chosen fit converged. */
  readonly converged: boolean;
  /** Scores on the validation split, for each penalty of the grid in order. */
  readonly validByL2: readonly BinaryMetrics[];
  /** Scores of the chosen fit on the validation split. */
  readonly valid: BinaryMetrics;
  /** Scores of the chosen fit on the held-out test split. */
  readonly test: BinaryMetrics;
}

/**
 * Fits and scores the baseline: vocabulary and weights from `train`, the penalty from
 * `valid` (best accuracy; a tie goes to the larger penalty), scores on `test`.
 *
 * @param splits labelled texts (labels 0 or 1) of the three splits
 * @param options the penalty grid and the vocabulary's threshold
 * @returns the choice and the scores
 */
export function bagOfWordsBaseline(
  splits: {
    readonly train: readonly ClassificationExample[];
    readonly valid: readonly ClassificationExample[];
    readonly test: readonly ClassificationExample[];
  },
  options: BaselineOptions = {},
): BaselineResult {
  const grid = options.l2Grid ?? [1e-2, 1e-3, 1e-4, 1e-5, 1e-6];
  const texts = (split: readonly ClassificationExample[]) => split.map((e) => e.text);
  const labels = (split: readonly ClassificationExample[]) => split.map((e) => e.label);
  const bag = BagOfWords.fit(texts(splits.train), options.minCount ?? 2);
  const [train, valid, test] = [splits.train, splits.valid, splits.test].map((s) =>
    bag.rows(texts(s))
  );
  const predict = (fit: ReturnType<typeof fitLogistic>, x: SparseRows) =>
    Array.from(predictProbabilities(fit, x), (p) => (p >= 0.5 ? 1 : 0));
  const fits = grid.map((l2) => fitLogistic(train, labels(splits.train), { l2 }));
  const validByL2 = fits.map((fit) => binaryMetrics(predict(fit, valid), labels(splits.valid)));
  let best = 0;
  validByL2.forEach((m, k) => {
    const larger = grid[k] > grid[best];
    if (
      m.accuracy > validByL2[best].accuracy || (m.accuracy === validByL2[best].accuracy && larger)
    ) {
      best = k;
    }
  });
  return {
    l2: grid[best],
    features: bag.words.length,
    iterations: fits[best].iterations,
    converged: fits[best].converged,
    validByL2,
    valid: validByL2[best],
    test: binaryMetrics(predict(fits[best], test), labels(splits.test)),
  };
}
