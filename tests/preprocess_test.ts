import assert from "assert";
import { preprocess, safeCut } from "../lib/data/preprocess.ts";
import { IndexedDataset } from "../lib/data/indexed_dataset.ts";
import { ByteTokenizer, loadTokenizer } from "../lib/data/tokenizer.ts";

const byte = new ByteTokenizer();

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_pre_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function allTokens(ds: IndexedDataset, doc: number): number[] {
  const out: number[] = [];
  for (let s = ds.documentIndices[doc]; s < ds.documentIndices[doc + 1]; s++) {
    out.push(...ds.read(s));
  }
  return out;
}

Deno.test("preprocess: JSON lines become one document each, EOD appended", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/a.jsonl`,
      '{"text": "ab", "id": 1}\n\n{"text": "é"}\n{"body": "x", "text": ""}',
    );
    const stats = await preprocess({
      inputs: [`${dir}/a.jsonl`],
      outputPrefix: `${dir}/out`,
      tokenizer: byte,
      appendEod: true,
    });
    assert.equal(stats.documents, 3);
    assert.equal(stats.tokens, 3 + 3 + 1);
    using ds = await IndexedDataset.open(`${dir}/out`);
    assert.equal(ds.dtype, "uint16");
    assert.deepEqual([...ds.documentIndices], [0, 1, 2, 3]);
    assert.deepEqual(allTokens(ds, 0), [97, 98, 256]);
    assert.deepEqual(allTokens(ds, 1), [0xc3, 0xa9, 256]);
    assert.deepEqual(allTokens(ds, 2), [256]);
  });
});

Deno.test("preprocess: --json-key picks the field", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.json`, '{"body": "hi"}\n');
    await preprocess({
      inputs: [`${dir}/a.json`],
      outputPrefix: `${dir}/out`,
      tokenizer: byte,
      jsonKey: "body",
    });
    using ds = await IndexedDataset.open(`${dir}/out`);
    assert.deepEqual(allTokens(ds, 0), [104, 105]);
  });
});

Deno.test("preprocess: a large text file is chunked at safe cuts with identical tokens", async () => {
  const gpt2 = await loadTokenizer("gpt2");
  await inTempDir(async (dir) => {
    const paragraph = "The Congress met.\nIt voted  twice.\n\n  Then, it rested 🙂\n\n\n";
    const text = paragraph.repeat(200) + "end";
    await Deno.writeTextFile(`${dir}/big.txt`, text);
    await Deno.writeTextFile(`${dir}/small.txt`, "tiny");
    const stats = await preprocess({
      inputs: [`${dir}/big.txt`, `${dir}/small.txt`],
      outputPrefix: `${dir}/out`,
      tokenizer: gpt2,
      appendEod: true,
      chunkChars: 500,
    });
    using ds = await IndexedDataset.open(`${dir}/out`);
    assert.equal(ds.documentCount, 2);
    assert.ok(ds.documentIndices[1] > 10, "the big file spans many sequences");
    assert.deepEqual(allTokens(ds, 0), [...gpt2.encode(text), 50256]);
    assert.deepEqual(allTokens(ds, 1), [...gpt2.encode("tiny"), 50256]);
    assert.equal(stats.tokens, ds.sequenceLengths.reduce((a, b) => a + b, 0));
  });
});

Deno.test("safeCut: only after a lone newline between non-space characters", () => {
  assert.equal(safeCut("ab\ncd", 0), 3);
  assert.equal(safeCut("ab\n\ncd", 0), -1);
  assert.equal(safeCut("ab \ncd", 0), -1);
  assert.equal(safeCut("ab\n cd", 0), -1);
  assert.equal(safeCut("ab\ncd\n\nef\ngh", 4), 10);
});

Deno.test("preprocess: missing, empty and malformed inputs name the file and line", async () => {
  await inTempDir(async (dir) => {
    const run = (inputs: string[], jsonKey?: string) =>
      preprocess({ inputs, outputPrefix: `${dir}/out`, tokenizer: byte, jsonKey });
    await assert.rejects(run([]), /no input files/);
    await assert.rejects(run([`${dir}/none.txt`]), /none\.txt: cannot read input/);
    await Deno.writeTextFile(`${dir}/empty.jsonl`, "");
    await assert.rejects(run([`${dir}/empty.jsonl`]), /empty\.jsonl: input is empty/);
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"text": "ok"}\n{"text": oops}\n');
    await assert.rejects(run([`${dir}/bad.jsonl`]), /bad\.jsonl:2: not valid JSON/);
    await Deno.writeTextFile(`${dir}/key.jsonl`, '{"content": "ok"}\n');
    await assert.rejects(run([`${dir}/key.jsonl`]), /key\.jsonl:1: no "text" field/);
    await Deno.writeTextFile(`${dir}/num.jsonl`, '{"text": 5}\n');
    await assert.rejects(run([`${dir}/num.jsonl`]), /num\.jsonl:1: "text" is not a string/);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("out")),
      [],
      "no output or temporary files are left behind",
    );
  });
});

Deno.test("preprocess: a failed run leaves the previous output intact", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/good.txt`, "good");
    await preprocess({ inputs: [`${dir}/good.txt`], outputPrefix: `${dir}/out`, tokenizer: byte });
    const before = await Deno.readFile(`${dir}/out.bin`);
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"text": "fine"}\nnot json\n');
    await assert.rejects(
      preprocess({ inputs: [`${dir}/bad.jsonl`], outputPrefix: `${dir}/out`, tokenizer: byte }),
      /bad\.jsonl:2/,
    );
    assert.deepEqual(await Deno.readFile(`${dir}/out.bin`), before);
    using ds = await IndexedDataset.open(`${dir}/out`);
    assert.deepEqual([...ds.read(0)], [103, 111, 111, 100]);
  });
});

Deno.test("deno task preprocess: writes the dataset and reports; bad flags exit 2", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.jsonl`, '{"text": "Hello world"}\n');
    const tool = decodeURIComponent(new URL("../tools/preprocess.ts", import.meta.url).pathname);
    const run = (...args: string[]) =>
      new Deno.Command(Deno.execPath(), { args: ["run", "-A", tool, ...args] }).output();
    const ok = await run(
      "--input",
      `${dir}/a.jsonl`,
      "--output-prefix",
      `${dir}/out`,
      "--tokenizer",
      "gpt2",
      "--append-eod",
    );
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    assert.match(new TextDecoder().decode(ok.stderr), /wrote .*out\.bin\/\.idx.* 3 tokens/);
    using ds = await IndexedDataset.open(`${dir}/out`);
    assert.deepEqual([...ds.read(0)], [15496, 995, 50256]);
    const missing = await run("--input", `${dir}/a.jsonl`);
    assert.equal(missing.code, 2);
    assert.match(new TextDecoder().decode(missing.stderr), /--output-prefix are required/);
    const bad = await run("--input", `${dir}/nope.txt`, "--output-prefix", `${dir}/o2`);
    // a missing input is bad input: one error line, exit 2
    assert.equal(bad.code, 2);
    assert.match(new TextDecoder().decode(bad.stderr), /^error: .*nope\.txt: cannot read input/);
  });
});
