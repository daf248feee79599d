/**
 * Fuzzed readers of token data and tokenizers: Megatron's indexed dataset, safetensors,
 * GPT-2's vocab.json + merges.txt, Hugging Face tokenizer.json, and BERT's vocab.txt.
 *
 * defines: indexed, safetensors, tokenizer, hfTokenizer, wordpiece
 *
 * @module
 */

import { join } from "node:path";
import { encodeIndex, IndexedDataset, type TokenDType } from "../../lib/data/indexed_dataset.ts";
import { loadHfTokenizer } from "../../lib/data/hf_tokenizer.ts";
import { gpt2ByteToUnicode, loadTokenizer } from "../../lib/data/tokenizer.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  type SafetensorsDType,
  tensorEntry,
  typedView,
} from "../../lib/io/safetensors.ts";
import type { FileSet } from "./files.ts";
import { mutatedSeed, type Reader, utf8 } from "./reader.ts";

// ---------------------------------------------------------------------------------------
// Megatron indexed dataset: PREFIX.idx + PREFIX.bin

const TOKEN_DTYPES: TokenDType[] = ["uint16", "int32", "uint8", "int64", "float32", "int16"];
const TOKEN_ARRAYS = {
  uint16: Uint16Array,
  int32: Int32Array,
  uint8: Uint8Array,
  int64: BigInt64Array,
  float32: Float32Array,
  int16: Int16Array,
} as const;

export const indexed: Reader = {
  name: "indexed",
  about: "lib/data/indexed_dataset.ts IndexedDataset.open + read of every sequence",
  seeds(): Promise<FileSet[]> {
    return Promise.resolve(TOKEN_DTYPES.map((dtype, k) => {
      const S = k === 5 ? 0 : 1 + ((k * 7) % 11);
      const lengths = Array.from({ length: S }, (_, i) => (i * 5 + k) % 9);
      const docs = [0];
      for (let i = 1; i <= S; i++) if (i === S || i % 3 === 0) docs.push(i);
      const n = lengths.reduce((a, b) => a + b, 0);
      const Arr = TOKEN_ARRAYS[dtype as keyof typeof TOKEN_ARRAYS];
      const values = Array.from({ length: n }, (_, i) => (i * 37 + k) % 100);
      const bin = dtype === "int64"
        ? new BigInt64Array(values.map(BigInt))
        : new (Arr as Uint16ArrayConstructor)(values);
      return new Map([
        ["d.idx", encodeIndex(dtype, lengths, docs)],
        ["d.bin", new Uint8Array(bin.buffer)],
      ]);
    }));
  },
  async input(rng, seeds, root) {
    const m = await mutatedSeed(rng, seeds, root, (n) => (n.endsWith(".idx") ? 4 : 1));
    return {
      what: m.what,
      mustName: [[root]],
      async run() {
        using ds = await IndexedDataset.open(join(root, "d"));
        for (let i = 0; i < ds.sequenceCount; i++) {
          ds.read(i);
          const len = ds.sequenceLengths[i];
          if (len > 1) ds.read(i, 1, len - 1);
        }
        return [];
      },
    };
  },
};

// ---------------------------------------------------------------------------------------
// safetensors

const ST_SHAPES: [SafetensorsDType, number[]][] = [
  ["F32", [2, 3]],
  ["F16", [4]],
  ["BF16", [1, 2, 2]],
  ["I64", [3]],
  ["U8", []],
  ["F64", [0, 3]],
  ["I32", [2, 2]],
  ["BOOL", [5]],
];

export const safetensors: Reader = {
  name: "safetensors",
  about: "lib/io/safetensors.ts readSafetensors, decodeSafetensors, typedView",
  seeds(): Promise<FileSet[]> {
    const out: FileSet[] = [];
    for (let k = 0; k < 6; k++) {
      const tensors = new Map();
      for (let j = 0; j <= k % 4 + (k > 3 ? 3 : 0); j++) {
        const [dtype, shape] = ST_SHAPES[(j + k) % ST_SHAPES.length];
        const bytes = shape.reduce((a, b) => a * b, 1) *
          { F32: 4, F16: 2, BF16: 2, I64: 8, U8: 1, F64: 8, I32: 4, BOOL: 1 }[dtype as "F32"];
        const data = Uint8Array.from({ length: bytes }, (_, i) => (i * 13 + j) % 64);
        tensors.set(`t${j}.weight`, tensorEntry(dtype, shape, data));
      }
      const metadata: Record<string, string> = k % 2 ? { format: "pt" } : {};
      out.push(new Map([["m.safetensors", encodeSafetensors({ tensors, metadata })]]));
    }
    return Promise.resolve(out);
  },
  async input(rng, seeds, root) {
    const m = await mutatedSeed(rng, seeds, root);
    const path = join(root, "m.safetensors");
    return {
      what: m.what,
      mustName: [[root]],
      async run() {
        const file = await readSafetensors(path);
        for (const t of file.tensors.values()) typedView(t);
        const names = [...file.tensors.keys()];
        if (names.length) await readSafetensors(path, [names[names.length - 1]]);
        decodeSafetensors(await Deno.readFile(path), path);
        return [];
      },
    };
  },
};

// ---------------------------------------------------------------------------------------
// GPT-2 tokenizer files: vocab.json + merges.txt

const MERGES = [
  ["Ġ", "t"],
  ["h", "e"],
  ["Ġt", "he"],
  ["i", "n"],
  ["a", "t"],
  ["Ġ", "c"],
  ["Ġc", "at"],
  ["Ġ", "s"],
  ["Ġs", "at"],
  ["o", "n"],
];
const TOKENIZER_TEXT = "the cat sat on the mat; Ünïcödé 123 \u{1F600}\n\tend";

function tokenizerSeed(variant: number): FileSet {
  const vocab: Record<string, number> = {};
  gpt2ByteToUnicode().forEach((ch, b) => (vocab[ch] = b));
  let next = 256;
  for (const [a, b] of MERGES) vocab[a + b] ??= next++;
  if (variant !== 1) vocab["<|endoftext|>"] = next;
  const header = variant === 2 ? "" : "#version: 0.2\n";
  return new Map([
    ["vocab.json", utf8.encode(JSON.stringify(vocab))],
    ["merges.txt", utf8.encode(header + MERGES.map((p) => p.join(" ")).join("\n") + "\n")],
  ]);
}

export const tokenizer: Reader = {
  name: "tokenizer",
  about: "lib/data/tokenizer.ts loadTokenizer('gpt2', {vocab, merges}), encode and decode",
  seeds() {
    return Promise.resolve([0, 1, 2].map(tokenizerSeed));
  },
  async input(rng, seeds, root) {
    const m = await mutatedSeed(rng, seeds, root);
    return {
      what: m.what,
      mustName: [[root]],
      async run() {
        const files = { vocab: join(root, "vocab.json"), merges: join(root, "merges.txt") };
        const tok = await loadTokenizer("gpt2", files);
        const back = tok.decode(tok.encode(TOKENIZER_TEXT));
        tok.decode([tok.eotId]);
        return back === TOKENIZER_TEXT ? [] : ["encode/decode does not round-trip"];
      },
    };
  },
};

// ---------------------------------------------------------------------------------------
// Hugging Face tokenizer.json (+ tokenizer_config.json)

const special = (id: number, content: string) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
});

/** GPT-2's layout: byte-level pre-tokenizer and decoder, the merges of {@link MERGES}. */
function byteLevelTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  gpt2ByteToUnicode().forEach((ch, b) => (vocab[ch] = b));
  let next = 256;
  for (const [a, b] of MERGES) vocab[a + b] ??= next++;
  vocab["<|endoftext|>"] = next;
  return {
    version: "1.0",
    added_tokens: [special(next, "<|endoftext|>")],
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: MERGES.map((p) => p.join(" ")),
    },
  };
}

/** SentencePiece's layout (Llama 2): "▁" for spaces, byte fallback, <s> and </s>. */
function sentencePieceTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) {
    vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  }
  let next = 259;
  for (const ch of "▁thecasonm;123") vocab[ch] ??= next++;
  const merges = [["▁", "t"], ["h", "e"], ["▁t", "he"], ["a", "t"], ["▁", "c"], ["▁c", "at"]];
  for (const [a, b] of merges) vocab[a + b] ??= next++;
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
    post_processor: null,
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
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: merges.map((p) => p.join(" ")),
    },
  };
}

export const hfTokenizer: Reader = {
  name: "hf-tokenizer",
  about: "lib/data/hf_tokenizer.ts loadHfTokenizer(dir): tokenizer.json + tokenizer_config.json",
  seeds() {
    const json = (v: unknown) => utf8.encode(JSON.stringify(v));
    return Promise.resolve([
      new Map([["tokenizer.json", json(byteLevelTokenizerJson())]]),
      new Map([
        ["tokenizer.json", json(sentencePieceTokenizerJson())],
        ["tokenizer_config.json", json({ bos_token: "<s>", eos_token: "</s>" })],
      ]),
    ]);
  },
  async input(rng, seeds, root) {
    const m = await mutatedSeed(rng, seeds, root, (n) => (n === "tokenizer.json" ? 4 : 1));
    return {
      what: m.what,
      mustName: [[root]],
      async run() {
        const tok = await loadHfTokenizer(root);
        tok.decode(tok.encode(TOKENIZER_TEXT));
        tok.decode([tok.eotId]);
        return [];
      },
    };
  },
};

// ---------------------------------------------------------------------------------------
// BERT WordPiece vocab.txt, opened as the CLI does: `--tokenizer PATH/vocab.txt`, or
// `--tokenizer-type BertWordPieceLowerCase|BertWordPieceCase --vocab-file PATH`

const WORDPIECE_WORDS = [
  "hello",
  "world",
  "un",
  "##aff",
  "##able",
  "play",
  "##ing",
  "##s",
  "cafe",
  "naive",
  ",",
  ".",
  "!",
  "'",
  "—",
  "世",
  "界",
  "𠀀",
];
/** bert-base-cased's kind of entries: capitals and accents kept. */
const WORDPIECE_CASED = ["Hello", "World", "café", "Café", "naïve", "##ï", "##é"];
const WORDPIECE_TEXT =
  "[CLS] Hello, World! Unaffable playings — Café naïve 世界𠀀 xyzzy's [SEP] [MASK]";

function wordpieceSeed(variant: number): FileSet {
  const specials = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
  const lines = variant === 2
    ? [...WORDPIECE_WORDS, ...specials.reverse()] // specials need not come first
    : [...specials, ...WORDPIECE_WORDS, ...(variant === 1 ? WORDPIECE_CASED : [])];
  const text = variant === 2 ? lines.join("\r\n") : lines.join("\n") + "\n";
  return new Map([["vocab.txt", utf8.encode(text)]]);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const WORDPIECE_OPENERS = ["path", "BertWordPieceLowerCase", "BertWordPieceCase"] as const;

export const wordpiece: Reader = {
  name: "wordpiece",
  about: "lib/data/tokenizer.ts loadTokenizer of a vocab.txt (lib/data/wordpiece.ts), " +
    "encode and decode",
  seeds() {
    return Promise.resolve([0, 1, 2].map(wordpieceSeed));
  },
  async input(rng, seeds, root) {
    const m = await mutatedSeed(rng, seeds, root);
    const opener = rng.pick(WORDPIECE_OPENERS);
    return {
      what: `${m.what}; ${opener}`,
      mustName: [[root]],
      async run() {
        const path = join(root, "vocab.txt");
        const tok = opener === "path"
          ? await loadTokenizer(path)
          : await loadTokenizer(opener, { vocab: path });
        const ids = tok.encode(WORDPIECE_TEXT);
        const out = ids.filter((id) => !(Number.isInteger(id) && id >= 0 && id < tok.vocabSize))
          .map((id) => `encode gave id ${id} outside [0, ${tok.vocabSize})`);
        tok.decode(ids);
        tok.decode([tok.eotId]);
        // transformers refuses such a file; read leniently, its tokens would quietly differ
        if (!isUtf8(await Deno.readFile(path))) out.push("a vocab.txt that is not UTF-8");
        return out;
      },
    };
  },
};
