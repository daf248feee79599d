/**
 * The readers under fuzz: for each, valid inputs built in code (the seeds), how one
 * input is made from a seed by mutation, and what reading it means (the reader called
 * the way the framework calls it, plus what its caller does next with the result).
 *
 * defines: PreparedInput, Reader, READERS, SELF_TEST_READERS, readerNamed
 *
 * Seeds are built once per process; input i of a run is `input(new Rng(inputSeed(seed,
 * name, i)), seeds, root)`, so it depends on nothing but the run's seed and i. About
 * one input in fifty is left valid, and must be accepted.
 *
 * @module
 */

import { join } from "node:path";
import { noGrad } from "../../lib/autograd.ts";
import { encodeIndex, IndexedDataset, type TokenDType } from "../../lib/data/indexed_dataset.ts";
import { loadHfTokenizer } from "../../lib/data/hf_tokenizer.ts";
import { gpt2ByteToUnicode, loadTokenizer } from "../../lib/data/tokenizer.ts";
import { readCheckpoint, writeCheckpoint } from "../../lib/io/checkpoint.ts";
import { loadHfGpt2 } from "../../lib/io/hf_gpt2.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  type SafetensorsDType,
  tensorEntry,
  typedView,
} from "../../lib/io/safetensors.ts";
import { fromCheckpoint } from "../../lib/infer/sources.ts";
import { GPT, LLAMA_ARCHITECTURE } from "../../lib/nn/gpt.ts";
import { loadHf, saveHf } from "../../lib/io/hf.ts";
import { AdamW } from "../../lib/optim/adamw.ts";
import { DynamicGradScaler } from "../../lib/optim/grad_scaler.ts";
import { Tensor } from "../../lib/tensor.ts";
import { loadCheckpoint, saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { CONFIG_KEYS, loadConfig } from "../../lib/train/config.ts";
import { type FileSet, mutateFileSet, writeFileSet } from "./files.ts";
import { weirdScalarText } from "./mutate.ts";
import type { Rng } from "./rng.ts";

/** One input, written and ready to read. */
export interface PreparedInput {
  /** The mutations applied ("" for a valid input). */
  what: string;
  /** Strings a clean error must contain: one of each group. */
  mustName: string[][];
  /** Reads the input; resolves with values the reader let through that its callers misuse. */
  run(): Promise<string[]>;
}

/** A reader under fuzz. */
export interface Reader {
  /** Its name in tables and on the command line. */
  readonly name: string;
  /** What it reads. */
  readonly about: string;
  /** Builds the valid inputs (once per process) under `work`. */
  seeds(work: string): Promise<FileSet[]>;
  /** Writes one input under `root` and says how to read it. */
  input(rng: Rng, seeds: FileSet[], root: string): Promise<PreparedInput>;
}

const utf8 = new TextEncoder();

/** A seed picked and mutated (left valid one time in fifty), written under root. */
async function mutatedSeed(
  rng: Rng,
  seeds: FileSet[],
  root: string,
  weight?: (name: string) => number,
): Promise<{ what: string; files: FileSet; touched: Set<string> }> {
  const seed = rng.pick(seeds);
  const m = rng.chance(0.02)
    ? { files: seed, what: [], touched: new Set<string>() }
    : mutateFileSet(rng, seed, weight);
  await writeFileSet(root, m.files);
  return { what: m.what.join("; "), files: m.files, touched: m.touched };
}

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

const indexed: Reader = {
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

const safetensors: Reader = {
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
// checkpoints: DIR/latest + DIR/iter_NNNNNNN/{state.json, model.safetensors, optimizer...}

/** Files under `dir`, by path relative to it. */
async function readTree(dir: string, prefix = ""): Promise<FileSet> {
  const out: FileSet = new Map();
  for await (const e of Deno.readDir(join(dir, prefix))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [k, v] of await readTree(dir, rel)) out.set(k, v); }
    else out.set(rel, await Deno.readFile(join(dir, rel)));
  }
  return out;
}

/** Values the trainer takes from state.json without a check of their own. */
function checkpointValueProblems(state: Record<string, unknown>): string[] {
  const out: string[] = [];
  const count = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  if (state.skippedSteps !== undefined && !count(state.skippedSteps)) {
    out.push(`skippedSteps ${JSON.stringify(state.skippedSteps)?.slice(0, 40)} accepted`);
  }
  const ls = state.lossScaler as Record<string, unknown> | undefined;
  if (ls !== undefined) {
    if (ls === null || typeof ls !== "object") {
      out.push("lossScaler that is not an object accepted");
    } else {
      for (const k of ["growthTracker", "hysteresisTracker"]) {
        if (ls[k] !== undefined && !count(ls[k])) {
          out.push(`lossScaler.${k} ${JSON.stringify(ls[k])?.slice(0, 40)} accepted`);
        }
      }
    }
  }
  return out;
}

const CKPT_STATE = "iter_0000003/state.json";

/** A save directory's files, its clock (savedAt) fixed so that every run makes the same seed. */
async function checkpointFiles(dir: string): Promise<FileSet> {
  const files = await readTree(dir);
  const state = JSON.parse(new TextDecoder().decode(files.get(CKPT_STATE) as Uint8Array));
  state.savedAt = "2025-01-01T00:00:00.000Z";
  files.set(CKPT_STATE, utf8.encode(JSON.stringify(state, null, 2) + "\n"));
  return files;
}

/**
 * A mutated save directory, and the path to read (the directory or its checkpoint). A
 * changed tensor file fails its checksum first; half the time the checksums go too, so
 * that the safetensors reader behind them is reached.
 */
async function mutatedCheckpoint(
  rng: Rng,
  seeds: FileSet[],
  root: string,
): Promise<{ what: string; path: string }> {
  const weight = (n: string) => (n.endsWith("state.json") ? 5 : n.endsWith("latest") ? 1 : 2);
  const m = await mutatedSeed(rng, seeds, root, weight);
  let what = m.what;
  const state = m.files.get(CKPT_STATE);
  if ([...m.touched].some((n) => n.endsWith(".safetensors")) && state instanceof Uint8Array) {
    try {
      const s = JSON.parse(new TextDecoder().decode(state));
      if (rng.chance(0.5) && s && typeof s === "object") {
        delete s.checksums;
        await Deno.writeFile(join(root, CKPT_STATE), utf8.encode(JSON.stringify(s)));
        what += "; checksums dropped";
      }
    } catch { /* state.json was mutated as well */ }
  }
  return { what, path: rng.chance(0.5) ? root : join(root, "iter_0000003") };
}

const checkpoint: Reader = {
  name: "checkpoint",
  about: "lib/io/checkpoint.ts readCheckpoint (+ optimizer), then the loss scaler's loadStateDict",
  async seeds(work) {
    const out: FileSet[] = [];
    for (let k = 0; k < 3; k++) {
      const dir = join(work, `ckpt${k}`);
      const t = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => s + i / 8);
      const weights = new Map([
        ["emb.wte", { shape: [4, 2], data: t(8, k) }],
        ["lnf.bias", { shape: [2], data: t(2, 1) }],
      ]);
      const optimizer = new Map([
        ["m.emb.wte", { shape: [4, 2], data: t(8, 0) }],
        ["v.emb.wte", { shape: [4, 2], data: t(8, 0) }],
        ["m.lnf.bias", { shape: [2], data: t(2, 0) }],
        ["v.lnf.bias", { shape: [2], data: t(2, 0) }],
      ]);
      await writeCheckpoint(dir, {
        weights,
        optimizer,
        state: {
          iteration: 3,
          optimizerStepCount: 3,
          rng: { seed: 7, offset: 40 },
          consumedSamples: 12,
          config: { model: { nLayer: 1, nHead: 1 }, data: { tokenizer: "byte" } },
          ...(k === 2
            ? {
              lossScaler: { scale: 65536, growthTracker: 3, hysteresisTracker: 2 },
              skippedSteps: 1,
              dataState: { position: 5 },
            }
            : {}),
        },
      });
      out.push(await checkpointFiles(dir));
    }
    return out;
  },
  async input(rng, seeds, root) {
    const { what, path } = await mutatedCheckpoint(rng, seeds, root);
    return {
      what,
      mustName: [[root]],
      async run() {
        const ck = await readCheckpoint(path, { optimizer: true, note: () => {} });
        const s = ck.state as unknown as Record<string, unknown>;
        if (ck.state.lossScaler !== undefined) {
          new DynamicGradScaler().loadStateDict(ck.state.lossScaler);
        }
        return checkpointValueProblems(s);
      },
    };
  },
};

const RESUME_MODEL = { vocabSize: 257, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8 };

const resume: Reader = {
  name: "resume",
  about: "lib/train/checkpoint.ts loadCheckpoint into a GPT and AdamW (--load), or " +
    "lib/infer/sources.ts fromCheckpoint (generate)",
  async seeds(work) {
    const out: FileSet[] = [];
    for (const fp16 of [false, true]) {
      const dir = join(work, `resume-${fp16}`);
      using model = new GPT(RESUME_MODEL);
      const optimizer = new AdamW(model.params);
      try {
        await saveCheckpoint(dir, {
          model,
          optimizer,
          iteration: 3,
          consumedSamples: 12,
          config: { model: { nLayer: 1, nHead: 2 }, data: { tokenizer: "byte" } },
          ...(fp16 ? { lossScaler: { scale: 1024, growthTracker: 1 }, skippedSteps: 2 } : {}),
        });
      } finally {
        optimizer.dispose();
      }
      out.push(await checkpointFiles(dir));
    }
    return out;
  },
  async input(rng, seeds, root) {
    const { what, path } = await mutatedCheckpoint(rng, seeds, root);
    const generate = rng.chance(0.5);
    return {
      what: `${what}; ${generate ? "fromCheckpoint" : "loadCheckpoint"}`,
      mustName: [[root]],
      async run() {
        if (generate) {
          const { model } = await fromCheckpoint(path);
          model.dispose();
          return [];
        }
        using model = new GPT(RESUME_MODEL);
        const optimizer = new AdamW(model.params);
        try {
          const state = await loadCheckpoint(path, { model, optimizer });
          if (state.lossScaler !== undefined) {
            new DynamicGradScaler().loadStateDict(state.lossScaler);
          }
          return checkpointValueProblems(state as unknown as Record<string, unknown>);
        } finally {
          optimizer.dispose();
        }
      },
    };
  },
};

// ---------------------------------------------------------------------------------------
// Hugging Face GPT-2 directory: config.json + model.safetensors (or shards + index)

const HF_CONFIG = {
  architectures: ["GPT2LMHeadModel"],
  model_type: "gpt2",
  activation_function: "gelu_new",
  n_layer: 2,
  n_head: 2,
  n_embd: 8,
  vocab_size: 23,
  n_positions: 12,
  n_ctx: 12,
  n_inner: null,
  layer_norm_epsilon: 1e-5,
  tie_word_embeddings: true,
};

/** GPT-2's tensors as transformers stores them (Conv1D weights (in, out)). */
function hfShapes(): [string, number[]][] {
  const C = HF_CONFIG.n_embd, V = HF_CONFIG.vocab_size, P = HF_CONFIG.n_positions;
  const out: [string, number[]][] = [["wte.weight", [V, C]], ["wpe.weight", [P, C]]];
  for (let i = 0; i < HF_CONFIG.n_layer; i++) {
    const h = `h.${i}`;
    out.push(
      [`${h}.ln_1.weight`, [C]],
      [`${h}.ln_1.bias`, [C]],
      [`${h}.attn.c_attn.weight`, [C, 3 * C]],
      [`${h}.attn.c_attn.bias`, [3 * C]],
      [`${h}.attn.c_proj.weight`, [C, C]],
      [`${h}.attn.c_proj.bias`, [C]],
      [`${h}.ln_2.weight`, [C]],
      [`${h}.ln_2.bias`, [C]],
      [`${h}.mlp.c_fc.weight`, [C, 4 * C]],
      [`${h}.mlp.c_fc.bias`, [4 * C]],
      [`${h}.mlp.c_proj.weight`, [4 * C, C]],
      [`${h}.mlp.c_proj.bias`, [C]],
    );
  }
  out.push(["ln_f.weight", [C]], ["ln_f.bias", [C]]);
  return out;
}

function hfSeed(variant: number): FileSet {
  const shapes = hfShapes();
  const prefix = variant === 1 ? "transformer." : "";
  const entries = shapes.map(([name, shape], k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + k) * 0.3);
    const entry = variant === 2
      ? tensorEntry("F64", shape, Float64Array.from(values))
      : tensorEntry("F32", shape, values);
    return [prefix + name, entry] as const;
  });
  if (variant === 1) entries.push(["lm_head.weight", entries[0][1]]);
  const files: FileSet = new Map([["config.json", utf8.encode(JSON.stringify(HF_CONFIG))]]);
  if (variant !== 3) {
    files.set("model.safetensors", encodeSafetensors({ tensors: new Map(entries), metadata: {} }));
    return files;
  }
  const half = Math.ceil(entries.length / 2);
  const shards = [entries.slice(0, half), entries.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((part, s) => {
    const name = `model-0000${s + 1}-of-00002.safetensors`;
    for (const [n] of part) weightMap[n] = name;
    files.set(name, encodeSafetensors({ tensors: new Map(part), metadata: { format: "pt" } }));
  });
  files.set(
    "model.safetensors.index.json",
    utf8.encode(JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap })),
  );
  return files;
}

const hf: Reader = {
  name: "hf",
  about: "lib/io/hf_gpt2.ts loadHfGpt2 (config.json, weights, shards), then one forward pass",
  seeds() {
    return Promise.resolve([0, 1, 2, 3].map(hfSeed));
  },
  async input(rng, seeds, root) {
    const m = await mutatedSeed(rng, seeds, root, (n) => (n.endsWith(".json") ? 4 : 1));
    return {
      what: m.what,
      mustName: [[root]],
      async run() {
        using model = await loadHfGpt2(root);
        forwardOnce(model);
        return [];
      },
    };
  },
};

/** A small Llama-style model (RMSNorm, RoPE, SwiGLU, grouped-query attention). */
const LLAMA_SEED_CONFIG = {
  ...LLAMA_ARCHITECTURE,
  vocabSize: 40,
  blockSize: 16,
  nLayer: 2,
  nHead: 4,
  nKvHead: 2,
  nEmbd: 16,
  ffnHidden: 24,
};

/** One forward pass of a few tokens, so that a config read wrongly fails here too. */
function forwardOnce(model: GPT): void {
  const T = Math.min(4, model.config.blockSize);
  const ids = Int32Array.from({ length: T }, (_, i) => (i * 5) % model.config.vocabSize);
  noGrad(() => {
    using tokens = Tensor.fromArray(ids, [1, T]);
    using logits = model.forward(tokens);
    logits.toArray();
  });
}

const hfLlama: Reader = {
  name: "hf-llama",
  about: "lib/io/hf.ts loadHf of a Llama directory (lib/io/hf_llama.ts), then one forward pass",
  async seeds(work) {
    const out: FileSet[] = [];
    for (const [k, tied] of [false, true].entries()) {
      const dir = join(work, `llama${k}`);
      using model = new GPT({ ...LLAMA_SEED_CONFIG, tieEmbeddings: tied });
      await saveHf(model, dir, tied ? { maxShardBytes: 4096 } : {});
      out.push(await readTree(dir));
    }
    return out;
  },
  async input(rng, seeds, root) {
    const m = await mutatedSeed(rng, seeds, root, (n) => (n.endsWith(".json") ? 4 : 1));
    return {
      what: m.what,
      mustName: [[root]],
      async run() {
        using model = await loadHf(root);
        forwardOnce(model);
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

const tokenizer: Reader = {
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

const hfTokenizer: Reader = {
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
// YAML configuration files and command lines

/** A small valid run, as section -> key -> YAML scalar text. */
const CONFIG_SEED: Record<string, Record<string, string>> = {
  model: { nLayer: "2", nHead: "2", nEmbd: "8", seqLength: "16", dropout: "0.1" },
  training: {
    microBatchSize: "2",
    globalBatchSize: "4",
    trainIters: "10",
    lr: "0.001",
    minLr: "0.0001",
    lrWarmupIters: "2",
    lrDecayStyle: "cosine",
  },
  data: { split: '"98,1,1"', tokenizer: "byte" },
  checkpoints: { save: "null", saveInterval: "5" },
};

/** Every key and its flag. */
const ALL_KEYS: [section: string, key: string, flag: string][] = Object.entries(CONFIG_KEYS)
  .flatMap(([section, keys]) =>
    Object.entries(keys as Record<string, { flag: string }>).map(([k, d]) =>
      [section, k, d.flag] as [string, string, string]
    )
  );

/** What a command-line error may name: a flag or a key, in the spellings the reader accepts. */
const FIELD_NAMES = [...ALL_KEYS.flatMap(([, k, flag]) => [k, flag]), "--config"];

function yamlText(doc: Record<string, Record<string, string>>, flat: boolean): string {
  const lines: string[] = [];
  for (const [section, keys] of Object.entries(doc)) {
    if (!flat) lines.push(`${section}:`);
    for (const [k, v] of Object.entries(keys)) lines.push(`${flat ? "" : "  "}${k}: ${v}`);
  }
  return lines.join("\n") + "\n";
}

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/** A structural YAML mutation: a value, a key's place or spelling, aliases, nesting. */
function mutateYamlDoc(rng: Rng): { text: string; what: string } {
  const doc = structuredClone(CONFIG_SEED);
  const flat = rng.chance(0.3);
  const [section, key] = (() => {
    const [s, k] = rng.chance(0.5)
      ? (() => {
        const s = rng.pick(Object.keys(doc));
        return [s, rng.pick(Object.keys(doc[s]))];
      })()
      : rng.pick(ALL_KEYS);
    return [s, k] as const;
  })();
  doc[section] ??= {};
  const op = rng.int(8);
  let what: string;
  if (op < 4) {
    doc[section][key] = rng.chance(0.2) ? `[${weirdScalarText(rng)}]` : weirdScalarText(rng);
    what = `${section}.${key} = ${doc[section][key].slice(0, 20)}`;
  } else if (op === 4) {
    const other = rng.pick(Object.keys(CONFIG_KEYS));
    (doc[other] ??= {})[key] = doc[section][key] ?? "1";
    what = `${key} under ${other}`;
  } else if (op === 5) {
    doc[section][rng.chance(0.5) ? kebab(key) : `${key}x`] = doc[section][key] ?? "2";
    what = `${key} respelled`;
  } else if (op === 6) {
    const d = rng.pick([10, 1000, 50_000]);
    doc[section][key] = "[".repeat(d) + "]".repeat(d);
    what = `${key} nested ${d}`;
  } else {
    doc[section][key] = "&a [1, 1]";
    doc[section][`${key}2`] = "[*a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a]";
    what = `${key} aliases`;
  }
  return { text: yamlText(doc, flat), what };
}

const yaml: Reader = {
  name: "yaml",
  about: "lib/train/config.ts loadConfig({ file }): YAML, nested or flat, then validation",
  seeds() {
    return Promise.resolve(
      [false, true].map((flat) =>
        new Map([["config.yaml", utf8.encode(yamlText(CONFIG_SEED, flat))]])
      ),
    );
  },
  async input(rng, seeds, root) {
    const path = join(root, "config.yaml");
    let what: string;
    if (rng.chance(0.5)) {
      const m = mutateYamlDoc(rng);
      await writeFileSet(root, new Map([["config.yaml", utf8.encode(m.text)]]));
      what = m.what;
    } else {
      what = (await mutatedSeed(rng, seeds, root)).what;
    }
    return {
      what,
      mustName: [[root]],
      async run() {
        await loadConfig({ file: path });
        return [];
      },
    };
  },
};

/** The command line of the YAML seed, as `--flag value` words. */
function seedArgs(): string[] {
  const flagOf = new Map(ALL_KEYS.map(([, k, f]) => [k, f]));
  return Object.values(CONFIG_SEED).flatMap((keys) =>
    Object.entries(keys).flatMap(([k, v]) => [flagOf.get(k)!, v.replace(/^"|"$/g, "")])
  );
}

/** The option names of a command line as typed: `--lr=3` gives "lr". */
function typedNames(args: readonly string[]): string[] {
  return args.filter((a) => a.startsWith("--") && a.length > 2).map((a) => a.slice(2).split("=")[0])
    .filter((n) => n.length > 1);
}

/** One command-line mutation. */
function mutateArgs(rng: Rng, args: string[], root: string): string {
  const i = rng.int(args.length);
  const word = () => rng.pick(["--", "-", "-lr", "---lr", "--=1", "--lr=", "--no-bf16", "--no-lr"]);
  switch (rng.int(10)) {
    case 0:
    case 1: { // a real flag with an extreme or wrong-typed value
      const [, , flag] = rng.pick(ALL_KEYS);
      const v = weirdScalarText(rng);
      if (rng.chance(0.5)) args.push(`${flag}=${v}`);
      else args.push(flag, v);
      return `${flag} ${v.slice(0, 20)}`;
    }
    case 2:
      if (i + 1 < args.length) [args[i], args[i + 1]] = [args[i + 1], args[i]];
      return `words ${i} and ${i + 1} swapped`;
    case 3:
      args.splice(i, 1);
      return `word ${i} dropped`;
    case 4: { // a typo in a flag
      const [, , flag] = rng.pick(ALL_KEYS);
      const at = 2 + rng.int(flag.length - 2);
      args.push(flag.slice(0, at) + flag.slice(at + 1), "1");
      return `typo ${flag}`;
    }
    case 5: {
      const w = word();
      args.splice(i, 0, w);
      return `${w} inserted`;
    }
    case 6: { // --config: missing file, no file, a file that is not YAML
      const v = rng.pick([join(root, "missing.yaml"), root, "", "--lr"]);
      args.push("--config", v);
      return `--config ${v}`;
    }
    case 7: { // a key's camelCase or snake_case spelling
      const [, k] = rng.pick(ALL_KEYS);
      args.push(
        rng.chance(0.5) ? `--${k}` : `--${kebab(k).replace(/-/g, "_")}`,
        weirdScalarText(rng),
      );
      return `--${k} spelled`;
    }
    case 8:
      args.push(args[i]);
      return `word ${i} repeated`;
    default: {
      const [, , flag] = rng.pick(ALL_KEYS);
      args.push(flag);
      return `${flag} without a value`;
    }
  }
}

const cli: Reader = {
  name: "cli",
  about: "lib/train/config.ts loadConfig({ args }): parseArgsToOverrides, overrides, validation",
  seeds() {
    return Promise.resolve([]);
  },
  async input(rng, _seeds, root) {
    await Deno.mkdir(root, { recursive: true });
    const args = seedArgs();
    const what: string[] = [];
    if (!rng.chance(0.02)) {
      const steps = rng.chance(0.7) ? 1 : 2 + rng.int(2);
      for (let s = 0; s < steps; s++) what.push(mutateArgs(rng, args, root));
    }
    return {
      what: what.join("; "),
      // a typo is named as typed
      mustName: [["command line", root], [...FIELD_NAMES, ...typedNames(args), root]],
      async run() {
        await loadConfig({ args });
        return [];
      },
    };
  },
};

/** Every reader, in table order. */
export const READERS: readonly Reader[] = [
  indexed,
  safetensors,
  checkpoint,
  resume,
  hf,
  hfLlama,
  tokenizer,
  hfTokenizer,
  yaml,
  cli,
];

/**
 * Readers that misbehave on purpose, for the runner's own test: input 1 of
 * "selftest-crash" aborts its process (SIGABRT), input 2 of "selftest-hang" spins
 * forever; every other input is accepted.
 */
function spin(): never {
  for (;;) { /* until killed */ }
}

export const SELF_TEST_READERS: readonly Reader[] = (["crash", "hang"] as const).map((kind) => ({
  name: `selftest-${kind}`,
  about: `a reader that ${kind}es on purpose`,
  seeds: () => Promise.resolve([]),
  input: (_rng: Rng, _seeds: FileSet[], root: string) => {
    const i = Number(root.match(/in(\d+)$/)?.[1]);
    return Promise.resolve({
      what: `input ${i}`,
      mustName: [[root]],
      run() {
        // abort() in native code ends a process with SIGABRT; wait here until it lands
        if (kind === "crash" && i === 1) (Deno.kill(Deno.pid, "SIGABRT"), spin());
        if (kind === "hang" && i === 2) spin();
        return Promise.resolve([]);
      },
    });
  },
}));

/**
 * The reader of a name.
 *
 * @param name a reader's name
 * @returns the reader
 */
export function readerNamed(name: string): Reader {
  const r = [...READERS, ...SELF_TEST_READERS].find((x) => x.name === name);
  if (!r) throw new Error(`unknown reader "${name}": ${READERS.map((x) => x.name).join(", ")}`);
  return r;
}
