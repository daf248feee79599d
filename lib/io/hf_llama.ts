/**
 * defines: llamaConfigFromHf, hfConfigFromLlama, llamaStateFromHf, loadHfLlama,
 * saveHfLlama — Hugging Face Llama checkpoints (`config.json` + `model.safetensors` or
 * shards, as written by transformers' LlamaForCausalLM) in and out of Denotron's GPT
 * with its Llama-family fields (RMSNorm, RoPE, SwiGLU, grouped-query attention).
 *
 * The layouts differ only in names and in how projections are grouped; every matrix is
 * stored (out, in) on both sides, so nothing is transposed:
 *
 * | ours                     | transformers (under `model.layers.N.`)           |
 * | ------------------------ | ------------------------------------------------ |
 * | `emb.wte`                | `model.embed_tokens.weight`                      |
 * | `h.N.ln1.weight`         | `input_layernorm.weight`                         |
 * | `h.N.attn.qkv.weight`    | rows of `self_attn.q_proj`, then `k_proj`, `v_proj` |
 * | `h.N.attn.proj.weight`   | `self_attn.o_proj.weight`                        |
 * | `h.N.ln2.weight`         | `post_attention_layernorm.weight`                |
 * | `h.N.mlp.fc.weight`      | rows of `mlp.gate_proj`, then `mlp.up_proj`      |
 * | `h.N.mlp.proj.weight`    | `mlp.down_proj.weight`                           |
 * | `lnf.weight`             | `model.norm.weight`                              |
 * | `head.weight`            | `lm_head.weight` (absent when tied)              |
 *
 * (`.bias` likewise when attention_bias and mlp_bias are both true.) The rows of q_proj
 * and k_proj need no permutation: transformers' `apply_rotary_pos_emb` rotates the pair
 * (x_j, x_{j+headDim/2}) of each head ("rotate half"), which is what lib/ops/rope.ts
 * does on the same head layout. Only checkpoints converted from Meta's original files
 * had their q/k rows permuted, and transformers' converter already did that.
 *
 * @module
 */
import { DenotronError, fmtValue } from "../errors.ts";
import {
  boundedPositiveInt,
  GPT,
  GPT_CONFIG_LIMITS,
  type GPTConfig,
  type GPTOptions,
  layerNormEpsilon,
  LLAMA_ARCHITECTURE,
  validateGPTConfig,
} from "../nn/gpt.ts";
import type { RopeScaling } from "../ops/rope.ts";
import {
  hfParameterCount,
  type HfPart,
  type HfWeights,
  loadHfModel,
  type SaveHfOptions,
  type StateEntry,
  writeHfParts,
} from "./hf_common.ts";

/** HF's name of each integer field, and the GPTConfig field whose limit it has. */
const HF_INT_FIELDS = {
  vocab_size: "vocabSize",
  max_position_embeddings: "blockSize",
  num_hidden_layers: "nLayer",
  num_attention_heads: "nHead",
  num_key_value_heads: "nHead",
  hidden_size: "nEmbd",
  intermediate_size: "ffnHidden",
} as const;

/** transformers' LlamaConfig defaults for the fields a config.json may leave out. */
const HF_DEFAULTS = {
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
  hidden_act: "silu",
} as const;

type Raw = Record<string, unknown>;

function intField(r: Raw, key: keyof typeof HF_INT_FIELDS, where: string): number {
  return boundedPositiveInt(r[key], `field "${key}"`, GPT_CONFIG_LIMITS[HF_INT_FIELDS[key]], where);
}

function numberField(r: Raw, key: string, where: string, ok: (v: number) => boolean, what: string) {
  const v = r[key];
  if (typeof v !== "number" || !ok(v)) {
    throw new DenotronError(`${where}: field "${key}" must be ${what}, got ${fmtValue(v)}`);
  }
  return v;
}

function boolField(r: Raw, key: string, fallback: boolean, where: string): boolean {
  const v = r[key] ?? fallback;
  if (typeof v !== "boolean") {
    throw new DenotronError(
      `${where}: field "${key}" must be true or false, got ${fmtValue(v)}`,
    );
  }
  return v;
}

/** Refuses a config.json that is not a LlamaForCausalLM's. */
function expectLlama(r: Raw, where: string): void {
  const type = r.model_type, archs = r.architectures;
  if (type !== undefined && type !== "llama") {
    throw new DenotronError(`${where}: model_type is ${fmtValue(type)}, not "llama"`);
  }
  if (archs !== undefined && !(Array.isArray(archs) && archs.includes("LlamaForCausalLM"))) {
    throw new DenotronError(
      `${where}: architectures is ${fmtValue(archs)}, which does not include ` +
        `"LlamaForCausalLM"`,
    );
  }
  if (type === undefined && archs === undefined) {
    throw new DenotronError(
      `${where}: neither "model_type" nor "architectures" says this is a Llama model`,
    );
  }
}

/** `rope_scaling` → our RopeScaling (null: none, or rope_type "default"). */
function ropeScalingFromHf(v: unknown, where: string): RopeScaling | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "object" || Array.isArray(v)) {
    throw new DenotronError(`${where}: field "rope_scaling" must be an object or null`);
  }
  const s = v as Raw;
  const typeKey = s.rope_type !== undefined ? "rope_type" : "type";
  const type = s[typeKey];
  if (type === "default") return null;
  if (type !== "llama3") {
    throw new DenotronError(
      `${where}: rope_scaling.${typeKey} ${fmtValue(type)} is not supported (only ` +
        `"llama3" and "default")`,
    );
  }
  const at = `${where}: rope_scaling`;
  const positive = (x: number) => x > 0 && Number.isFinite(x);
  const scaling: RopeScaling = {
    ropeType: "llama3",
    factor: numberField(s, "factor", at, (x) => x >= 1 && Number.isFinite(x), "a number >= 1"),
    lowFreqFactor: numberField(s, "low_freq_factor", at, positive, "a positive number"),
    highFreqFactor: numberField(s, "high_freq_factor", at, positive, "a positive number"),
    originalMaxPositionEmbeddings: numberField(
      s,
      "original_max_position_embeddings",
      at,
      (x) => Number.isSafeInteger(x) && x > 0,
      "a positive integer",
    ),
  };
  if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
    throw new DenotronError(
      `${at}: high_freq_factor ${scaling.highFreqFactor} must exceed low_freq_factor ` +
        `${scaling.lowFreqFactor}`,
    );
  }
  return scaling;
}

/**
 * Reads the model shape from a parsed LlamaForCausalLM `config.json`. Fields left out
 * take transformers' LlamaConfig defaults (num_key_value_heads: num_attention_heads,
 * rms_norm_eps 1e-6, rope_theta 10000, max_position_embeddings 2048, no biases,
 * untied output layer).
 *
 * @param raw the parsed JSON
 * @param where the file, for messages
 * @returns our config (dropout 0: for inference and fine-tuning from the weights)
 * @example
 * ```ts
 * import { llamaConfigFromHf } from "./hf_llama.ts";
 * llamaConfigFromHf({ model_type: "llama", hidden_size: 8, intermediate_size: 16,
 *   num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1,
 *   vocab_size: 10 }, "config.json").nKvHead; // 1
 * ```
 */
export function llamaConfigFromHf(raw: unknown, where: string): GPTConfig {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new DenotronError(`${where}: expected a JSON object`);
  }
  const r = { ...HF_DEFAULTS, ...raw } as Raw;
  expectLlama(r, where);
  if (r.hidden_act !== "silu") {
    throw new DenotronError(
      `${where}: hidden_act ${fmtValue(r.hidden_act)} is not supported; Denotron's ` +
        `SwiGLU uses "silu"`,
    );
  }
  const nHead = intField(r, "num_attention_heads", where);
  const nEmbd = intField(r, "hidden_size", where);
  const nKvHead = r.num_key_value_heads === null || r.num_key_value_heads === undefined
    ? nHead
    : intField(r, "num_key_value_heads", where);
  if (nEmbd % nHead !== 0) {
    throw new DenotronError(
      `${where}: num_attention_heads ${nHead} does not divide hidden_size ${nEmbd}`,
    );
  }
  if (r.head_dim !== undefined && r.head_dim !== null && r.head_dim !== nEmbd / nHead) {
    throw new DenotronError(
      `${where}: head_dim ${fmtValue(r.head_dim)} is not hidden_size / ` +
        `num_attention_heads = ${nEmbd / nHead}; Denotron's attention has heads of that size`,
    );
  }
  if (nHead % nKvHead !== 0) {
    throw new DenotronError(
      `${where}: num_key_value_heads ${nKvHead} does not divide num_attention_heads ${nHead}`,
    );
  }
  if ((nEmbd / nHead) % 2 !== 0) {
    throw new DenotronError(
      `${where}: rotary positions need an even head size, hidden_size / ` +
        `num_attention_heads is ${nEmbd / nHead}`,
    );
  }
  const attnBias = boolField(r, "attention_bias", false, where);
  const mlpBias = boolField(r, "mlp_bias", false, where);
  if (attnBias !== mlpBias) {
    throw new DenotronError(
      `${where}: attention_bias ${attnBias} with mlp_bias ${mlpBias} is not supported; ` +
        `Denotron's GPT has biases in every projection or in none`,
    );
  }
  const config: GPTConfig = {
    ...LLAMA_ARCHITECTURE,
    vocabSize: intField(r, "vocab_size", where),
    blockSize: intField(r, "max_position_embeddings", where),
    nLayer: intField(r, "num_hidden_layers", where),
    nHead,
    nKvHead,
    nEmbd,
    ffnHidden: intField(r, "intermediate_size", where),
    layerNormEps: layerNormEpsilon(r.rms_norm_eps, `field "rms_norm_eps"`, where),
    ropeTheta: numberField(r, "rope_theta", where, (x) => x > 1 && x < 1e12, "in (1, 1e12)"),
    ropeScaling: ropeScalingFromHf(r.rope_scaling, where),
    bias: attnBias,
    tieEmbeddings: boolField(r, "tie_word_embeddings", false, where),
    dropout: 0,
  };
  try {
    validateGPTConfig(config); // what is left: the combinations
  } catch (e) {
    if (e instanceof DenotronError) throw new DenotronError(`${where}: ${e.message}`);
    throw e;
  }
  return config;
}

/** Refuses a model that the Llama layout cannot hold. */
function expectLlamaArchitecture(c: Required<GPTConfig>): void {
  const fixed = ["normalization", "positionEmbedding", "activation"] as const;
  const bad = fixed.filter((k) => c[k] !== LLAMA_ARCHITECTURE[k]);
  if (bad.length) {
    throw new DenotronError(
      `saveHfLlama: a Llama has ${
        fixed.map((k) => `${k} "${LLAMA_ARCHITECTURE[k]}"`).join(", ")
      }; this model has ${bad.map((k) => `${k} "${c[k]}"`).join(", ")}`,
    );
  }
}

/**
 * The `config.json` transformers writes for a LlamaForCausalLM of this shape.
 *
 * @param c the model's config (RMSNorm, RoPE, SwiGLU)
 * @param ids the tokenizer's beginning- and end-of-text ids @default null (unknown)
 * @returns a JSON-ready object
 */
export function hfConfigFromLlama(
  c: Required<GPTConfig>,
  ids: { bosTokenId?: number | null; eosTokenId?: number | null } = {},
): Record<string, unknown> {
  expectLlamaArchitecture(c);
  const s = c.ropeScaling;
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    attention_bias: c.bias,
    attention_dropout: 0,
    // null rather than transformers' defaults (1, 2), which are only Llama 2's ids
    bos_token_id: ids.bosTokenId ?? null,
    eos_token_id: ids.eosTokenId ?? null,
    head_dim: c.nEmbd / c.nHead,
    hidden_act: "silu",
    hidden_size: c.nEmbd,
    initializer_range: 0.02,
    intermediate_size: c.ffnHidden,
    max_position_embeddings: c.blockSize,
    mlp_bias: c.bias,
    num_attention_heads: c.nHead,
    num_hidden_layers: c.nLayer,
    num_key_value_heads: c.nKvHead,
    pretraining_tp: 1,
    rms_norm_eps: c.layerNormEps,
    rope_scaling: s
      ? {
        rope_type: s.ropeType,
        factor: s.factor,
        low_freq_factor: s.lowFreqFactor,
        high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositionEmbeddings,
      }
      : null,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieEmbeddings,
    torch_dtype: "float32",
    use_cache: true,
    vocab_size: c.vocabSize,
  };
}

/**
 * The HF tensors whose rows, stacked in order, are our parameter `ours` (for the token
 * table and the output layer: its first vocabSize rows; the rest are vocabulary padding).
 */
function hfParts(ours: string, c: Required<GPTConfig>): HfPart[] {
  const hd = c.nEmbd / c.nHead, kv = c.nKvHead * hd, F = c.ffnHidden, C = c.nEmbd;
  if (ours === "emb.wte") return [{ key: "model.embed_tokens.weight", rows: c.vocabSize }];
  if (ours === "head.weight") return [{ key: "lm_head.weight", rows: c.vocabSize }];
  if (ours === "lnf.weight") return [{ key: "model.norm.weight", rows: C }];
  const m = /^h\.(\d+)\.(.+)\.(weight|bias)$/.exec(ours);
  const at = (module: string) => `model.layers.${m![1]}.${module}.${m![3]}`;
  switch (m?.[2]) {
    case "ln1":
      return [{ key: at("input_layernorm"), rows: C }];
    case "attn.qkv":
      return [
        { key: at("self_attn.q_proj"), rows: C },
        { key: at("self_attn.k_proj"), rows: kv },
        { key: at("self_attn.v_proj"), rows: kv },
      ];
    case "attn.proj":
      return [{ key: at("self_attn.o_proj"), rows: C }];
    case "ln2":
      return [{ key: at("post_attention_layernorm"), rows: C }];
    case "mlp.fc":
      return [{ key: at("mlp.gate_proj"), rows: F }, { key: at("mlp.up_proj"), rows: F }];
    case "mlp.proj":
      return [{ key: at("mlp.down_proj"), rows: C }];
  }
  throw new DenotronError(`no Hugging Face Llama name for parameter '${ours}'`);
}

/** Buffers some checkpoints carry that the model recomputes. */
const IGNORED = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/**
 * Maps the tensors of an HF Llama directory onto our parameter names: q/k/v rows stacked
 * into qkv, gate/up rows into fc. Checks every shape, reports missing and unexpected
 * tensors, and with tied embeddings checks that lm_head (if stored) equals embed_tokens.
 *
 * @param weights the directory's tensors (readHfWeights)
 * @param model a model of the file's shape (its parameters give the names and shapes)
 * @returns a state dict for `model.loadStateDict`
 */
export function llamaStateFromHf(weights: HfWeights, model: GPT): Record<string, StateEntry> {
  const c = model.config;
  const state: Record<string, StateEntry> = {};
  const missing: string[] = [];
  for (const [ours, param] of model.namedParameters()) {
    const cols = param.shape.slice(1), width = cols.reduce((a, b) => a * b, 1);
    const data = new Float32Array(param.numel); // padding rows stay zero
    let row = 0;
    for (const { key, rows } of hfParts(ours, c)) {
      const part = weights.take(key, [rows, ...cols]);
      if (part) data.set(part, row * width);
      else missing.push(key);
      row += rows;
    }
    state[ours] = { shape: param.shape, data };
  }
  if (missing.length) weights.missing(missing);
  if (c.tieEmbeddings) {
    weights.takeTied(
      "lm_head.weight",
      "model.embed_tokens.weight",
      state["emb.wte"].data.subarray(0, c.vocabSize * c.nEmbd),
      "tie_word_embeddings is true, so the output layer is the token embedding",
    );
  }
  for (const k of weights.tensors.keys()) if (IGNORED.test(k)) weights.skip(k);
  weights.expectAllTaken(`a Llama of ${c.nLayer} layers`);
  return state;
}

/**
 * Builds a GPT from a Hugging Face Llama directory (`config.json` and
 * `model.safetensors`, or shards named by `model.safetensors.index.json`; F32, BF16, F16
 * or F64 tensors).
 *
 * @param dir the directory
 * @param opts device, dtype and seed of the new model (the seed only matters for
 *   dropout), and vocabMultiple to pad its vocabulary (see GPTConfig.vocabMultiple)
 * @returns the model, in eval mode
 * @example
 * ```ts ignore
 * import { loadHfLlama } from "./hf_llama.ts";
 * const model = await loadHfLlama("SmolLM2-135M"); // a directory downloaded from the Hub
 * ```
 */
export async function loadHfLlama(
  dir: string,
  opts: GPTOptions & { vocabMultiple?: number } = {},
): Promise<GPT> {
  const model = await loadHfModel(dir, {
    config: (raw, where) => ({
      ...llamaConfigFromHf(raw, where),
      ...(opts.vocabMultiple ? { vocabMultiple: opts.vocabMultiple } : {}),
    }),
    build: (config) => new GPT(config, opts),
    state: llamaStateFromHf,
    parameters: hfParameterCount,
  });
  return model.eval();
}

/**
 * Writes `model` as a Hugging Face Llama directory: `config.json` and
 * `model.safetensors` (F32; qkv split into q_proj, k_proj, v_proj and fc into gate_proj,
 * up_proj; lm_head left out when tied; a padded vocabulary's extra rows left out), or
 * shards with `model.safetensors.index.json` above `opts.maxShardBytes`, loadable by
 * `LlamaForCausalLM.from_pretrained(dir)`. Each file is written atomically.
 *
 * @param model a model with RMSNorm, RoPE and SwiGLU
 * @param dir the directory (created if needed)
 * @param opts the shard size (@default 5 GB shards, as transformers) and the special ids
 * @returns when every file is in place
 */
export async function saveHfLlama(
  model: GPT,
  dir: string,
  opts: SaveHfOptions = {},
): Promise<void> {
  const c = model.config;
  const config = hfConfigFromLlama(c, opts);
  await writeHfParts(model.namedParameters(), dir, (ours) => hfParts(ours, c), config, opts);
}
