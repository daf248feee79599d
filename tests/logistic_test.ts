import assert from "assert";
import { Rng } from "../lib/data/gpt_dataset.ts";
import { loadSpamSplits } from "../lib/data/spam_dataset.ts";
import { BagOfWords, bagOfWordsBaseline, wordTokens } from "../lib/eval/bag_of_words.ts";
import { binaryMetrics } from "../lib/eval/classification.ts";
import {
  fitLogistic,
  logisticObjective,
  predictProbabilities,
  type SparseRows,
} from "../lib/eval/logistic.ts";

/** Rows from lists of [feature, value] pairs. */
function sparse(features: number, rows: [number, number][][]): SparseRows {
  const offsets = new Int32Array(rows.length + 1);
  rows.forEach((r, i) => (offsets[i + 1] = offsets[i] + r.length));
  return {
    rows: rows.length,
    features,
    offsets,
    ids: Int32Array.from(rows.flat().map(([id]) => id)),
    values: Float64Array.from(rows.flat().map(([, v]) => v)),
  };
}

Deno.test("binaryMetrics: accuracy, precision, recall and F1 of a hand-counted confusion matrix", () => {
  // tp 3, fp 1, tn 4, fn 2
  const predicted = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
  const labels = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1];
  const m = binaryMetrics(predicted, labels);
  assert.deepEqual(
    [m.truePositives, m.falsePositives, m.trueNegatives, m.falseNegatives, m.count],
    [3, 1, 4, 2, 10],
  );
  assert.equal(m.accuracy, 0.7);
  assert.equal(m.precision, 0.75);
  assert.equal(m.recall, 0.6);
  assert.ok(Math.abs(m.f1 - (2 * 0.75 * 0.6) / 1.35) < 1e-15);
  const none = binaryMetrics([0, 0], [0, 0]);
  assert.deepEqual([none.accuracy, none.precision, none.recall, none.f1], [1, 0, 0, 0]);
  assert.throws(
    () => binaryMetrics([1], [1, 0]),
    /^DenotronError: binaryMetrics: 1 predictions for 2/,
  );
  assert.throws(() => binaryMetrics([2], [1]), /example 0 has prediction 2/);
});

Deno.test("logisticObjective: the gradient matches central finite differences", () => {
  const rng = new Rng(3);
  const F = 6;
  const rows = Array.from({ length: 9 }, () =>
    Array.from(
      { length: 1 + rng.below(4) },
      () => [rng.below(F), rng.nextU32() / 2 ** 31 - 1] as [number, number],
    ));
  const x = sparse(F, rows);
  const y = rows.map((_, i) => i % 3 === 0 ? 1 : 0);
  const theta = Float64Array.from({ length: F + 1 }, () => rng.nextU32() / 2 ** 31 - 1);
  const l2 = 0.3;
  const grad = new Float64Array(F + 1);
  const f = logisticObjective(x, y, theta, l2, grad);
  assert.equal(logisticObjective(x, y, theta, l2), f, "the gradient does not change the value");
  const h = 1e-6;
  for (let j = 0; j <= F; j++) {
    const plus = theta.slice();
    const minus = theta.slice();
    plus[j] += h;
    minus[j] -= h;
    const numeric = (logisticObjective(x, y, plus, l2) - logisticObjective(x, y, minus, l2)) /
      (2 * h);
    assert.ok(Math.abs(numeric - grad[j]) < 1e-8, `d/dtheta[${j}]: ${numeric} vs ${grad[j]}`);
  }
});

Deno.test("fitLogistic: a separable set is classified without error, converged, the same twice", () => {
  // Feature 0 means spam, feature 1 ham; feature 2 is noise on both sides.
  const rows: [number, number][][] = [];
  const y: number[] = [];
  for (let i = 0; i < 40; i++) {
    const spam = i % 2;
    rows.push(i % 5 === 0 ? [[spam ? 0 : 1, 1], [2, 1]] : [[spam ? 0 : 1, 1]]);
    y.push(spam);
  }
  const x = sparse(3, rows);
  const fit = fitLogistic(x, y, { l2: 1e-3 });
  assert.ok(fit.converged, `gradient ${fit.gradientMax} after ${fit.iterations} iterations`);
  const predicted = Array.from(predictProbabilities(fit, x), (p) => (p >= 0.5 ? 1 : 0));
  assert.equal(binaryMetrics(predicted, y).accuracy, 1);
  assert.ok(fit.weights[0] > 1 && fit.weights[1] < -1 && Math.abs(fit.weights[2]) < 1e-3);
  assert.deepEqual(fitLogistic(x, y, { l2: 1e-3 }), fit, "deterministic");
  assert.throws(
    () => fitLogistic(x, y.slice(1)),
    /^DenotronError: fitLogistic: 39 labels for 40 rows/,
  );
});

Deno.test("BagOfWords: lower-cased words seen twice in training, one binary feature each", () => {
  assert.deepEqual(wordTokens("Re: FREE café-offer, 100%!"), [
    "re",
    "free",
    "café",
    "offer",
    "100",
  ]);
  const bag = BagOfWords.fit(["Buy now buy", "now or never", "Never"]);
  assert.deepEqual(bag.words, ["buy", "now", "never"]);
  const x = bag.rows(["never buy BUY", "unknown words"]);
  assert.deepEqual([x.rows, x.features, Array.from(x.offsets), Array.from(x.ids)], [
    2,
    3,
    [0, 2, 2],
    [0, 2],
  ]);
  assert.equal(x.values, undefined, "binary features");
});

Deno.test("bagOfWordsBaseline: held-out accuracy on the spam split", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_spam_" });
  try {
    const splits = await loadSpamSplits(dir);
    const start = performance.now();
    const r = bagOfWordsBaseline(splits);
    const seconds = (performance.now() - start) / 1000;
    const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
    console.log(
      `bag-of-words baseline (${r.features} words, l2 ${r.l2}, ${seconds.toFixed(1)} s): test ` +
        `accuracy ${pct(r.test.accuracy)}, precision ${pct(r.test.precision)}, recall ` +
        `${pct(r.test.recall)}, F1 ${pct(r.test.f1)} on ${r.test.count} messages`,
    );
    assert.ok(r.converged);
    assert.equal(r.test.count, splits.test.length);
    assert.ok(r.test.accuracy > 0.95, `accuracy ${r.test.accuracy}`);
    assert.ok(r.test.precision > 0.9 && r.test.recall > 0.9);
    assert.ok(r.validByL2.every((m) => m.accuracy <= r.valid.accuracy));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
