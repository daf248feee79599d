import assert from "assert";
import {
  decodeIndex,
  DTYPE_CODES,
  dtypeForVocab,
  encodeIndex,
  IndexedDataset,
  IndexedDatasetWriter,
} from "../lib/data/indexed_dataset.ts";

/** A fresh directory, removed after `fn`. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_idx_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function u64(n: number): number[] {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  return [...out];
}
function i32(n: number): number[] {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setInt32(0, n, true);
  return [...out];
}

// Two documents: [10, 11, 12, EOD] and [300, EOD] with EOD = 50256, as uint16.
const HAND_IDX = new Uint8Array([
  ...[0x4d, 0x4d, 0x49, 0x44, 0x49, 0x44, 0x58, 0x00, 0x00], // "MMIDIDX\0\0"
  ...u64(1), // version
  8, // dtype code: uint16
  ...u64(2), // sequence count
  ...u64(3), // document count: length of the document index, 0 included
  ...i32(4),
  ...i32(2), // lengths
  ...u64(0),
  ...u64(8), // byte pointers: 4 tokens * 2 bytes
  ...u64(0),
  ...u64(1),
  ...u64(2), // document index
]);
const HAND_BIN = new Uint8Array([10, 0, 11, 0, 12, 0, 0x50, 0xc4, 0x2c, 0x01, 0x50, 0xc4]);

Deno.test("Megatron dtype codes and the uint16/int32 choice", () => {
  assert.deepEqual(DTYPE_CODES, {
    uint8: 1,
    int8: 2,
    int16: 3,
    int32: 4,
    int64: 5,
    float64: 6,
    float32: 7,
    uint16: 8,
  });
  assert.equal(dtypeForVocab(257), "uint16");
  assert.equal(dtypeForVocab(50257), "uint16");
  assert.equal(dtypeForVocab(65499), "uint16");
  assert.equal(dtypeForVocab(65500), "int32");
});

Deno.test("reader: reads a dataset whose bytes are written by hand", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/d.idx`, HAND_IDX);
    await Deno.writeFile(`${dir}/d.bin`, HAND_BIN);
    using ds = await IndexedDataset.open(`${dir}/d`);
    assert.equal(ds.dtype, "uint16");
    assert.equal(ds.sequenceCount, 2);
    assert.equal(ds.documentCount, 2);
    assert.deepEqual([...ds.sequenceLengths], [4, 2]);
    assert.deepEqual([...ds.sequencePointers], [0, 8]);
    assert.deepEqual([...ds.documentIndices], [0, 1, 2]);
    assert.deepEqual([...ds.read(0)], [10, 11, 12, 50256]);
    assert.deepEqual([...ds.read(1)], [300, 50256]);
    assert.deepEqual([...ds.read(0, 1, 2)], [11, 12]);
    assert.deepEqual([...ds.read(0, 4, 0)], []);
  });
});

Deno.test("writer: produces exactly the hand-written bytes", async () => {
  await inTempDir(async (dir) => {
    const w = await IndexedDatasetWriter.create(`${dir}/d`, { vocabSize: 50257 });
    await w.addDocument([10, 11, 12], 50256);
    await w.addDocument(new Int32Array([300]), 50256);
    assert.equal(w.documentCount, 2);
    assert.equal(w.tokenCount, 6);
    await w.finalize();
    assert.deepEqual(await Deno.readFile(`${dir}/d.idx`), HAND_IDX);
    assert.deepEqual(await Deno.readFile(`${dir}/d.bin`), HAND_BIN);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["d.bin", "d.idx"]);
  });
});

Deno.test("encodeIndex/decodeIndex round-trip, multi-sequence documents included", () => {
  const bytes = encodeIndex("int32", [5, 0, 7, 1], [0, 2, 2, 4]);
  const t = decodeIndex(bytes, "mem.idx", 4 * 13);
  assert.equal(t.dtype, "int32");
  assert.deepEqual([...t.sequenceLengths], [5, 0, 7, 1]);
  assert.deepEqual([...t.sequencePointers], [0, 20, 20, 48]);
  assert.deepEqual([...t.documentIndices], [0, 2, 2, 4]);
});

Deno.test("writer/reader round trip over every integer dtype and a small write buffer", async () => {
  await inTempDir(async (dir) => {
    const cases = {
      uint8: [0, 255],
      int8: [-128, 127],
      uint16: [0, 65535],
      int16: [-32768, 32767],
      int32: [-(2 ** 31), 2 ** 31 - 1],
      int64: [-5, 2 ** 31 - 1],
    } as const;
    for (const [dtype, [lo, hi]] of Object.entries(cases)) {
      const prefix = `${dir}/${dtype}`;
      const w = await IndexedDatasetWriter.create(prefix, {
        dtype: dtype as keyof typeof cases,
        bufferBytes: 64,
      });
      const docs = [[lo, hi, 0], [], Array.from({ length: 100 }, (_, i) => (i % 100) + 1)];
      await w.addSequence(docs[0]);
      await w.addSequence(docs[1]);
      w.endDocument();
      await w.addDocument(docs[2]);
      await w.finalize();
      using ds = await IndexedDataset.open(prefix);
      assert.equal(ds.dtype, dtype);
      assert.deepEqual([...ds.documentIndices], [0, 2, 3]);
      docs.forEach((d, i) => assert.deepEqual([...ds.read(i)], d, `${dtype} sequence ${i}`));
    }
  });
});

Deno.test("writer: a token that does not fit the dtype is a RangeError naming it", async () => {
  await inTempDir(async (dir) => {
    const w = await IndexedDatasetWriter.create(`${dir}/d`, { dtype: "uint16" });
    await assert.rejects(w.addDocument([1, 70000]), /token 1 \(70000\) does not fit uint16/);
    await assert.rejects(w.addDocument([1.5]), /token 0 \(1.5\) does not fit uint16/);
    await w.abort();
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("writer: an unfinished rewrite leaves the existing dataset intact", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/d.idx`, HAND_IDX);
    await Deno.writeFile(`${dir}/d.bin`, HAND_BIN);
    const w = await IndexedDatasetWriter.create(`${dir}/d`, { vocabSize: 50257 });
    await w.addDocument([1, 2, 3, 4, 5, 6, 7]);
    // Reading while the new one is in progress still sees the old one.
    using ds = await IndexedDataset.open(`${dir}/d`);
    assert.deepEqual([...ds.read(1)], [300, 50256]);
    await w.abort();
    assert.deepEqual(await Deno.readFile(`${dir}/d.idx`), HAND_IDX);
    assert.deepEqual(await Deno.readFile(`${dir}/d.bin`), HAND_BIN);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["d.bin", "d.idx"]);
  });
});

Deno.test("writer: finalize twice or add after finalize is an error", async () => {
  await inTempDir(async (dir) => {
    const w = await IndexedDatasetWriter.create(`${dir}/d`, { dtype: "int32" });
    await w.finalize();
    await assert.rejects(w.finalize(), /already finalized/);
    await assert.rejects(w.addDocument([1]), /already finalized/);
    using ds = await IndexedDataset.open(`${dir}/d`);
    assert.equal(ds.documentCount, 0);
  });
});

/** Opens HAND_IDX with `edit` applied, paired with HAND_BIN (or `bin`). */
async function openEdited(
  edit: (idx: Uint8Array) => Uint8Array,
  bin: Uint8Array = HAND_BIN,
): Promise<void> {
  await inTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/d.idx`, edit(HAND_IDX.slice()));
    await Deno.writeFile(`${dir}/d.bin`, bin);
    (await IndexedDataset.open(`${dir}/d`)).close();
  });
}

Deno.test("reader: missing files are errors that name the file", async () => {
  await inTempDir(async (dir) => {
    await assert.rejects(
      IndexedDataset.open(`${dir}/nope`),
      /nope\.idx: cannot open the index file/,
    );
    await Deno.writeFile(`${dir}/d.idx`, HAND_IDX);
    await assert.rejects(IndexedDataset.open(`${dir}/d`), /d\.bin: cannot open the token file/);
  });
});

Deno.test("reader: empty, truncated and foreign .idx files name the file and field", async () => {
  await assert.rejects(openEdited(() => new Uint8Array()), /d\.idx: header: file is 0 bytes/);
  await assert.rejects(
    openEdited(() => new TextEncoder().encode('{"not": "an index", "padding": "xxxxxxxxxxx"}')),
    /d\.idx: magic: not a Megatron indexed dataset index/,
  );
  await assert.rejects(
    openEdited((b) => b.subarray(0, b.length - 3)),
    /d\.idx: size: file is 79 bytes but 2 sequences and 2 documents need 82 \(truncated\?\)/,
  );
  await assert.rejects(
    openEdited((b) => new Uint8Array([...b, 1, 2, 3, 4, 5])),
    /d\.idx: size: .*trailing bytes/,
  );
  await assert.rejects(openEdited((b) => (b[9] = 2, b)), /d\.idx: version: expected 1, got 2/);
  await assert.rejects(openEdited((b) => (b[17] = 9, b)), /d\.idx: dtype code: unknown code 9/);
  await assert.rejects(
    openEdited((b) => (b.set(u64(2 ** 40), 18), b)),
    /d\.idx: size: .*truncated/,
  );
});

Deno.test("reader: inconsistent tables name the field", async () => {
  await assert.rejects(
    openEdited((b) => (b.set(i32(-1), 34), b)),
    /d\.idx: sequence lengths: sequence 0 has negative length -1/,
  );
  await assert.rejects(
    openEdited((b) => (b.set(u64(3), 42 + 8), b)),
    /d\.idx: sequence pointers: sequence 1 has pointer 3/,
  );
  await assert.rejects(
    openEdited((b) => (b.set(u64(1), 58), b)),
    /d\.idx: document indices: must start with 0, got 1/,
  );
  await assert.rejects(
    openEdited((b) => (b.set(u64(1), 74), b)),
    /d\.idx: document indices: last entry is 1, expected 2 sequences/,
  );
});

Deno.test("reader: a truncated .bin is caught at open, naming the sequence", async () => {
  await assert.rejects(
    openEdited((b) => b, HAND_BIN.subarray(0, 10)),
    /d\.idx: sequence pointers: sequence 1 ends at byte 12 but the \.bin file has 10 bytes/,
  );
});

Deno.test("reader: out-of-range reads and reads after close are errors", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/d.idx`, HAND_IDX);
    await Deno.writeFile(`${dir}/d.bin`, HAND_BIN);
    const ds = await IndexedDataset.open(`${dir}/d`);
    assert.throws(() => ds.read(2), /sequence 2 is outside \[0, 2\)/);
    assert.throws(() => ds.read(0, 3, 2), /tokens \[3, 5\) of sequence 0 are outside \[0, 4\)/);
    ds.close();
    ds.close();
    assert.throws(() => ds.read(0), /dataset is closed/);
  });
});
