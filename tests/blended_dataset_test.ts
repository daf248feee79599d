/**
 * Weighted dataset blending (lib/data/blended_dataset.ts): each dataset stays within one
 * sample of its share at every prefix of the blend, the --data-path forms and their
 * errors, the cached indices (read back, and a damaged file rebuilt), openDatasets' splits,
 * and tools/train.ts on a blend: counts printed, and a resumed run equal to the whole one.
 */
import assert from "assert";
import {
  BlendedDataset,
  buildBlendingIndices,
  openDatasets,
  parseDataBlend,
} from "../lib/data/blended_dataset.ts";
import { buildGptDatasets, GptDataset } from "../lib/data/gpt_dataset.ts";
import { IndexedDataset, IndexedDatasetWriter } from "../lib/data/indexed_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { readCliRun, runScript, TRAIN_SCRIPT, trainCliArgs } from "./train_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "denotron-blend-" });
const tokenizer = new ByteTokenizer();

/** An indexed dataset of `docs` byte-level documents, each `text(d)`. */
async function corpus(name: string, docs: number, text: (d: number) => string): Promise<string> {
  const prefix = `${tmp}/${name}`;
  const w = await IndexedDatasetWriter.create(prefix, { vocabSize: tokenizer.vocabSize });
  for (let d = 0; d < docs; d++) await w.addDocument(tokenizer.encode(text(d)), tokenizer.eotId);
  await w.finalize();
  return prefix;
}

// Three corpora whose bytes tell them apart: letters, digits, punctuation.
const A = await corpus("letters", 20, (d) => "abcdefghij".repeat(3 + (d % 4)));
const B = await corpus("digits", 30, (d) => "0123456789".repeat(2 + (d % 3)));
const C = await corpus("marks", 10, (d) => "!?;:,.-+*/".repeat(4 + (d % 2)));
const sourceOf = (sample: Int32Array) => {
  const c = String.fromCharCode(sample.find((t) => t !== tokenizer.eotId)!);
  return /[a-j]/.test(c) ? 0 : /\d/.test(c) ? 1 : 2;
};

/** A seeded stream of numbers in [0, 1). */
function uniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

Deno.test("buildBlendingIndices: at every prefix n no dataset is a sample ahead of weight × n, nor much behind", () => {
  const rand = uniform(7);
  for (const n of [2, 3, 5, 8, 16]) {
    let ahead = 0;
    let behind = 0;
    for (let trial = 0; trial < 40; trial++) {
      const raw = Array.from({ length: n }, () => rand() ** 3 + 1e-4);
      const total = raw.reduce((a, b) => a + b, 0);
      const weights = raw.map((w) => w / total);
      const size = 2000;
      const { datasetIndex, datasetSampleIndex } = buildBlendingIndices(weights, size);
      const counts = new Array(n).fill(0);
      for (let i = 0; i < size; i++) {
        const d = datasetIndex[i];
        // each dataset's samples are taken in its own order, each once
        assert.equal(datasetSampleIndex[i], counts[d], `${n} datasets, sample ${i}`);
        counts[d]++;
        for (let k = 0; k < n; k++) {
          ahead = Math.max(ahead, counts[k] - weights[k] * (i + 1));
          behind = Math.max(behind, weights[k] * (i + 1) - counts[k]);
        }
      }
    }
    assert.ok(ahead < 1, `${n} datasets: one ${ahead} samples ahead`);
    assert.ok(behind <= (n === 2 ? 0.5 + 1e-9 : 1.25), `${n} datasets: one ${behind} behind`);
  }
});

Deno.test("buildBlendingIndices: equal weights alternate, and 0.25/0.75 repeats every 4", () => {
  assert.deepEqual(Array.from(buildBlendingIndices([0.5, 0.5], 6).datasetIndex), [
    0,
    1,
    0,
    1,
    0,
    1,
  ]);
  assert.deepEqual(
    Array.from(buildBlendingIndices([0.25, 0.75], 8).datasetIndex),
    [1, 0, 1, 1, 1, 0, 1, 1],
  );
});

Deno.test("parseDataBlend: one prefix, weight-prefix pairs (normalised), and prefixes alone", () => {
  assert.deepEqual(parseDataBlend(["a"], "--data-path"), { prefixes: ["a"], weights: [1] });
  assert.deepEqual(parseDataBlend(["3", "a", "1", "b"], "--data-path"), {
    prefixes: ["a", "b"],
    weights: [0.75, 0.25],
  });
  assert.deepEqual(parseDataBlend(["a", "b"], "--data-path"), {
    prefixes: ["a", "b"],
    weights: null,
  });
  assert.deepEqual(parseDataBlend(["1e-1", "a", ".9", "b"], "--x").weights, [0.1, 0.9]);
});

Deno.test("parseDataBlend: a list that is neither form is one line naming the flag and the word", () => {
  const cases: [string[], RegExp][] = [
    [[], /--data-path: .*got nothing/],
    [["0.3", "a", "0.7"], /--data-path: .*the weight 0\.7 has no prefix/],
    [["0.3", "0.7", "a", "b"], /--data-path: .*the weight 0\.3 has no prefix/],
    [["a", "0.5", "b"], /--data-path: .*got the weight "?0\.5"? after a prefix/],
    [["0", "a", "0", "b"], /--data-path: the weights sum to 0/],
  ];
  for (const [words, message] of cases) {
    assert.throws(() => parseDataBlend(words, "--data-path"), (e: Error) => {
      assert.match(e.message, message);
      assert.ok(!e.message.includes("\n"), e.message);
      return true;
    });
  }
});

Deno.test("BlendedDataset: sample i is the component's sample in its own shuffled order; counts follow the weights", async () => {
  using a = await IndexedDataset.open(A);
  using b = await IndexedDataset.open(B);
  const da = new GptDataset(a, Int32Array.from({ length: 20 }, (_, i) => i), {
    seqLength: 8,
    numSamples: 40,
  });
  const db = new GptDataset(b, Int32Array.from({ length: 30 }, (_, i) => i), {
    seqLength: 8,
    numSamples: 80,
  });
  const blend = new BlendedDataset([da, db], [1, 2], 90);
  assert.deepEqual(blend.weights, [1 / 3, 2 / 3]);
  assert.deepEqual(blend.counts, [30, 60]);
  const seen = [0, 0];
  for (let i = 0; i < blend.length; i++) {
    const d = blend.datasetIndex[i];
    const part = [da, db][d];
    assert.deepEqual(blend.sample(i), part.sample(part.shuffleIndex[seen[d]++]), `sample ${i}`);
    assert.equal(sourceOf(blend.sample(i)), d);
  }
  assert.throws(() => blend.sample(90), /outside \[0, 90\)/);
  assert.throws(
    () =>
      new BlendedDataset(
        [da, new GptDataset(b, new Int32Array([0, 1]), { seqLength: 4 })],
        [1, 1],
        4,
      ),
    /has seqLength 4, the others 8/,
  );
  assert.throws(() => new BlendedDataset([da, db], [1], 4), /2 datasets for 1 weights/);
});

Deno.test("BlendedDataset: the indices are cached, read back equal, and a damaged cache is rebuilt", async () => {
  using a = await IndexedDataset.open(A);
  using b = await IndexedDataset.open(B);
  const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
  const parts = [
    new GptDataset(a, all(20), { seqLength: 8 }),
    new GptDataset(b, all(30), { seqLength: 8 }),
  ];
  const cacheDir = `${tmp}/cache`;
  const first = new BlendedDataset(parts, [0.3, 0.7], 50, { cacheDir, labels: [A, B] });
  assert.equal(first.fromCache, false);
  const description = JSON.parse(
    await Deno.readTextFile(first.cacheFile!.replace(/\.bin$/, ".json")),
  );
  assert.deepEqual(description.datasets.map((d: { label: string }) => d.label), [A, B]);
  const again = new BlendedDataset(parts, [0.3, 0.7], 50, { cacheDir, labels: [A, B] });
  assert.equal(again.fromCache, true);
  assert.equal(again.cacheFile, first.cacheFile);
  assert.deepEqual(again.datasetIndex, first.datasetIndex);
  assert.deepEqual(again.datasetSampleIndex, first.datasetSampleIndex);
  // other weights are another blend, in another file
  const other = new BlendedDataset(parts, [0.5, 0.5], 50, { cacheDir, labels: [A, B] });
  assert.notEqual(other.cacheFile, first.cacheFile);
  // a flipped byte fails the checksum: rebuilt (the same indices), and the file rewritten
  const bytes = await Deno.readFile(first.cacheFile!);
  bytes[20] ^= 1;
  await Deno.writeFile(first.cacheFile!, bytes);
  const rebuilt = new BlendedDataset(parts, [0.3, 0.7], 50, { cacheDir, labels: [A, B] });
  assert.equal(rebuilt.fromCache, false);
  assert.deepEqual(rebuilt.datasetIndex, first.datasetIndex);
  const labels = [A, B];
  assert.equal(new BlendedDataset(parts, [0.3, 0.7], 50, { cacheDir, labels }).fromCache, true);
  // a truncated file too
  await Deno.writeFile(first.cacheFile!, bytes.subarray(0, 30));
  assert.equal(new BlendedDataset(parts, [0.3, 0.7], 50, { cacheDir, labels }).fromCache, false);
});

Deno.test("openDatasets: --data-path blends each split of each dataset; the shares hold in train", async () => {
  using data = await openDatasets({
    dataPath: ["0.2", A, "0.5", B, "0.3", C],
    split: "80,20,0",
    seqLength: 8,
    numSamples: [200, undefined, undefined],
  });
  const train = data.train as BlendedDataset;
  assert.equal(train.length, 200);
  assert.deepEqual(train.counts, [40, 100, 60]);
  const from = [0, 0, 0];
  for (let i = 0; i < train.length; i++) from[sourceOf(train.sample(i))]++;
  assert.deepEqual(from, [40, 100, 60], "each sample reads the dataset its index names");
  assert.ok(data.valid instanceof BlendedDataset);
  assert.equal(data.test, undefined);
  assert.equal(data.files.length, 3);
  assert.match(
    data.summary[0],
    /^train: blend of 3, 200 samples: 20\.0% .*letters \(40\), 50\.0% .*digits \(100\), 30\.0% .*marks \(60\)$/,
  );
  assert.match(data.summary[1], /^valid: blend of 3/);
});

Deno.test("openDatasets: one prefix reads exactly as buildGptDatasets does", async () => {
  using data = await openDatasets({
    dataPath: [A],
    split: "80,20,0",
    seqLength: 8,
    seed: 3,
    numSamples: [50, undefined, undefined],
  });
  using a = await IndexedDataset.open(A);
  const want = buildGptDatasets(a, {
    split: "80,20,0",
    seqLength: 8,
    seed: 3,
    numSamples: [50, undefined, undefined],
  });
  assert.ok(data.train instanceof GptDataset);
  for (let i = 0; i < 50; i++) assert.deepEqual(data.train.sample(i), want.train!.sample(i));
  assert.equal(data.valid!.length, want.valid!.length);
  assert.equal(data.train.length, want.train!.length);
  assert.match(data.summary[0], new RegExp(`^train: .*letters, ${want.train!.length} samples$`));
});

Deno.test("openDatasets: separate train and valid paths are used whole; with --data-path they are refused", async () => {
  using data = await openDatasets({
    trainDataPath: ["1", A, "1", B],
    validDataPath: [C],
    seqLength: 8,
    numSamples: [30, undefined, undefined],
  });
  assert.deepEqual((data.train as BlendedDataset).counts, [15, 15]);
  const valid = data.valid as GptDataset;
  assert.equal(valid.documentIndex.length, 10, "all of C's documents");
  for (let i = 0; i < valid.length; i++) assert.equal(sourceOf(valid.sample(i)), 2);
  assert.equal(data.test, undefined);
  await assert.rejects(
    openDatasets({ dataPath: [A], trainDataPath: [B], seqLength: 8 }),
    /--data-path and --train-data-path.* are exclusive/,
  );
  await assert.rejects(openDatasets({ seqLength: 8 }), /no data: give --data-path/);
  await assert.rejects(
    openDatasets({ dataPath: ["0.5", A, "0.5", `${tmp}/missing`], seqLength: 8 }),
    /missing/,
  );
});

Deno.test("tools/train.ts on a blend: per-dataset counts printed; stopped at 2 and resumed, it equals the whole run", async () => {
  const blend = ["0.3", A, "0.7", B];
  const whole = await runScript(TRAIN_SCRIPT, trainCliArgs(blend, `${tmp}/whole`, 1));
  assert.equal(whole.code, 0, whole.out);
  // 4 steps of 8: 32 training samples, 0.3/0.7 of them
  assert.match(
    whole.out,
    /train: blend of 2, 32 samples: 30\.0% .*letters \(10\), 70\.0% .*digits \(22\)/,
  );
  assert.match(whole.out, /valid: blend of 2/);
  const save = `${tmp}/cut`;
  const cut = await runScript(TRAIN_SCRIPT, trainCliArgs(blend, save, 1, ["--exit-interval", "2"]));
  assert.equal(cut.code, 0, cut.out);
  assert.ok((await Array.fromAsync(Deno.readDir(`${save}/data_cache`))).length >= 2);
  const rest = await runScript(TRAIN_SCRIPT, trainCliArgs(blend, save, 1, ["--load", save]));
  assert.equal(rest.code, 0, rest.out);
  assert.match(rest.out, /resumed from .* at iteration 2/);
  assert.match(rest.out, /train: blend of 2, 32 samples \(indices from the cache\)/);
  const want = await readCliRun(`${tmp}/whole`, whole.out);
  const got = await readCliRun(save, rest.out);
  assert.deepEqual(got.losses, want.losses, "bit for bit");
});

Deno.test("tools/train.ts: a bad blend is one line naming --data-path", async () => {
  const r = await runScript(TRAIN_SCRIPT, trainCliArgs(["0.3", A, "0.7"], `${tmp}/bad`, 1));
  assert.notEqual(r.code, 0);
  assert.match(r.out, /--data-path: .*the weight 0\.7 has no prefix/);
  assert.ok(!/\n\s+at /.test(r.out), r.out);
});
