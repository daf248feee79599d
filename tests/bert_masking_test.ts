import assert from "assert";
import {
  checkMaskingVocab,
  type MaskingVocab,
  maskTokens,
  roundHalfEven,
} from "../lib/data/bert_masking.ts";
import { Rng } from "../lib/data/gpt_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { WordPieceTokenizer } from "../lib/data/wordpiece.ts";

/** 1000 ids: the five specials first, ids from 900 on are "##" pieces. */
const VOCAB: MaskingVocab = {
  name: "toy",
  vocabSize: 1000,
  pad: 0,
  unk: 1,
  cls: 2,
  sep: 3,
  mask: 4,
  isContinuation: (id) => id >= 900,
};
const SPECIAL = new Set([0, 1, 2, 3, 4]);

/** [CLS], n ordinary tokens drawn from [5, 900), [SEP]. */
function sentence(n: number, rng: Rng): number[] {
  return [2, ...Array.from({ length: n }, () => 5 + rng.below(895)), 3];
}

/** Five binomial standard deviations around n * p: a bound a correct sampler passes. */
function assertBinomial(count: number, n: number, p: number, what: string) {
  const sd = Math.sqrt(n * p * (1 - p));
  assert.ok(
    Math.abs(count - n * p) <= 5 * sd,
    `${what}: ${count} of ${n}, expected ${(n * p).toFixed(1)} ± ${(5 * sd).toFixed(1)}`,
  );
}

Deno.test("roundHalfEven: Python's round, halves to the even neighbour", () => {
  const table: [number, number][] = [[0.45, 0], [0.5, 0], [1.5, 2], [2.5, 2], [4.5, 4], [4.51, 5]];
  for (const [x, want] of table) assert.equal(roundHalfEven(x), want, String(x));
});

Deno.test("maskTokens: predicts max(1, round(0.15 n)) of the n ordinary tokens, capped", () => {
  const rng = new Rng(3);
  // n -> count, from Megatron's formula with Python's round (4.5 -> 4).
  const table: [number, number][] = [[1, 1], [3, 1], [10, 2], [20, 3], [30, 4], [100, 15]];
  for (const [n, want] of table) {
    const { positions, labels } = maskTokens(sentence(n, rng), VOCAB, rng);
    assert.equal(positions.length, want, `n=${n}`);
    assert.equal(labels.filter((l) => l !== -1).length, want);
  }
  const capped = maskTokens(sentence(100, rng), VOCAB, rng, { maxPredictions: 7 });
  assert.equal(capped.positions.length, 7);
  assert.equal(maskTokens([2, 3], VOCAB, rng).positions.length, 0, "no ordinary token");
  assert.equal(maskTokens(sentence(9, rng), VOCAB, rng, { probability: 0 }).positions.length, 0);
});

Deno.test("maskTokens: over many samples, 15% of each position, then 80% [MASK] / 10% random / 10% kept", () => {
  const rng = new Rng(11);
  const N = 4000;
  const n = 40; // 6 predictions each
  const perPosition = new Array(n + 2).fill(0);
  let [masked, kept, random, total] = [0, 0, 0, 0];
  const randomIds = new Set<number>();
  for (let k = 0; k < N; k++) {
    const input = sentence(n, rng);
    const { tokens, labels, positions } = maskTokens(input, VOCAB, rng);
    assert.equal(positions.length, 6);
    for (let i = 0; i < input.length; i++) {
      if (!positions.includes(i)) {
        assert.equal(tokens[i], input[i]);
        assert.equal(labels[i], -1);
        continue;
      }
      perPosition[i]++;
      total++;
      assert.equal(labels[i], input[i]);
      if (tokens[i] === VOCAB.mask) masked++;
      else if (tokens[i] === input[i]) kept++;
      else {
        random++;
        randomIds.add(tokens[i]);
        assert.ok(!SPECIAL.has(tokens[i]), `random token ${tokens[i]} is special`);
      }
    }
  }
  assert.equal(perPosition[0] + perPosition[n + 1], 0, "[CLS] and [SEP] are never predicted");
  for (let i = 1; i <= n; i++) assertBinomial(perPosition[i], N, 0.15, `position ${i}`);
  assert.equal(total, N * 6);
  // A random draw equal to the original counts as kept: 1 in 995 of the random tenth.
  const pRandomSame = 0.1 / 995;
  assertBinomial(masked, total, 0.8, "[MASK]");
  assertBinomial(kept, total, 0.1 + pRandomSame, "kept");
  assertBinomial(random, total, 0.1 - pRandomSame, "random");
  assert.ok(randomIds.size > 900, `random tokens spread over the vocabulary (${randomIds.size})`);
});

Deno.test("maskTokens: special tokens anywhere in the sequence are never chosen", () => {
  const rng = new Rng(5);
  for (let k = 0; k < 500; k++) {
    const input = sentence(30, rng).map((t, i) => (i % 4 === 1 ? [0, 1, 4][i % 3] : t));
    const { positions, tokens } = maskTokens(input, VOCAB, rng, { wholeWord: k % 2 === 0 });
    for (const i of positions) assert.ok(!SPECIAL.has(input[i]), `position ${i} is special`);
    // 22 ordinary tokens: round(3.3) = 3
    if (k % 2 === 1) assert.equal(positions.length, 3);
    for (const [i, t] of input.entries()) if (SPECIAL.has(t)) assert.equal(tokens[i], t);
  }
});

Deno.test("maskTokens: whole-word masking chooses a word and all its '##' pieces together", () => {
  const rng = new Rng(8);
  let chosen = 0;
  let pieces = 0;
  for (let k = 0; k < 1000; k++) {
    // words of 1 to 4 tokens: a start in [5, 900), then pieces in [900, 1000)
    const input = [2];
    while (input.length < 60) {
      input.push(5 + rng.below(895));
      for (let j = rng.below(4); j > 0; j--) input.push(900 + rng.below(100));
    }
    input.push(3, 900 + rng.below(100), 5 + rng.below(895), 3); // a "##" right after [SEP]
    const n = input.length - 3;
    const { positions } = maskTokens(input, VOCAB, rng, { wholeWord: true });
    const set = new Set(positions);
    assert.ok(positions.length <= Math.max(1, roundHalfEven(n * 0.15)));
    for (const i of positions) {
      const cont = VOCAB.isContinuation(input[i]);
      if (cont && input[i - 1] !== 3) assert.ok(set.has(i - 1), `piece ${i} without its word`);
      if (i + 1 < input.length && VOCAB.isContinuation(input[i + 1])) {
        assert.ok(set.has(i + 1), `word at ${i} without its piece at ${i + 1}`);
      }
      if (cont) pieces++;
    }
    chosen += positions.length;
  }
  assert.ok(pieces > chosen / 3, `whole words with pieces were chosen (${pieces} of ${chosen})`);
});

Deno.test("maskTokens: the same generator state gives the same masking", () => {
  const input = sentence(50, new Rng(1));
  const a = maskTokens(input, VOCAB, new Rng(42));
  const b = maskTokens(input, VOCAB, new Rng(42));
  const c = maskTokens(input, VOCAB, new Rng(43));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.positions, c.positions);
});

Deno.test("checkMaskingVocab: a WordPiece tokenizer passes, one without [MASK] is refused", () => {
  const wp = new WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]);
  assert.equal(checkMaskingVocab(wp, "train"), wp);
  assert.throws(
    () => checkMaskingVocab(new ByteTokenizer(), "train (data/x)"),
    /train \(data\/x\): tokenizer byte has no \[CLS\] token; BERT data needs a WordPiece/,
  );
  const { mask: _, ...noMask } = VOCAB;
  assert.throws(() => checkMaskingVocab(noMask, "train"), /no \[MASK\] token/);
});
