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
import { DenotronError, fmtShape } from "../errors.ts";
import {
  boundedPositiveInt,
  GPT,
  GPT_CONFIG_LIMITS,
  type GPTConfig,
  type GPTOptions,
  layerNormEpsilon,
} from "../nn/gpt.ts";
import { writeAll, writeFileAtomic } from "./atomic.ts";
import {
  readSafetensors,
  type SafetensorsFile,
  type TensorEntry,
  tensorEntry,
  typedView,
  writeSafetensors,
} from "./safetensors.ts";

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
    throw new DenotronError(`${where}: model_type is ${JSON.stringify(r.model_type)}, not "gpt2"`);
  }
  const act = r.activation_function ?? "gelu_new";
  if (typeof act !== "string" || !TANH_GELU.includes(act)) {
    throw new DenotronError(
      `${where}: activation_function ${JSON.stringify(act)} is not supported; Denotron's GPT ` +
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
 * @returns a JSON-ready object
 */
export function hfConfigFromGpt(c: Required<GPTConfig>): Record<string, unknown> {
  const eot = c.vocabSize - 1; // GPT-2's end-of-text is its last id
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    activation_function: "gelu_new",
    attn_pdrop: c.dropout,
    embd_pdrop: c.dropout,
    resid_pdrop: c.dropout,
    bos_token_id: eot,
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

/** f16 bits → number. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** A tensor's values as f32 (F32 as is; F16, BF16 and F64 converted). */
function toF32(t: TensorEntry, name: string, where: string): Float32Array {
  const v = typedView(t);
  switch (t.dtype) {
    case "F32":
      return v as Float32Array;
    case "F64":
      return Float32Array.from(v as Float64Array);
    case "BF16":
      return new Float32Array(Uint32Array.from(v as Uint16Array, (b) => b << 16).buffer);
    case "F16":
      return Float32Array.from(v as Uint16Array, halfToFloat);
    default:
      throw new DenotronError(
        `${where}: tensor "${name}" has dtype ${t.dtype}; expected F32, F16, BF16 or F64`,
      );
  }
}

/**
 * Maps the tensors of an HF GPT-2 safetensors file onto our parameter names, with
 * Conv1D weights transposed to (out, in). Checks every shape, reports missing and
 * unexpected tensors, and checks that lm_head (if stored) equals wte.
 *
 * @param file the safetensors contents
 * @param model a model of the file's shape (its parameters give the names and shapes)
 * @param where the file, for messages
 * @returns a state dict for `model.loadStateDict`
 */
export function gpt2StateFromHf(
  file: SafetensorsFile,
  model: GPT,
  where: string,
): Record<string, { shape: readonly number[]; data: Float32Array }> {
  const used = new Set<string>();
  const find = (name: string): [string, TensorEntry] | undefined => {
    for (const key of [name, `transformer.${name}`]) {
      const t = file.tensors.get(key);
      if (t) return [key, t];
    }
    return undefined;
  };
  const state: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
  const missing: string[] = [];
  for (const [ours, param] of model.namedParameters()) {
    const { name, conv1d } = hfName(ours);
    const found = find(name);
    if (!found) {
      missing.push(name);
      continue;
    }
    const [key, t] = found;
    used.add(key);
    // a padded vocabulary (GPTConfig.vocabMultiple) has more wte rows than HF's file
    const vocabRows = ours === "emb.wte" ? model.config.vocabSize : param.shape[0];
    const want = conv1d ? [param.shape[1], param.shape[0]] : [vocabRows, ...param.shape.slice(1)];
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new DenotronError(
        `${where}: tensor "${key}" has shape ${fmtShape(t.shape)}, expected ${fmtShape(want)}` +
          (conv1d ? " (GPT-2's Conv1D weights are stored (in, out))" : ""),
      );
    }
    let data = toF32(t, key, where);
    if (vocabRows !== param.shape[0]) { // zero padding rows after the real ones
      const padded = new Float32Array(param.numel);
      padded.set(data);
      data = padded;
    }
    state[ours] = {
      shape: param.shape,
      data: conv1d ? transpose(data, want[0], want[1]) : data,
    };
  }
  if (missing.length) {
    throw new DenotronError(
      `${where}: missing tensor${missing.length > 1 ? "s" : ""} ${
        missing.map((n) => `"${n}"`).join(", ")
      } (with or without the "transformer." prefix)`,
    );
  }
  const head = file.tensors.get("lm_head.weight");
  if (head) {
    const key = "lm_head.weight", t = head;
    used.add(key);
    const wte = state["emb.wte"].data.subarray(0, model.config.vocabSize * model.config.nEmbd);
    const w = toF32(t, key, where);
    const at = w.length !== wte.length ? -1 : w.findIndex((x, i) => !Object.is(x, wte[i]));
    if (w.length !== wte.length || at >= 0) {
      throw new DenotronError(
        `${where}: tensor "${key}" is not tied to "wte.weight" (${
          at >= 0 ? `they differ at element ${at}` : `shape ${fmtShape(t.shape)}`
        }); Denotron's GPT uses the token embedding as its output layer`,
      );
    }
  }
  const extra = [...file.tensors.keys()].filter((k) =>
    !used.has(k) && !/(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/.test(k)
  );
  if (extra.length) {
    throw new DenotronError(
      `${where}: unexpected tensor${extra.length > 1 ? "s" : ""} ${
        extra.slice(0, 8).map((n) => `"${n}"`).join(", ")
      }${extra.length > 8 ? ", ..." : ""} for a GPT-2 of ${model.config.nLayer} layers`,
    );
  }
  return state;
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new DenotronError(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DenotronError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** Every tensor of `dir`'s weights: model.safetensors, or the shards its index names. */
async function readWeights(dir: string): Promise<{ file: SafetensorsFile; where: string }> {
  const single = join(dir, "model.safetensors");
  const index = join(dir, "model.safetensors.index.json");
  const exists = async (p: string) => await Deno.stat(p).then(() => true, () => false);
  if (await exists(single) || !await exists(index)) {
    return { file: await readSafetensors(single), where: single };
  }
  const raw = await readJson(index) as { weight_map?: Record<string, string> };
  if (!raw.weight_map || typeof raw.weight_map !== "object") {
    throw new DenotronError(`${index}: no "weight_map" object`);
  }
  const tensors = new Map<string, TensorEntry>();
  for (const shard of new Set(Object.values(raw.weight_map))) {
    for (const [k, t] of (await readSafetensors(join(dir, shard))).tensors) tensors.set(k, t);
  }
  return { file: { tensors, metadata: {} }, where: `${dir}/model-*.safetensors` };
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
  const configPath = join(dir, "config.json");
  const config = {
    ...gptConfigFromHf(await readJson(configPath), configPath),
    ...(opts.vocabMultiple ? { vocabMultiple: opts.vocabMultiple } : {}),
  };
  const { file, where } = await readWeights(dir);
  const model = new GPT(config, opts);
  try {
    model.loadStateDict(gpt2StateFromHf(file, model, where), where);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model.eval();
}

/**
 * Writes `model` as a Hugging Face GPT-2 directory: `config.json` and
 * `model.safetensors` (F32, names under `transformer.`, Conv1D weights (in, out),
 * lm_head left out because it is tied to wte; a padded vocabulary's extra rows left
 * out), loadable by
 * `GPT2LMHeadModel.from_pretrained(dir)`. Each file is written atomically.
 *
 * @param model the model
 * @param dir the directory (created if needed)
 * @returns when both files are in place
 */
export async function saveHfGpt2(model: GPT, dir: string): Promise<void> {
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
  await writeSafetensors(join(dir, "model.safetensors"), { tensors, metadata: { format: "pt" } });
  const json = new TextEncoder().encode(
    JSON.stringify(hfConfigFromGpt(model.config), null, 2) + "\n",
  );
  await writeFileAtomic(join(dir, "config.json"), (f) => writeAll(f, json));
}
