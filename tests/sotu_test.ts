import assert from "assert";
import { loadSotuDocuments, prepareSotuCorpus, SOTU_SPLIT } from "../lib/data/sotu.ts";
import { IndexedDataset } from "../lib/data/indexed_dataset.ts";
import { buildGptDatasets } from "../lib/data/gpt_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";

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
