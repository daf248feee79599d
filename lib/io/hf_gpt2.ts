/**
 * defines: gptConfigFromHf, hfConfigFromGpt, gpt2StateFromHf, loadHfGpt2, saveHfGpt2 —
 * Hugging Face GPT-2 checkpoints (`config.json` + `model.safetensors`, as written by
 * transformers' GPT2LMHeadModel) in and out of Denotron's GPT.
 *
 * The layouts differ in three ways. Names: HF's `h.0.attn.c_attn.weight` is our
 * `h.0.attn.qkv.weight`, optionally under a `transformer.` prefix. Orientation: HF's
 * GPT-2 uses Conv1D layers whose weights are stored (in, out), where our Linear stores
 * (out, in), so the four projection matrices of each layer are transposed. The q | k | v
 * split of c_attn's output columns and the head order within each are the same as ours.
 * Ties: `lm_head.weight`, when stored at all, must equal `wte.weight`, since our output
 * layer is the token embedding. The causal-mask buffers `attn.bias` and
 * `attn.masked_bias` that older files carry are ignored.
 *
 * @module
 */
import { join } from "node:path";
import { DenotronError, fmtValue } from "../errors.ts";
import {
  boundedPositiveInt,
  GPT,
  GPT_CONFIG_LIMITS,
  type GPTConfig,
  type GPTOptions,
  layerNormEpsilon,
} from "../nn/gpt.ts";
import {
  hfParameterCount,
  type HfWeights,
  loadHfModel,
  padRows,
  type SaveHfOptions,
  type StateEntry,
  writeHfWeights,
  writeJson,
} from "./hf_common.ts";
import { type TensorEntry, tensorEntry } from "./safetensors.ts";

/** Activations that are GPT-2's tanh approximation of GELU (the one our kernel computes). */
const TANH_GELU = ["gelu_new", "gelu_pytorch_tanh"];

/** Our parameter name suffixes and HF's, for one layer. */
const LAYER_NAMES: [ours: string, hf: string][] = [
  ["ln1", "ln_1"],
  ["attn.qkv", "attn.c_attn"],
  ["attn.proj", "attn.c_proj"],
  ["ln2", "ln_2"],
  ["mlp.fc", "mlp.c_fc"],
  ["mlp.proj", "mlp.c_proj"],
];

/** HF's name (without prefix) of one of our parameters, and whether it is a Conv1D weight. */
function hfName(ours: string): { name: string; conv1d: boolean } {
  if (ours === "emb.wte") return { name: "wte.weight", conv1d: false };
  if (ours === "emb.wpe") return { name: "wpe.weight", conv1d: false };
  if (ours.startsWith("lnf.")) return { name: `ln_f.${ours.slice(4)}`, conv1d: false };
  const m = /^h\.(\d+)\.(.+)\.(weight|bias)$/.exec(ours);
  const pair = m && LAYER_NAMES.find(([o]) => o === m[2]);
  if (!m || !pair) throw new DenotronError(`no Hugging Face GPT-2 name for parameter '${ours}'`);
  return {
    name: `h.${m[1]}.${pair[1]}.${m[3]}`,
    conv1d: m[3] === "weight" && pair[0] !== "ln1" && pair[0] !== "ln2",
  };
}

/** (rows, cols) row-major → (cols, rows). */
function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  }
  return out;
}

/** HF's name of each integer field, and the GPTConfig field whose limit it has. */
const HF_INT_FIELDS = {
  vocab_size: "vocabSize",
  n_positions: "blockSize",
  n_layer: "nLayer",
  n_head: "nHead",
  n_embd: "nEmbd",
  n_inner: "ffnHidden",
} as const;

function fieldOf(raw: Record<string, unknown>, key: keyof typeof HF_INT_FIELDS, where: string) {
  return boundedPositiveInt(
    raw[key],
    `field "${key}"`,
    GPT_CONFIG_LIMITS[HF_INT_FIELDS[key]],
    where,
  );
}

/**
 * Reads the model shape from a parsed GPT-2 `config.json`.
 *
 * @param raw the parsed JSON
 * @param where the file, for messages
 * @returns our config (dropout 0: for inference and fine-tuning from the weights)
 * @example
 * ```ts
 * import { gptConfigFromHf } from "./hf_gpt2.ts";
 * gptConfigFromHf({ n_layer: 2, n_head: 2, n_embd: 8, vocab_size: 10, n_positions: 16,
 *   activation_function: "gelu_new" }, "config.json").nEmbd; // 8
 * ```
 */
export function gptConfigFromHf(raw: unknown, where: string): GPTConfig {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new DenotronError(`${where}: expected a JSON object`);
  }
  const r = raw as Record<string, unknown>;
  if (r.model_type !== undefined && r.model_type !== "gpt2") {
    throw new DenotronError(`${where}: model_type is ${fmtValue(r.model_type)}, not "gpt2"`);
  }
  const act = r.activation_function ?? "gelu_new";
  if (typeof act !== "string" || !TANH_GELU.includes(act)) {
    throw new DenotronError(
      `${where}: activation_function ${fmtValue(act)} is not supported; Denotron's GPT ` +
        `uses the tanh GELU ("gelu_new")`,
    );
  }
  if (r.scale_attn_by_inverse_layer_idx === true || r.scale_attn_weights === false) {
    throw new DenotronError(
      `${where}: only the standard 1/sqrt(head size) attention scaling is supported ` +
        `(scale_attn_weights true, scale_attn_by_inverse_layer_idx false)`,
    );
  }
  if (r.tie_word_embeddings === false) {
    throw new DenotronError(
      `${where}: tie_word_embeddings is false; Denotron's GPT ties lm_head to wte`,
    );
  }
  const eps = layerNormEpsilon(r.layer_norm_epsilon ?? 1e-5, `field "layer_norm_epsilon"`, where);
  const config: GPTConfig = {
    vocabSize: fieldOf(r, "vocab_size", where),
    blockSize: fieldOf(r, "n_positions", where),
    nLayer: fieldOf(r, "n_layer", where),
    nHead: fieldOf(r, "n_head", where),
    nEmbd: fieldOf(r, "n_embd", where),
    layerNormEps: eps,
    dropout: 0,
  };
  if (r.n_inner !== undefined && r.n_inner !== null) {
    config.ffnHidden = fieldOf(r, "n_inner", where);
  }
  if (config.nEmbd % config.nHead !== 0) {
    throw new DenotronError(
      `${where}: n_head ${config.nHead} does not divide n_embd ${config.nEmbd}`,
    );
  }
  return config;
}

/**
 * The `config.json` transformers writes for a GPT2LMHeadModel of this shape.
 *
 * @param c the model's config
 * @param ids the tokenizer's special ids @default both GPT-2's end-of-text, the last id
 * @returns a JSON-ready object
 */
export function hfConfigFromGpt(
  c: Required<GPTConfig>,
  ids: { bosTokenId?: number | null; eosTokenId?: number | null } = {},
): Record<string, unknown> {
  const eot = ids.eosTokenId ?? c.vocabSize - 1; // GPT-2's end-of-text is its last id
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    activation_function: "gelu_new",
    attn_pdrop: c.dropout,
    embd_pdrop: c.dropout,
    resid_pdrop: c.dropout,
    bos_token_id: ids.bosTokenId ?? eot,
    eos_token_id: eot,
    initializer_range: 0.02,
    layer_norm_epsilon: c.layerNormEps,
    n_ctx: c.blockSize,
    n_embd: c.nEmbd,
    n_head: c.nHead,
    n_inner: c.ffnHidden === 4 * c.nEmbd ? null : c.ffnHidden,
    n_layer: c.nLayer,
    n_positions: c.blockSize,
    reorder_and_upcast_attn: false,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    torch_dtype: "float32",
    use_cache: true,
    vocab_size: c.vocabSize,
  };
}

/**
 * Maps the tensors of an HF GPT-2 directory onto our parameter names, with Conv1D
 * weights transposed to (out, in). Checks every shape, reports missing and unexpected
 * tensors, and checks that lm_head (if stored) equals wte.
 *
 * @param weights the directory's tensors (readHfWeights)
 * @param model a model of the file's shape (its parameters give the names and shapes)
 * @returns a state dict for `model.loadStateDict`
 */
export function gpt2StateFromHf(weights: HfWeights, model: GPT): Record<string, StateEntry> {
  const state: Record<string, StateEntry> = {};
  const missing: string[] = [];
  for (const [ours, param] of model.namedParameters()) {
    const { name, conv1d } = hfName(ours);
    const key = [name, `transformer.${name}`].find((k) => weights.has(k));
    if (!key) {
      missing.push(name);
      continue;
    }
    // a padded vocabulary (GPTConfig.vocabMultiple) has more wte rows than HF's file
    const vocabRows = ours === "emb.wte" ? model.config.vocabSize : param.shape[0];
    const want = conv1d ? [param.shape[1], param.shape[0]] : [vocabRows, ...param.shape.slice(1)];
    const data = weights.take(
      key,
      want,
      conv1d ? "GPT-2's Conv1D weights are stored (in, out)" : "",
    )!;
    state[ours] = {
      shape: param.shape,
      data: conv1d ? transpose(data, want[0], want[1]) : padRows(data, vocabRows, param.shape[0]),
    };
  }
  if (missing.length) weights.missing(missing, `(with or without the "transformer." prefix)`);
  const { vocabSize, nEmbd } = model.config;
  weights.takeTied(
    "lm_head.weight",
    "wte.weight",
    state["emb.wte"].data.subarray(0, vocabSize * nEmbd),
    "Denotron's GPT uses the token embedding as its output layer",
  );
  for (const k of weights.tensors.keys()) {
    if (/(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/.test(k)) weights.skip(k);
  }
  weights.expectAllTaken(`a GPT-2 of ${model.config.nLayer} layers`);
  return state;
}

/**
 * Builds a GPT from a Hugging Face GPT-2 directory (`config.json` and
 * `model.safetensors`, or a sharded `model.safetensors.index.json`).
 *
 * @param dir the directory
 * @param opts device and seed of the new model (the seed only matters for dropout), and
 *   vocabMultiple to pad its vocabulary (see GPTConfig.vocabMultiple)
 * @returns the model, in eval mode
 * @example
 * ```ts ignore
 * import { loadHfGpt2 } from "./hf_gpt2.ts";
 * const model = await loadHfGpt2("gpt2"); // a directory downloaded from the Hub
 * ```
 */
export async function loadHfGpt2(
  dir: string,
  opts: GPTOptions & { vocabMultiple?: number } = {},
): Promise<GPT> {
  const model = await loadHfModel(dir, {
    config: (raw, where) => ({
      ...gptConfigFromHf(raw, where),
      ...(opts.vocabMultiple ? { vocabMultiple: opts.vocabMultiple } : {}),
    }),
    build: (config) => new GPT(config, opts),
    state: gpt2StateFromHf,
    parameters: hfParameterCount,
  });
  return model.eval();
}

/**
 * Writes `model` as a Hugging Face GPT-2 directory: `config.json` and
 * `model.safetensors` (F32, names under `transformer.`, Conv1D weights (in, out),
 * lm_head left out because it is tied to wte; a padded vocabulary's extra rows left
 * out), or shards with `model.safetensors.index.json` above `opts.maxShardBytes`,
 * loadable by `GPT2LMHeadModel.from_pretrained(dir)`. Each file is written atomically.
 *
 * @param model the model
 * @param dir the directory (created if needed)
 * @param opts the shard size (see writeHfWeights) and the special ids
 * @returns when every file is in place
 */
export async function saveHfGpt2(
  model: GPT,
  dir: string,
  opts: SaveHfOptions = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const tensors = new Map<string, TensorEntry>();
  for (const [ours, param] of model.namedParameters()) {
    const { name, conv1d } = hfName(ours);
    let data = param.toArray() as Float32Array;
    let [r, c] = param.shape;
    if (ours === "emb.wte" && r !== model.config.vocabSize) {
      r = model.config.vocabSize;
      data = data.subarray(0, r * c);
    }
    tensors.set(
      `transformer.${name}`,
      conv1d
        ? tensorEntry("F32", [c, r], transpose(data, r, c))
        : tensorEntry("F32", param.ndim === 2 ? [r, c] : [...param.shape], data),
    );
  }
  await writeHfWeights(dir, tensors, opts);
  await writeJson(join(dir, "config.json"), hfConfigFromGpt(model.config, opts));
}
