import assert from "assert";
import {
  BertBatchIterator,
  BertDataset,
  type BertDatasetOptions,
  type BertSample,
  buildBertDatasets,
  buildBertSampleIndex,
} from "../lib/data/bert_dataset.ts";
import type { MaskingVocab } from "../lib/data/bert_masking.ts";
import { Rng, splitDocuments } from "../lib/data/gpt_dataset.ts";
import { IndexedDataset, IndexedDatasetWriter } from "../lib/data/indexed_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";

const [PAD, UNK, CLS, SEP, MASK] = [0, 1, 2, 3, 4];
const VOCAB: MaskingVocab = {
  name: "toy",
  vocabSize: 10_000,
  pad: PAD,
  unk: UNK,
  cls: CLS,
  sep: SEP,
  mask: MASK,
  isContinuation: (id) => id >= 100 && id % 10 >= 5,
};

const dir = await Deno.makeTempDir({ prefix: "denotron_bert_" });

/**
 * Documents of sentences where token j of (global) sentence s is 100 + 10 s + j, so every
 * token names its sentence and place. `sentences[d]` lists document d's sentence lengths.
 */
async function writeDocs(name: string, sentences: number[][]): Promise<IndexedDataset> {
  const w = await IndexedDatasetWriter.create(`${dir}/${name}`, { dtype: "int32" });
  let s = 0;
  for (const doc of sentences) {
    for (const n of doc) {
      await w.addSequence(Array.from({ length: n }, (_, j) => 100 + 10 * s + j));
      s++;
    }
    w.endDocument();
  }
  await w.finalize();
  return IndexedDataset.open(`${dir}/${name}`);
}

/** 40 documents; every fifth has one sentence; sentences of 1 to 9 tokens. */
function corpus(seed: number): number[][] {
  const rng = new Rng(seed);
  return Array.from(
    { length: 40 },
    (_, d) => Array.from({ length: d % 5 === 0 ? 1 : 2 + (d % 6) }, () => 1 + rng.below(9)),
  );
}
const DOCS = corpus(1);
const data = await writeDocs("corpus", DOCS);
const ALL: [number, number] = [0, DOCS.length];
const sentenceOf = (t: number) => Math.floor((t - 100) / 10);
/** Document of each global sentence. */
const DOC_OF = DOCS.flatMap((doc, d) => doc.map(() => d));

/** The sample as the data had it: labels undo the masking; A and B cut at the [SEP]s. */
function segments(s: BertSample) {
  const original = Array.from(s.tokens, (t, i) => (s.labels[i] === -1 ? t : s.labels[i]));
  const seps = original.flatMap((t, i) => (t === SEP ? [i] : []));
  return {
    original,
    seps,
    a: original.slice(1, seps[0]),
    b: seps.length > 1 ? original.slice(seps[0] + 1, seps[1]) : [],
  };
}

function options(extra: Partial<BertDatasetOptions> = {}): BertDatasetOptions {
  return { seqLength: 24, vocab: VOCAB, seed: 5, ...extra };
}

/** Five binomial standard deviations around n * p. */
function assertBinomial(count: number, n: number, p: number, what: string) {
  const sd = Math.sqrt(n * p * (1 - p));
  assert.ok(Math.abs(count - n * p) <= 5 * sd, `${what}: ${count} of ${n}, expected ${n * p}`);
}

Deno.test("buildBertSampleIndex: runs of sentences reach the target, never leave one alone", () => {
  // doc 0: lengths 3 4 5; doc 1: one sentence (skipped); doc 2: 2 2 2 2; doc 3: a long sentence
  const documentIndices = [0, 3, 4, 8, 10];
  const lengths = [3, 4, 5, 9, 2, 2, 2, 2, 1, 513];
  const opts = { maxTokens: 4, minSentences: 2, shortSeqProb: 0 };
  const { index, epochs } = buildBertSampleIndex(
    documentIndices,
    lengths,
    [0, 4],
    opts,
    new Rng(1),
  );
  // rows: first sentence, end sentence, target length, document
  assert.deepEqual([...index], [0, 3, 4, 0, 4, 6, 4, 2, 6, 8, 4, 2]);
  assert.equal(epochs, 1);
  const one = buildBertSampleIndex(
    documentIndices,
    lengths,
    [0, 4],
    { ...opts, minSentences: 1 },
    new Rng(1),
  );
  assert.deepEqual(
    [...one.index.subarray(0, 8)],
    [0, 3, 4, 0, 3, 4, 4, 1],
    "one sentence suffices",
  );
  const more = buildBertSampleIndex(
    documentIndices,
    lengths,
    [0, 4],
    { ...opts, numSamples: 7 },
    new Rng(1),
  );
  assert.equal(more.epochs, 3, "whole epochs until 7 samples: 3 per epoch");
  assert.deepEqual([...more.index], [...index, ...index, ...index]);
  const none = buildBertSampleIndex([0, 1, 2], [5, 5], [0, 2], opts, new Rng(1));
  assert.equal(none.index.length, 0);
});

Deno.test("buildBertSampleIndex: short targets come with shortSeqProb, uniform on [2, max]", () => {
  // two sentences a document: one sample each, its target the document's first draw
  const docs = Array.from({ length: 2001 }, (_, d) => 2 * d);
  const lengths = new Array(4000).fill(3);
  const draw = (p: number) =>
    buildBertSampleIndex(docs, lengths, [0, 2000], {
      maxTokens: 30,
      minSentences: 2,
      shortSeqProb: p,
    }, new Rng(2))
      .index.filter((_, i) => i % 4 === 2);
  const all = draw(0.1);
  const short = all.filter((t) => t < 30).length;
  // a draw of 30 from [2, 30] is short in kind but not in length
  assertBinomial(short, all.length, 0.1 * 28 / 29, "short targets");
  const always = draw(1);
  assert.ok(always.every((t) => t >= 2 && t <= 30));
  for (const t of [2, 16, 30]) {
    assertBinomial(always.filter((x) => x === t).length, always.length, 1 / 29, `target ${t}`);
  }
});

Deno.test("BertDataset: [CLS] A [SEP] B [SEP], token types, padding, never over seqLength", () => {
  const ds = new BertDataset(data, ALL, options());
  for (let i = 0; i < ds.length; i++) {
    const s = ds.sample(i);
    const { seps, a, b } = segments(s);
    const target = ds.sampleIndex[4 * i + 2];
    assert.equal(s.tokens.length, 24);
    assert.equal(s.tokens[0], CLS);
    assert.equal(seps.length, 2);
    assert.equal(seps[1], s.validLength - 1, "the second [SEP] ends the real tokens");
    assert.ok(a.length >= 1 && b.length >= 1);
    assert.ok(
      a.length + b.length <= target && target <= 21,
      `${a.length} + ${b.length} > ${target}`,
    );
    assert.deepEqual(
      Array.from(s.tokenTypes),
      Array.from({ length: 24 }, (_, t) => (t > seps[0] && t <= seps[1] ? 1 : 0)),
    );
    assert.ok(s.tokens.subarray(s.validLength).every((t) => t === PAD));
    assert.ok(s.labels.subarray(s.validLength).every((l) => l === -1));
    for (const p of [0, ...seps]) assert.equal(s.labels[p], -1, "specials are never predicted");
    const predicted = s.labels.filter((l) => l !== -1).length;
    assert.ok(predicted >= 1 && predicted <= Math.max(1, Math.floor(0.15 * target + 1e-9)));
  }
});

Deno.test("BertDataset: sentence order, isRandom 1 exactly when B comes before A, about half", () => {
  const ds = new BertDataset(data, ALL, options({ numSamples: 2000 }));
  let swapped = 0;
  for (let i = 0; i < ds.length; i++) {
    const s = ds.sample(i);
    const { a, b } = segments(s);
    const [sa, sb] = [a.map(sentenceOf), b.map(sentenceOf)];
    const doc = ds.sampleIndex[4 * i + 3];
    assert.ok([...sa, ...sb].every((x) => DOC_OF[x] === doc), "both segments from the document");
    if (s.isRandom) assert.ok(Math.min(...sa) > Math.max(...sb), `sample ${i}: not swapped`);
    else assert.ok(Math.max(...sa) < Math.min(...sb), `sample ${i}: swapped`);
    swapped += s.isRandom;
  }
  assert.ok(ds.length >= 2000 && ds.epochs > 1);
  assertBinomial(swapped, ds.length, 0.5, "swapped pairs");
});

Deno.test("BertDataset: the longer segment is trimmed from the front or the back", () => {
  const ds = new BertDataset(data, ALL, options({ seqLength: 9, numSamples: 500 }));
  let [front, back] = [0, 0];
  for (let i = 0; i < ds.length; i++) {
    const { a, b } = segments(ds.sample(i));
    for (const seg of [a, b]) {
      // a segment stays one contiguous run of its sentences' tokens
      for (let k = 1; k < seg.length; k++) {
        const next = seg[k - 1] % 10 + 1 < DOCS.flat()[sentenceOf(seg[k - 1])]
          ? seg[k - 1] + 1
          : 100 + 10 * (sentenceOf(seg[k - 1]) + 1);
        assert.equal(seg[k], next, `sample ${i}: a gap inside a segment`);
      }
      if (seg[0] % 10 !== 0) front++;
      const last = seg.at(-1)!;
      if (last % 10 + 1 < DOCS.flat()[sentenceOf(last)]) back++;
    }
    assert.ok(a.length + b.length <= 6);
  }
  assert.ok(front > 100 && back > 100, `trimmed at the front ${front}, at the back ${back}`);
});

Deno.test("BertDataset: documents with one sentence are skipped; none left is an error", async () => {
  const ds = new BertDataset(data, ALL, options());
  for (let i = 0; i < ds.length; i++) {
    assert.ok(DOCS[ds.sampleIndex[4 * i + 3]].length >= 2);
  }
  const single = await writeDocs("single", [[3], [4], [5]]);
  assert.throws(
    () => new BertDataset(single, [0, 3], options({ name: "train" })),
    /^DenotronError: train: none of documents \[0, 3\) of .*single has two sentences.*--split-sentences$/,
  );
  const none = new BertDataset(single, [0, 3], options({ pairTask: "none" }));
  assert.equal(none.length, 3, "one segment needs one sentence");
  const s = none.sample(0);
  assert.deepEqual(segments(s).seps, [s.validLength - 1]);
  assert.ok(s.tokenTypes.every((t) => t === 0) && s.isRandom === 0);
});

Deno.test("BertDataset: next-sentence prediction takes a random B from another document", () => {
  const ds = new BertDataset(data, ALL, options({ pairTask: "nsp", numSamples: 1000 }));
  let random = 0;
  for (let i = 0; i < ds.length; i++) {
    const s = ds.sample(i);
    const { a, b } = segments(s);
    const doc = ds.sampleIndex[4 * i + 3];
    assert.ok(a.every((t) => DOC_OF[sentenceOf(t)] === doc));
    const bDocs = new Set(b.map((t) => DOC_OF[sentenceOf(t)]));
    assert.equal(bDocs.size, 1);
    if (s.isRandom) assert.ok(!bDocs.has(doc), `sample ${i}: B is from its own document`);
    else assert.ok(bDocs.has(doc) && Math.max(...a) < Math.min(...b));
    random += s.isRandom;
  }
  assertBinomial(random, ds.length, 0.5, "random B");
});

Deno.test("BertDataset: bad inputs are refused with a sentence", async () => {
  const byte = new ByteTokenizer() as unknown as MaskingVocab;
  assert.throws(
    () => new BertDataset(data, ALL, options({ vocab: byte, name: "train" })),
    /train \(.*corpus\): tokenizer byte has no \[CLS\] token; BERT data needs a WordPiece/,
  );
  const { mask: _, ...noMask } = VOCAB;
  assert.throws(
    () => new BertDataset(data, ALL, options({ vocab: noMask as MaskingVocab })),
    /has no \[MASK\] token/,
  );
  assert.throws(
    () => new BertDataset(data, ALL, options({ seqLength: 4 })),
    /seqLength 4 leaves no room/,
  );
  assert.throws(
    () => new BertDataset(data, ALL, options({ shortSeqProb: 2 })),
    /shortSeqProb 2 is not a probability/,
  );
  const small = { ...VOCAB, vocabSize: 300 };
  const ds = new BertDataset(data, ALL, options({ vocab: small }));
  assert.throws(
    () => ds.sample(ds.length - 1),
    /corpus\.bin: sentence \d+ holds token \d+, outside the vocabulary \[0, 300\)/,
  );
  assert.throws(() => ds.sample(ds.length), RangeError);
  const oneDoc = await writeDocs("one_doc", [[2, 3, 4]]);
  assert.throws(
    () => new BertDataset(oneDoc, [0, 1], options({ pairTask: "nsp" })),
    /needs two documents/,
  );
});

Deno.test("BertDataset: the seed fixes every sample; another seed changes them", () => {
  const [a, b, c] = [5, 5, 6].map((seed) => new BertDataset(data, ALL, options({ seed })));
  assert.deepEqual(a.shuffleIndex, b.shuffleIndex);
  for (let i = 0; i < a.length; i++) assert.deepEqual(a.sample(i), b.sample(i));
  assert.deepEqual(a.sample(3), a.sample(3), "a sample is the same on every read");
  assert.notDeepEqual(a.shuffleIndex, c.shuffleIndex);
  assert.notDeepEqual(
    Array.from({ length: 5 }, (_, i) => a.sample(i)),
    Array.from({ length: 5 }, (_, i) => c.sample(i)),
  );
});

Deno.test("BertBatchIterator: resuming from consumedSamples gives the same batches; ranks share a step", () => {
  const ds = new BertDataset(data, ALL, options({ numSamples: 300 }));
  const B = 3;
  const it = new BertBatchIterator(ds, {
    microBatchSize: B,
    dataParallelSize: 2,
    dataParallelRank: 1,
  });
  const seen = Array.from({ length: 80 }, () => it.next());
  assert.ok(80 * B * 2 > ds.length, "the steps pass the end and wrap around");
  assert.equal(it.consumedSamples, 80 * B * 2);
  const resumed = new BertBatchIterator(ds, {
    microBatchSize: B,
    dataParallelSize: 2,
    dataParallelRank: 1,
    consumedSamples: 60 * B * 2,
  });
  for (let k = 60; k < 80; k++) assert.deepEqual(resumed.next(), seen[k], `step ${k}`);
  // Ranks 0 and 1 of a step read what one rank with 2B reads.
  const whole = new BertBatchIterator(ds, { microBatchSize: 2 * B }).next();
  const r0 = new BertBatchIterator(ds, { microBatchSize: B, dataParallelSize: 2 }).next();
  const T = ds.seqLength;
  assert.deepEqual(whole.tokens.subarray(0, B * T), r0.tokens);
  assert.deepEqual(whole.labels.subarray(B * T), seen[0].labels);
  assert.deepEqual(whole.isRandom.subarray(B), seen[0].isRandom);
  const first = ds.sample(ds.shuffleIndex[0]);
  assert.deepEqual(r0.tokenTypes.subarray(0, T), first.tokenTypes);
  assert.equal(r0.validLengths[0], first.validLength);
  assert.throws(
    () => new BertBatchIterator(ds, { microBatchSize: 1, dataParallelRank: 1 }),
    /outside \[0, 1\)/,
  );
});

Deno.test("buildBertDatasets: each split draws only from its own documents", () => {
  const { train, valid, test } = buildBertDatasets(data, {
    split: "70,20,10",
    seqLength: 24,
    vocab: VOCAB,
  });
  const ranges = splitDocuments("70,20,10", DOCS.length);
  [train!, valid!, test!].forEach((ds, k) => {
    assert.equal(ds.name, ["train", "valid", "test"][k]);
    for (let i = 0; i < ds.length; i++) {
      const doc = ds.sampleIndex[4 * i + 3];
      assert.ok(doc >= ranges[k][0] && doc < ranges[k][1], `${ds.name}: document ${doc}`);
    }
  });
  const onlyTrain = buildBertDatasets(data, {
    split: "1",
    seqLength: 24,
    vocab: VOCAB,
    numSamples: [100],
  });
  assert.ok(onlyTrain.train!.length >= 100 && onlyTrain.valid === undefined);
});
