/**
 * defines: BinaryMetrics, binaryMetrics — accuracy, precision, recall and F1 of a binary
 * classifier, for the positive class (1: spam in the built-in task).
 *
 * @module
 */

import { DenotronError } from "../errors.ts";

/** The confusion counts and the scores made of them. */
export interface BinaryMetrics {
  /** Examples scored. */
  readonly count: number;
  /** Predicted 1, labelled 1. */
  readonly truePositives: number;
  /** Predicted 1, labelled 0. */
  readonly falsePositives: number;
  /** Predicted 0, labelled 0. */
  readonly trueNegatives: number;
  /** Predicted 0, labelled 1. */
  readonly falseNegatives: number;
  /** (tp + tn) / count. */
  readonly accuracy: number;
  /** tp / (tp + fp); 0 when nothing is predicted positive. */
  readonly precision: number;
  /** tp / (tp + fn); 0 when nothing is labelled positive. */
  readonly recall: number;
  /** 2 p r / (p + r); 0 when both are 0. */
  readonly f1: number;
}

/**
 * Scores predictions against labels.
 *
 * @param predicted the predicted class of each example, 0 or 1
 * @param labels the true class of each example, 0 or 1
 * @returns the counts and scores
 * @example
 * ```ts
 * import { binaryMetrics } from "./classification.ts";
 * const m = binaryMetrics([1, 1, 0, 0], [1, 0, 0, 1]);
 * [m.accuracy, m.precision, m.recall]; // [0.5, 0.5, 0.5]
 * ```
 */
export function binaryMetrics(
  predicted: ArrayLike<number>,
  labels: ArrayLike<number>,
): BinaryMetrics {
  if (predicted.length !== labels.length) {
    throw new DenotronError(
      `binaryMetrics: ${predicted.length} predictions for ${labels.length} labels`,
    );
  }
  let tp = 0, fp = 0, tn = 0, fn = 0;
  for (let i = 0; i < labels.length; i++) {
    const [p, y] = [predicted[i], labels[i]];
    if ((p !== 0 && p !== 1) || (y !== 0 && y !== 1)) {
      throw new DenotronError(
        `binaryMetrics: example ${i} has prediction ${p}, label ${y}; want 0 or 1`,
      );
    }
    if (p === 1) y === 1 ? tp++ : fp++;
    else y === 0 ? tn++ : fn++;
  }
  const ratio = (a: number, b: number) => b === 0 ? 0 : a / b;
  const precision = ratio(tp, tp + fp);
  const recall = ratio(tp, tp + fn);
  return {
    count: labels.length,
    truePositives: tp,
    falsePositives: fp,
    trueNegatives: tn,
    falseNegatives: fn,
    accuracy: ratio(tp + tn, labels.length),
    precision,
    recall,
    f1: ratio(2 * precision * recall, precision + recall),
  };
}
