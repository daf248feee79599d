import assert from "assert";
import {
  BpeTokenizer,
  ByteTokenizer,
  EOT_TEXT,
  gpt2ByteToUnicode,
  loadTokenizer,
} from "../lib/data/tokenizer.ts";
import { encode as referenceEncode } from "gpt-tokenizer/encoding/r50k_base";

const gpt2 = await loadTokenizer("gpt2") as BpeTokenizer;

const SAMPLES = [
  "Hello world",
  "",
  " ",
  "   leading and trailing spaces   ",
  "tabs\tand\nnewlines\r\n\n\n  and runs      of spaces",
  "It's we'll they've I'm you'd she's don't",
  "Numbers 1234567890 and 3.14159, $100.",
  "Emoji 🙂👍🏽 👨‍👩‍👧‍👦 flags 🇺🇸",
  "CJK 漢字かなカナ 한국어 中文文本",
  "Ελληνικά, русский, العربية, עברית",
  "Symbols ©®™ ∑∫√ →←  «quotes» “curly” ‘single’",
  "<|endoftext|> is plain text here",
  "\u0000\u0001 control \u007f chars",
];

Deno.test("gpt2: vocabulary 50257 with end-of-text 50256", () => {
  assert.equal(gpt2.vocabSize, 50257);
  assert.equal(gpt2.eotId, 50256);
  assert.equal(gpt2.name, "gpt2");
});

Deno.test("gpt2: known ids", () => {
  assert.deepEqual(gpt2.encode("Hello world"), [15496, 995]);
  assert.deepEqual(gpt2.encode(" the"), [262]);
  assert.deepEqual(gpt2.encode("!"), [0]);
  assert.equal(gpt2.decode([50256]), EOT_TEXT);
});

Deno.test("gpt2: matches the gpt-tokenizer package on varied text", () => {
  for (const text of SAMPLES) {
    assert.deepEqual(
      gpt2.encode(text),
      referenceEncode(text, { disallowedSpecial: new Set() }),
      JSON.stringify(text),
    );
  }
});

Deno.test("gpt2: round-trips UTF-8 text, emoji, CJK and whitespace runs", () => {
  for (const text of SAMPLES) assert.equal(gpt2.decode(gpt2.encode(text)), text);
  let all = "";
  for (let cp = 0; cp < 0x3000; cp += 7) all += String.fromCodePoint(cp);
  assert.equal(gpt2.decode(gpt2.encode(all)), all);
});

Deno.test("gpt2: a one-word cache gives the same ids as the default cache", () => {
  const { vocabJson, mergesTxt } = gpt2.toVocabMerges();
  const small = BpeTokenizer.fromVocabMerges(vocabJson, mergesTxt, { cacheSize: 1 });
  const text = "the cat sat on the mat, the end. " + SAMPLES.join(" ");
  assert.deepEqual(small.encode(text), gpt2.encode(text));
  assert.deepEqual(small.encode(text), small.encode(text));
});

Deno.test("gpt2: encodes 1 MB of text in a few seconds", () => {
  const words = ["government", " the", " people", " of", " United", " States", ", ", "1897"];
  let text = "";
  for (let i = 0; text.length < 1_000_000; i++) text += words[(i * 7919) % words.length] + i;
  const t0 = performance.now();
  gpt2.encode(text);
  assert.ok(performance.now() - t0 < 10_000);
});

Deno.test("gpt2: vocab.json + merges.txt load to the same tokenizer", async () => {
  const { vocabJson, mergesTxt } = gpt2.toVocabMerges();
  assert.equal(mergesTxt.split("\n")[1], "Ġ t");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/vocab.json`, vocabJson);
    await Deno.writeTextFile(`${dir}/merges.txt`, mergesTxt);
    const fromFiles = await loadTokenizer("gpt2", {
      vocab: `${dir}/vocab.json`,
      merges: `${dir}/merges.txt`,
    });
    assert.equal(fromFiles.vocabSize, 50257);
    for (const text of SAMPLES) assert.deepEqual(fromFiles.encode(text), gpt2.encode(text));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fromVocabMerges: a toy vocabulary applies merges in priority order", () => {
  const vocab: Record<string, number> = {};
  gpt2ByteToUnicode().forEach((ch, b) => vocab[ch] = b);
  vocab["ab"] = 256;
  vocab["bc"] = 257;
  vocab["abc"] = 258;
  const merges = "#version: 0.2\nb c\na b\nab c\n";
  const tok = BpeTokenizer.fromVocabMerges(JSON.stringify(vocab), merges, { name: "toy" });
  // "b c" outranks "a b", so "abc" becomes a + bc and "ab c" never applies.
  assert.deepEqual(tok.encode("abc"), [97, 257]);
  assert.deepEqual(tok.encode("ab"), [256]);
  assert.equal(tok.eotId, 259);
});

Deno.test("fromVocabMerges: bad files are named with the fault", () => {
  assert.throws(() => BpeTokenizer.fromVocabMerges("{not json", ""), /vocab\.json: not valid JSON/);
  assert.throws(() => BpeTokenizer.fromVocabMerges("[1,2]", ""), /vocab\.json: expected an object/);
  const vocab: Record<string, number> = {};
  gpt2ByteToUnicode().forEach((ch, b) => vocab[ch] = b);
  assert.throws(
    () => BpeTokenizer.fromVocabMerges(JSON.stringify(vocab), "#version: 0.2\nx yz\n"),
    /merges\.txt line 2: x yz names a token missing from vocab\.json/,
  );
  assert.throws(
    () => BpeTokenizer.fromVocabMerges(JSON.stringify(vocab), "a b c\n"),
    /merges\.txt line 1: expected "left right"/,
  );
  assert.throws(
    () => BpeTokenizer.fromVocabMerges(JSON.stringify({ ...vocab, "zz": 3 }), ""),
    /vocab\.json: token "zz" has a bad or repeated id 3/,
  );
});

Deno.test("loadTokenizer: missing files and unknown names are errors that say so", async () => {
  await assert.rejects(
    loadTokenizer("gpt2", { vocab: "/nonexistent/vocab.json", merges: "/nonexistent/m.txt" }),
    /cannot read tokenizer file \/nonexistent\//,
  );
  // a byte that is not UTF-8 (Latin-1 é) is refused, naming the file and line
  const dir = await Deno.makeTempDir({ prefix: "denotron_tok_" });
  try {
    await Deno.writeFile(
      `${dir}/vocab.json`,
      Uint8Array.of(0x7b, 0x0a, 0x22, 0xe9, 0x22, 0x3a, 0x30, 0x7d),
    );
    await Deno.writeTextFile(`${dir}/merges.txt`, "#version: 0.2\n");
    await assert.rejects(
      loadTokenizer("gpt2", { vocab: `${dir}/vocab.json`, merges: `${dir}/merges.txt` }),
      /vocab\.json: line 2 is not valid UTF-8; a tokenizer file is UTF-8 text$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await assert.rejects(loadTokenizer("gpt3"), /unknown tokenizer "gpt3"/);
});

Deno.test("ByteTokenizer: UTF-8 bytes, end-of-text 256, round trips", () => {
  const tok = new ByteTokenizer();
  assert.equal(tok.vocabSize, 257);
  assert.equal(tok.eotId, 256);
  assert.deepEqual(tok.encode("hé"), [104, 195, 169]);
  for (const text of SAMPLES) assert.equal(tok.decode(tok.encode(text)), text);
  assert.equal(tok.decode([104, 105, 256, 33]), `hi${EOT_TEXT}!`);
  assert.throws(() => tok.decode([300]), /id 300 is outside \[0, 257\)/);
});

Deno.test("decode: an id outside the vocabulary is a RangeError naming it", () => {
  assert.throws(() => gpt2.decode([50257]), /gpt2\.decode: id 50257 is outside \[0, 50257\)/);
});
