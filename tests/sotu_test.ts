import assert from "assert";
import {
  loadSotuDocuments,
  prepareSotuCorpus,
  prepareSotuSentences,
  SOTU_SPLIT,
} from "../lib/data/sotu.ts";
import { IndexedDataset } from "../lib/data/indexed_dataset.ts";
import { buildBertDatasets } from "../lib/data/bert_dataset.ts";
import { buildGptDatasets } from "../lib/data/gpt_dataset.ts";
import { splitSentences } from "../lib/data/sentences.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { loadBertBaseUncased } from "../lib/data/wordpiece.ts";

Deno.test("loadSotuDocuments: 233 addresses, 1790 onwards, oldest first", async () => {
  const docs = await loadSotuDocuments();
  assert.equal(docs.length, 233);
  assert.equal(docs[0].year, 1790);
  assert.equal(docs[0].name, "George Washington");
  assert.ok(docs.every((d, i) => i === 0 || d.year >= docs[i - 1].year));
  assert.ok(docs[0].text.startsWith("Fellow-Citizens of the Senate"));
});

Deno.test("prepareSotuCorpus: writes once, then reuses the cache", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_sotu_" });
  try {
    const tok = new ByteTokenizer();
    const prefix = await prepareSotuCorpus(`${dir}/cache`, tok);
    assert.equal(prefix, `${dir}/cache/sotu-v1-byte`);
    const docs = await loadSotuDocuments();
    const bytes = docs.reduce((n, d) => n + new TextEncoder().encode(d.text).length, 0);
    {
      using ds = await IndexedDataset.open(prefix);
      assert.equal(ds.documentCount, 233);
      assert.equal(ds.sequenceLengths.reduce((a, b) => a + b, 0), bytes + 233);
      const first = ds.read(0);
      assert.equal(first[first.length - 1], tok.eotId);
      // Stored in a shuffled order, so the held-out tail spans the centuries.
      const starts = Array.from({ length: 233 }, (_, i) => tok.decode(ds.read(i, 0, 40)));
      assert.notEqual(starts[0], tok.decode(new TextEncoder().encode(docs[0].text.slice(0, 40))));
      const { train, valid } = buildGptDatasets(ds, { split: SOTU_SPLIT, seqLength: 256 });
      assert.ok(train && valid && valid.length > 100);
    }
    const mtime = (await Deno.stat(`${prefix}.bin`)).mtime;
    await prepareSotuCorpus(`${dir}/cache`, tok);
    assert.deepEqual((await Deno.stat(`${prefix}.bin`)).mtime, mtime);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareSotuSentences: one document per address, one sequence per sentence, cached", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_sotu_" });
  try {
    const tok = await loadBertBaseUncased();
    const prefix = await prepareSotuSentences(`${dir}/cache`, tok);
    assert.equal(prefix, `${dir}/cache/sotu-sentences-v1-bert-base-uncased`);
    const docs = await loadSotuDocuments();
    // Each address's sentences as ids, keyed by all of them to find it again.
    const key = (sentences: ArrayLike<number>[]) =>
      sentences.map((ids) => Array.from(ids).join(",")).join("|");
    const addresses = new Map<string, number>();
    let sentences = 0;
    for (const d of docs) {
      const ids = splitSentences(d.text).map((t) => tok.encode(t)).filter((x) => x.length > 0);
      addresses.set(key(ids), addresses.size);
      sentences += ids.length;
    }
    assert.equal(addresses.size, docs.length);
    {
      using ds = await IndexedDataset.open(prefix);
      assert.equal(ds.documentCount, docs.length);
      assert.equal(ds.sequenceCount, sentences, "one sequence per sentence");
      const found = new Set<number>();
      for (let d = 0; d < ds.documentCount; d++) {
        const stored: Int32Array[] = [];
        for (let s = ds.documentIndices[d]; s < ds.documentIndices[d + 1]; s++) {
          stored.push(ds.read(s));
        }
        assert.ok(stored.every((ids) => ids.every((id) => id >= 0 && id < tok.vocabSize)));
        const address = addresses.get(key(stored));
        assert.ok(address !== undefined, `document ${d} is no address's sentences`);
        found.add(address);
      }
      assert.equal(found.size, docs.length, "each address stored once");
      const { train, valid } = buildBertDatasets(ds, {
        split: SOTU_SPLIT,
        seqLength: 128,
        vocab: tok,
      });
      assert.ok(train && valid && train.length > 10 * valid.length && valid.length > 100);
    }
    const mtime = (await Deno.stat(`${prefix}.bin`)).mtime;
    assert.equal(await prepareSotuSentences(`${dir}/cache`, tok), prefix);
    assert.deepEqual((await Deno.stat(`${prefix}.bin`)).mtime, mtime, "the cache is read");
    const files = [...Deno.readDirSync(`${dir}/cache`)].map((e) => e.name).sort();
    assert.deepEqual(files, [
      `sotu-sentences-v1-bert-base-uncased.bin`,
      `${prefix.split("/").pop()}.idx`,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareSotuSentences: the addresses in prepareSotuCorpus's order, so splits agree", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_sotu_" });
  try {
    const tok = new ByteTokenizer();
    using whole = await IndexedDataset.open(await prepareSotuCorpus(dir, tok));
    using split = await IndexedDataset.open(await prepareSotuSentences(dir, tok));
    assert.equal(split.documentCount, whole.documentCount);
    for (let d = 0; d < whole.documentCount; d++) {
      const sentence = tok.decode(split.read(split.documentIndices[d]));
      const bytes = Math.min(whole.sequenceLengths[d], 4 * sentence.length + 8);
      const text = tok.decode(whole.read(d, 0, bytes)).trimStart();
      assert.ok(text.startsWith(sentence), `document ${d}: ${sentence.slice(0, 40)}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
