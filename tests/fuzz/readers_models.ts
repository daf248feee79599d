/**
 * Fuzzed readers of weights: our checkpoints (read alone, resumed into a model and
 * optimizer, or loaded for generation) and Hugging Face GPT-2, Llama and BERT directories.
 *
 * defines: checkpoint, resume, hf, hfLlama, hfBert
 *
 * @module
 */

import { join } from "node:path";
import { noGrad } from "../../lib/autograd.ts";
import { readCheckpoint, writeCheckpoint } from "../../lib/io/checkpoint.ts";
import { loadHfGpt2 } from "../../lib/io/hf_gpt2.ts";
import { encodeSafetensors, tensorEntry } from "../../lib/io/safetensors.ts";
import { fromCheckpoint } from "../../lib/infer/sources.ts";
import { paddingLayout } from "../../lib/nn/attention.ts";
import { BERT_ARCHITECTURE, GPT, type GPTConfig, LLAMA_ARCHITECTURE } from "../../lib/nn/gpt.ts";
import { loadHf, saveHf } from "../../lib/io/hf.ts";
import { AdamW } from "../../lib/optim/adamw.ts";
import { DynamicGradScaler } from "../../lib/optim/grad_scaler.ts";
import { Tensor, tidy } from "../../lib/tensor.ts";
import { loadCheckpoint, saveCheckpoint } from "../../lib/train/checkpoint.ts";
import type { FileSet } from "./files.ts";
import type { Rng } from "./rng.ts";
import { mutatedSeed, type Reader, readTree, utf8 } from "./reader.ts";

// ---------------------------------------------------------------------------------------
// checkpoints: DIR/latest + DIR/iter_NNNNNNN/{state.json, model.safetensors, optimizer...}

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

export const checkpoint: Reader = {
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
        // as the trainer does: a falsy lossScaler is no scaler state
        if (ck.state.lossScaler) {
          new DynamicGradScaler().loadStateDict(ck.state.lossScaler);
        }
        return checkpointValueProblems(s);
      },
    };
  },
};

const RESUME_MODEL = { vocabSize: 257, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8 };

export const resume: Reader = {
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
          if (state.lossScaler) {
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

export const hf: Reader = {
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

/**
 * A reader of Hugging Face directories that `saveHf` wrote from `seeds` (each a config
 * and the shard size, undefined for one file), loaded with `loadHf` and then run once.
 */
function hfDirectoryReader(
  name: string,
  about: string,
  seeds: readonly [GPTConfig, number | undefined][],
  runOnce: (model: GPT) => void,
): Reader {
  return {
    name,
    about,
    async seeds(work) {
      const out: FileSet[] = [];
      for (const [k, [config, maxShardBytes]] of seeds.entries()) {
        const dir = join(work, `${name}${k}`);
        using model = new GPT(config);
        await saveHf(model, dir, maxShardBytes ? { maxShardBytes } : {});
        out.push(await readTree(dir));
      }
      return out;
    },
    async input(rng, seedFiles, root) {
      const m = await mutatedSeed(rng, seedFiles, root, (n) => (n.endsWith(".json") ? 4 : 1));
      return {
        what: m.what,
        mustName: [[root]],
        async run() {
          using model = await loadHf(root);
          runOnce(model);
          return [];
        },
      };
    },
  };
}

export const hfLlama: Reader = hfDirectoryReader(
  "hf-llama",
  "lib/io/hf.ts loadHf of a Llama directory (lib/io/hf_llama.ts), then one forward pass",
  [
    [{ ...LLAMA_SEED_CONFIG, tieEmbeddings: false }, undefined],
    [{ ...LLAMA_SEED_CONFIG, tieEmbeddings: true }, 4096],
  ],
  forwardOnce,
);

// ---------------------------------------------------------------------------------------
// Hugging Face BERT directory, as saveHf writes it

/** A small BERT encoder; the seeds vary its heads. */
const BERT_SEED_CONFIG: GPTConfig = {
  ...BERT_ARCHITECTURE,
  vocabSize: 30,
  blockSize: 12,
  nLayer: 2,
  nHead: 2,
  nEmbd: 8,
  ffnHidden: 16,
};

/** The seeds' heads: BertForPreTraining (also sharded), BertModel, a 3-class classifier. */
const BERT_SEED_HEADS: [Partial<GPTConfig>, number | undefined][] = [
  [{}, undefined],
  [{}, 4096],
  [{ pooler: false, outputTransform: false, binaryHead: false }, undefined],
  [{ outputTransform: false, binaryHead: false, numLabels: 3 }, undefined],
];

/**
 * One encoder pass over two padded rows with both token types, then every head the
 * model has: what fine-tuning and evaluation call after loading.
 */
function encodeOnce(model: GPT): void {
  const { blockSize, vocabSize, numTokenTypes } = model.config;
  const T = Math.min(6, blockSize);
  const ids = Int32Array.from({ length: 2 * T }, (_, i) => (i * 7 + 1) % vocabSize);
  // segment A then segment B, as a sentence pair; all A when the model has one type
  const types = Int32Array.from(
    { length: 2 * T },
    (_, i) => +(2 * (i % T) >= T && numTokenTypes > 1),
  );
  noGrad(() =>
    tidy(() => {
      const layout = paddingLayout([T, Math.ceil(T / 2)], T);
      const tokens = Tensor.fromArray(ids, [2, T]);
      const tokenTypes = Tensor.fromArray(types, [2, T]);
      const hidden = model.hiddenStates(tokens, { tokenTypes, layout });
      model.lmLogits(hidden).toArray();
      if (model.pooler) {
        const pooled = model.pooled(hidden);
        if (model.binary) model.binaryLogits(pooled).toArray();
        if (model.classifier) model.classifierLogits(pooled).toArray();
      }
    })
  );
}

export const hfBert: Reader = hfDirectoryReader(
  "hf-bert",
  "lib/io/hf.ts loadHf of a BERT directory (lib/io/hf_bert.ts), then one encoder pass",
  BERT_SEED_HEADS.map(([heads, shard]) => [{ ...BERT_SEED_CONFIG, ...heads }, shard]),
  encodeOnce,
);
