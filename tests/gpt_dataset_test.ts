import assert from "assert";
import {
  buildGptDatasets,
  buildSampleIndex,
  GptBatchIterator,
  GptDataset,
  MicroBatchSampler,
  parseSplit,
  Rng,
  splitDocuments,
} from "../lib/data/gpt_dataset.ts";
import { IndexedDataset, IndexedDatasetWriter } from "../lib/data/indexed_dataset.ts";

const DOC_LENGTHS = [5, 3, 7, 1, 9, 4, 6, 2, 8, 5];
const dir = await Deno.makeTempDir({ prefix: "denotron_gpt_" });

/** Document d holds tokens d*100, d*100+1, ...: every token names its place. */
async function writeDocs(lengths: number[]): Promise<IndexedDataset> {
  const prefix = `${dir}/docs${lengths.length}-${lengths[0]}`;
  const w = await IndexedDatasetWriter.create(prefix, { dtype: "int32" });
  for (const [d, n] of lengths.entries()) {
    await w.addDocument(Array.from({ length: n }, (_, i) => d * 100 + i));
  }
  await w.finalize();
  return IndexedDataset.open(prefix);
}

const data = await writeDocs(DOC_LENGTHS);
const ALL = Int32Array.from(DOC_LENGTHS.keys());
const TOTAL = DOC_LENGTHS.reduce((a, b) => a + b, 0); // 50

/** The token stream a dataset reads, in its document order. */
function stream(ds: GptDataset): number[] {
  return [...ds.documentIndex].flatMap((d) => Array.from(data.read(d)));
}

Deno.test("GptDataset: sample i is tokens [iT, iT + T + 1) of the shuffled document stream", () => {
  for (const T of [1, 3, 4, 7, 49]) {
    const ds = new GptDataset(data, ALL, { seqLength: T, seed: 7 });
    assert.equal(ds.length, Math.floor((TOTAL - 1) / T), `T=${T}`);
    assert.equal(ds.epochs, 1);
    const s = stream(ds);
    for (let i = 0; i < ds.length; i++) {
      assert.deepEqual([...ds.sample(i)], s.slice(i * T, i * T + T + 1), `T=${T} sample ${i}`);
    }
  }
});

Deno.test("GptDataset: the document index is a seeded shuffle of the documents", () => {
  const a = new GptDataset(data, ALL, { seqLength: 4, seed: 1 });
  const b = new GptDataset(data, ALL, { seqLength: 4, seed: 1 });
  const c = new GptDataset(data, ALL, { seqLength: 4, seed: 2 });
  assert.deepEqual([...a.documentIndex].sort((x, y) => x - y), [...ALL]);
  assert.deepEqual(a.documentIndex, b.documentIndex);
  assert.deepEqual(a.shuffleIndex, b.shuffleIndex);
  assert.notDeepEqual(a.documentIndex, c.documentIndex);
  assert.deepEqual([...a.shuffleIndex].sort((x, y) => x - y), [...Array(a.length).keys()]);
});

Deno.test("GptDataset: asking for more samples than an epoch repeats every document", () => {
  const T = 4; // 12 samples per epoch
  const ds = new GptDataset(data, ALL, { seqLength: T, numSamples: 30 });
  assert.equal(ds.epochs, 3); // 3 * 50 - 1 >= 30 * 4 > 2 * 50 - 1
  assert.equal(ds.length, Math.floor((3 * TOTAL - 1) / T));
  for (const d of ALL) assert.equal(ds.documentIndex.filter((x) => x === d).length, 3);
  // 30 - 24 = 6 samples from the last epoch < 80% of 12: it is shuffled on its own.
  const last = [...ds.documentIndex.subarray(20)].sort((x, y) => x - y);
  assert.deepEqual(last, [...ALL]);
  const s = stream(ds);
  for (let i = 0; i < ds.length; i++) {
    assert.deepEqual([...ds.sample(i)], s.slice(i * T, i * T + T + 1));
  }
});

Deno.test("buildSampleIndex: skips empty sequences and lands on document starts", () => {
  const lengths = new Int32Array([3, 0, 2, 4]);
  const idx = buildSampleIndex(lengths, new Int32Array([0, 1, 2, 3]), 3, 2);
  // sample 0 = doc0[0..3) + doc2[0], sample 1 starts at doc2[0], sample 2 at doc3[1]
  assert.deepEqual([...idx], [0, 0, 2, 0, 3, 1]);
});

Deno.test("GptDataset: too few tokens for one sample is an error naming the split", () => {
  assert.throws(
    () => new GptDataset(data, new Int32Array([3]), { seqLength: 4, name: "valid" }),
    /valid: 1 tokens in 1 sequences of .* cannot fill one sample of 5 tokens/,
  );
  assert.throws(() => new GptDataset(data, ALL, { seqLength: 0 }), /bad seqLength 0/);
});

Deno.test("parseSplit: Megatron-style weights", () => {
  assert.deepEqual(parseSplit("969,30,1"), [0.969, 0.03, 0.001]);
  assert.deepEqual(parseSplit("90/10"), [0.9, 0.1, 0]);
  assert.deepEqual(parseSplit([1, 1, 2]), [0.25, 0.25, 0.5]);
  assert.throws(() => parseSplit("a,b"), /split "a,b": expected up to three non-negative weights/);
  assert.throws(() => parseSplit("1,2,3,4"), /expected up to three/);
  assert.throws(() => parseSplit("0,0"), /weights sum to 0/);
});

Deno.test("splitDocuments: contiguous ranges, rounding drift goes to the first split", () => {
  assert.deepEqual(splitDocuments("969,30,1", 1000), [[0, 969], [969, 999], [999, 1000]]);
  assert.deepEqual(splitDocuments("1,1,1", 10), [[0, 4], [4, 7], [7, 10]]);
  assert.deepEqual(splitDocuments("95,5,0", 233), [[0, 221], [221, 233], [233, 233]]);
  assert.deepEqual(splitDocuments("1,0,0", 3), [[0, 3], [3, 3], [3, 3]]);
});

Deno.test("buildGptDatasets: each split reads only its own documents", () => {
  const { train, valid, test } = buildGptDatasets(data, { split: "8,2", seqLength: 2 });
  assert.ok(train && valid);
  assert.equal(test, undefined);
  const docsOf = (ds: GptDataset) => new Set(Array.from(ds.documentIndex));
  assert.deepEqual(docsOf(train), new Set([0, 1, 2, 3, 4, 5, 6, 7]));
  assert.deepEqual(docsOf(valid), new Set([8, 9]));
  assert.equal(valid.length, Math.floor((8 + 5 - 1) / 2));
  for (let i = 0; i < valid.length; i++) {
    for (const t of valid.sample(i)) assert.ok(t >= 800, `valid token ${t} from a train doc`);
  }
});

Deno.test("GptBatchIterator: targets are inputs shifted by one, (B, T) row-major", () => {
  const ds = new GptDataset(data, ALL, { seqLength: 4 });
  const it = new GptBatchIterator(ds, { microBatchSize: 3 });
  const batch = it.next();
  assert.equal(batch.inputs.length, 12);
  assert.equal(it.consumedSamples, 3);
  for (let b = 0; b < 3; b++) {
    const sample = ds.sample(ds.shuffleIndex[b]);
    assert.deepEqual([...batch.inputs.subarray(b * 4, b * 4 + 4)], [...sample.subarray(0, 4)]);
    assert.deepEqual([...batch.targets.subarray(b * 4, b * 4 + 4)], [...sample.subarray(1)]);
  }
});

Deno.test("GptBatchIterator: resuming from consumedSamples continues the same sequence", () => {
  const ds = new GptDataset(data, ALL, { seqLength: 3, numSamples: 40 });
  const straight = new GptBatchIterator(ds, { microBatchSize: 2 });
  const batches = Array.from({ length: 10 }, () => straight.next());
  const resumed = new GptBatchIterator(ds, { microBatchSize: 2, consumedSamples: 12 });
  for (let k = 6; k < 10; k++) assert.deepEqual(resumed.next(), batches[k]);
  assert.equal(resumed.consumedSamples, 20);
});

Deno.test("GptBatchIterator: data-parallel ranks split each global step between them", () => {
  const ds = new GptDataset(data, ALL, { seqLength: 2 });
  const whole = new GptBatchIterator(ds, { microBatchSize: 4 });
  const r0 = new GptBatchIterator(ds, { microBatchSize: 2, dataParallelSize: 2 });
  const r1 = new GptBatchIterator(ds, {
    microBatchSize: 2,
    dataParallelSize: 2,
    dataParallelRank: 1,
  });
  for (let step = 0; step < 3; step++) {
    const w = whole.next();
    const [a, b] = [r0.next(), r1.next()];
    assert.deepEqual([...a.inputs, ...b.inputs], [...w.inputs]);
    assert.equal(r0.consumedSamples, whole.consumedSamples);
  }
  assert.throws(
    () => new GptBatchIterator(ds, { microBatchSize: 1, dataParallelRank: 2 }),
    /dataParallelRank 2 is outside \[0, 1\)/,
  );
});

Deno.test("Rng: deterministic, uniform enough, unbiased bounds", () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const xs = Array.from({ length: 5 }, () => a.nextU32());
  assert.deepEqual(xs, Array.from({ length: 5 }, () => b.nextU32()));
  const counts = new Array(10).fill(0);
  const r = new Rng(3);
  for (let i = 0; i < 100_000; i++) counts[r.below(10)]++;
  for (const c of counts) assert.ok(Math.abs(c - 10_000) < 500, `bucket count ${c}`);
});

Deno.test({
  name: "cleanup",
  fn: async () => {
    data.close();
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("MicroBatchSampler: the places each rank reads, step by step, wrapping at the end", () => {
  const order = { length: 5, shuffleIndex: Int32Array.from([4, 3, 2, 1, 0]) };
  const ranks = [0, 1].map((rank) =>
    new MicroBatchSampler({ microBatchSize: 2, dataParallelRank: rank, dataParallelSize: 2 })
  );
  // step: [rank 0's places, rank 1's places] of the order, then the ids they map to
  const table = [
    [[0, 1], [2, 3]],
    [[4, 0], [1, 2]],
    [[3, 4], [0, 1]],
  ];
  table.forEach((places, step) => {
    ranks.forEach((sampler, rank) => {
      const want = places[rank].map((k) => order.shuffleIndex[k]);
      assert.deepEqual(Array.from(sampler.next(order)), want, `step ${step} rank ${rank}`);
      assert.equal(sampler.consumedSamples, 4 * (step + 1));
    });
  });
  const resumed = new MicroBatchSampler({ microBatchSize: 2, consumedSamples: 4 });
  assert.deepEqual(Array.from(resumed.next(order)), [0, 4]);
  assert.throws(() => new MicroBatchSampler({ microBatchSize: 1.5 }), /positive integer, got 1.5/);
});
