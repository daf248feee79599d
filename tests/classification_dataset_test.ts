import assert from "assert";
import {
  ClassificationBatchIterator,
  ClassificationDataset,
  type ClassificationExample,
} from "../lib/data/classification_dataset.ts";
import { loadSpamSplits } from "../lib/data/spam_dataset.ts";
import { loadBertBaseUncased, WordPieceTokenizer } from "../lib/data/wordpiece.ts";

const VOCAB = WordPieceTokenizer.fromVocabTxt(
  ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "win", "now", "hi", "mom", "!"].join("\n"),
);
const [PAD, CLS, SEP] = [0, 2, 3];
/** Example e says "hi" e times, so every row names its example by its length. */
const EXAMPLES: ClassificationExample[] = Array.from(
  { length: 7 },
  (_, e) => ({ text: "hi ".repeat(e + 1), label: e % 2 }),
);
const exampleOf = (row: ArrayLike<number>) => Array.from(row).filter((t) => t === 7).length - 1;

Deno.test("ClassificationDataset: [CLS] text [SEP], cut to the row, [PAD] after, label", () => {
  const ds = new ClassificationDataset(
    [{ text: "Win now!", label: 1 }, { text: "hi mom ".repeat(5), label: 0 }],
    { seqLength: 7, vocab: VOCAB },
  );
  const a = ds.sample(0);
  assert.deepEqual(Array.from(a.tokens), [CLS, 5, 6, 9, SEP, PAD, PAD]);
  assert.deepEqual([a.validLength, a.label], [5, 1]);
  const b = ds.sample(1);
  assert.deepEqual(Array.from(b.tokens), [CLS, 7, 8, 7, 8, 7, SEP], "the start is kept");
  assert.deepEqual([b.validLength, b.label], [7, 0]);
  assert.deepEqual(ds.sample(1), b, "the same on every read");
  assert.throws(() => ds.sample(2), RangeError);
  assert.throws(
    () => new ClassificationDataset(EXAMPLES, { seqLength: 2, vocab: VOCAB, name: "train" }),
    /^DenotronError: train: seqLength 2 leaves no room/,
  );
  assert.throws(
    () => new ClassificationDataset([{ text: "x", label: -1 }], { seqLength: 4, vocab: VOCAB }),
    /example 0 has label -1, not an integer from 0/,
  );
  assert.throws(() => new ClassificationDataset([], { seqLength: 4, vocab: VOCAB }), /no examples/);
});

Deno.test("ClassificationDataset: each epoch reads every example once, in its own order", () => {
  const ds = new ClassificationDataset(EXAMPLES, { seqLength: 12, vocab: VOCAB, numSamples: 20 });
  assert.deepEqual([ds.epochs, ds.length, ds.exampleCount], [3, 21, 7]);
  const epochs = [0, 1, 2].map((e) =>
    Array.from(ds.shuffleIndex.subarray(7 * e, 7 * e + 7), (i) => exampleOf(ds.sample(i).tokens))
  );
  for (const order of epochs) assert.deepEqual([...order].sort(), [0, 1, 2, 3, 4, 5, 6]);
  assert.notDeepEqual(epochs[0], epochs[1]);
  const inOrder = new ClassificationDataset(EXAMPLES, {
    seqLength: 12,
    vocab: VOCAB,
    shuffle: false,
  });
  assert.deepEqual(Array.from(inOrder.shuffleIndex), [0, 1, 2, 3, 4, 5, 6]);
});

Deno.test("ClassificationBatchIterator: rows, resume from consumedSamples, ranks share a step", () => {
  const ds = new ClassificationDataset(EXAMPLES, { seqLength: 12, vocab: VOCAB, numSamples: 40 });
  const B = 2;
  const whole = new ClassificationBatchIterator(ds, { microBatchSize: 2 * B });
  const batches = Array.from({ length: 8 }, () => whole.next());
  assert.equal(whole.consumedSamples, 8 * 2 * B);
  const first = batches[0];
  for (let r = 0; r < 2 * B; r++) {
    const want = ds.sample(ds.shuffleIndex[r]);
    assert.deepEqual(first.tokens.subarray(12 * r, 12 * r + 12), want.tokens);
    assert.equal(first.validLengths[r], want.validLength);
    assert.equal(first.labels[r], want.label);
  }
  assert.ok(first.tokenTypes.every((t) => t === 0));
  assert.deepEqual([first.batchSize, first.seqLength], [2 * B, 12]);
  // Two ranks of B read the halves of the one-rank batch, from any resume point.
  for (const step of [0, 5]) {
    const ranks = [0, 1].map((rank) =>
      new ClassificationBatchIterator(ds, {
        microBatchSize: B,
        consumedSamples: step * 2 * B,
        dataParallelRank: rank,
        dataParallelSize: 2,
      })
    );
    const [a, b] = ranks.map((it) => it.next());
    assert.deepEqual([...a.tokens, ...b.tokens], [...batches[step].tokens]);
    assert.deepEqual([...a.labels, ...b.labels], [...batches[step].labels]);
    assert.equal(ranks[0].consumedSamples, (step + 1) * 2 * B);
  }
  assert.throws(() => new ClassificationBatchIterator(ds, { microBatchSize: 0 }), /microBatchSize/);
});

Deno.test("ClassificationDataset: spam rows under bert-base-uncased stay in the vocabulary", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_spam_" });
  try {
    const { valid } = await loadSpamSplits(dir);
    const vocab = await loadBertBaseUncased();
    const ds = new ClassificationDataset(valid, { seqLength: 128, vocab, shuffle: false });
    const it = new ClassificationBatchIterator(ds, { microBatchSize: 32 });
    let full = 0;
    for (let k = 0; k * 32 < ds.length; k++) {
      const batch = it.next();
      assert.ok(batch.tokens.every((t) => t >= 0 && t < vocab.vocabSize));
      for (let r = 0; r < 32; r++) {
        const row = batch.tokens.subarray(128 * r, 128 * r + 128);
        const n = batch.validLengths[r];
        assert.ok(row[0] === vocab.cls && row[n - 1] === vocab.sep && n >= 3);
        assert.ok(row.subarray(n).every((t) => t === vocab.pad));
        if (n === 128) full++;
      }
    }
    assert.ok(full > ds.length / 4, `${full} of ${ds.length} rows are cut: a long-text corpus`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
