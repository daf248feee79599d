/**
 * defines: BERT_HF_ARCHITECTURES, bertConfigFromHf, hfConfigFromBert, BertHfPart,
 * bertHfParts, bertStateFromHf, LoadHfBertOptions, loadHfBert, saveHfBert — Hugging Face BERT checkpoints (`config.json` +
 * `model.safetensors` or shards, as transformers writes BertForPreTraining,
 * BertForMaskedLM, BertModel and BertForSequenceClassification) in and out of Denotron's
 * one transformer with its encoder fields (lib/nn/gpt_config.ts BERT_ARCHITECTURE).
 *
 * Every matrix is stored (out, in) on both sides; only names and the grouping of q, k, v
 * differ. Under `bert.` (the base model's prefix, absent in a BertModel file):
 *
 * | ours                        | transformers                                           |
 * | --------------------------- | ------------------------------------------------------ |
 * | `emb.wte`, `emb.wpe`        | `embeddings.word_embeddings`, `position_embeddings`    |
 * | `emb.wtt`, `emb.ln`         | `embeddings.token_type_embeddings`, `embeddings.LayerNorm` |
 * | `h.N.attn.qkv`              | rows of `encoder.layer.N.attention.self.query`, `key`, `value` |
 * | `h.N.attn.proj`, `h.N.ln1`  | `attention.output.dense`, `attention.output.LayerNorm` |
 * | `h.N.mlp.fc`                | `intermediate.dense`                                   |
 * | `h.N.mlp.proj`, `h.N.ln2`   | `output.dense`, `output.LayerNorm`                     |
 * | `pooler.dense`              | `pooler.dense`                                         |
 *
 * and without the prefix: `mlm.dense`, `mlm.ln`, `mlm.bias` are
 * `cls.predictions.transform.dense`, `cls.predictions.transform.LayerNorm`,
 * `cls.predictions.bias`; `binary` is `cls.seq_relationship`; `classifier` is
 * `classifier`. The decoder `cls.predictions.decoder.weight` (and `.bias`) is tied to the
 * word embeddings (and `cls.predictions.bias`): transformers leaves it out of the file,
 * and when a file has it, it must equal them. Which heads a model gets comes from the
 * tensors the file holds; LayerNorm's older `gamma`/`beta` names load too.
 *
 * @module
 */
import { DenotronError, fmtShape, fmtValue } from "../errors.ts";
import {
  BERT_ARCHITECTURE,
  boundedPositiveInt,
  GPT,
  GPT_CONFIG_LIMITS,
  type GPTConfig,
  type GPTOptions,
  layerNormEpsilon,
  validateGPTConfig,
} from "../nn/gpt.ts";
import {
  hfParameterCount,
  type HfPart,
  type HfWeights,
  loadHfModel,
  type StateEntry,
  writeHfParts,
  type WriteHfWeightsOptions,
} from "./hf_common.ts";

/** The `architectures` names of the BERT models this file reads and writes. */
export const BERT_HF_ARCHITECTURES = [
  "BertForPreTraining",
  "BertForMaskedLM",
  "BertModel",
  "BertForSequenceClassification",
] as const;

/** HF's name of each integer field, and the GPTConfig field whose limit it has. */
const HF_INT_FIELDS = {
  vocab_size: "vocabSize",
  max_position_embeddings: "blockSize",
  num_hidden_layers: "nLayer",
  num_attention_heads: "nHead",
  hidden_size: "nEmbd",
  intermediate_size: "ffnHidden",
  type_vocab_size: "numTokenTypes",
} as const;

/** transformers' BertConfig defaults for the fields a config.json may leave out. */
const HF_DEFAULTS = {
  vocab_size: 30522,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_act: "gelu",
  max_position_embeddings: 512,
  type_vocab_size: 2,
  layer_norm_eps: 1e-12,
  position_embedding_type: "absolute",
} as const;

/** hidden_act names and the GELU each is. */
const HF_GELU: Record<string, "erf" | "tanh"> = {
  gelu: "erf",
  gelu_new: "tanh",
  gelu_pytorch_tanh: "tanh",
};

type Raw = Record<string, unknown>;

/** Refuses a config.json that is not a BERT's. */
function expectBert(r: Raw, where: string): void {
  const type = r.model_type, archs = r.architectures;
  if (type !== undefined && type !== "bert") {
    throw new DenotronError(
      `${where}: model_type is ${fmtValue(type)}, not "bert"; this is not a BERT checkpoint`,
    );
  }
  const names: readonly unknown[] = BERT_HF_ARCHITECTURES;
  if (archs !== undefined && !(Array.isArray(archs) && archs.some((a) => names.includes(a)))) {
    throw new DenotronError(
      `${where}: architectures is ${fmtValue(archs)}, which names none of ${
        BERT_HF_ARCHITECTURES.join(", ")
      }`,
    );
  }
  if (type === undefined && archs === undefined) {
    throw new DenotronError(
      `${where}: neither "model_type" nor "architectures" says this is a BERT model`,
    );
  }
}

/**
 * Reads the encoder's shape from a parsed BERT `config.json`; fields left out take
 * transformers' BertConfig defaults. The heads are not decided here but by the tensors
 * the directory holds (see {@linkcode loadHfBert}), so they start off.
 *
 * @param raw the parsed JSON
 * @param where the file, for messages
 * @returns our config (dropout 0: for inference and fine-tuning from the weights)
 * @example
 * ```ts
 * import { bertConfigFromHf } from "./hf_bert.ts";
 * bertConfigFromHf({ model_type: "bert", hidden_size: 8, intermediate_size: 16,
 *   num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 10 }, "config.json").gelu; // "erf"
 * ```
 */
export function bertConfigFromHf(raw: unknown, where: string): GPTConfig {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new DenotronError(`${where}: expected a JSON object`);
  }
  expectBert(raw as Raw, where);
  const r = { ...HF_DEFAULTS, ...raw } as Raw;
  const gelu = typeof r.hidden_act === "string" ? HF_GELU[r.hidden_act] : undefined;
  if (!gelu) {
    throw new DenotronError(
      `${where}: hidden_act ${fmtValue(r.hidden_act)} is not supported; Denotron's BERT ` +
        `uses ${Object.keys(HF_GELU).map((k) => `"${k}"`).join(", ")}`,
    );
  }
  if (r.position_embedding_type !== "absolute") {
    throw new DenotronError(
      `${where}: position_embedding_type ${fmtValue(r.position_embedding_type)} is not ` +
        `supported; Denotron's BERT has "absolute" positions`,
    );
  }
  if (r.is_decoder === true || r.add_cross_attention === true) {
    throw new DenotronError(
      `${where}: is_decoder and add_cross_attention must be false; Denotron's BERT is an encoder`,
    );
  }
  const int = (k: keyof typeof HF_INT_FIELDS) =>
    boundedPositiveInt(r[k], `field "${k}"`, GPT_CONFIG_LIMITS[HF_INT_FIELDS[k]], where);
  const config: GPTConfig = {
    ...BERT_ARCHITECTURE,
    pooler: false,
    outputTransform: false,
    binaryHead: false,
    vocabSize: int("vocab_size"),
    blockSize: int("max_position_embeddings"),
    nLayer: int("num_hidden_layers"),
    nHead: int("num_attention_heads"),
    nEmbd: int("hidden_size"),
    ffnHidden: int("intermediate_size"),
    numTokenTypes: int("type_vocab_size"),
    layerNormEps: layerNormEpsilon(r.layer_norm_eps, `field "layer_norm_eps"`, where),
    gelu,
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

/** The heads a config.json's `architectures` name, from ours. */
function architectureOf(c: Required<GPTConfig>): (typeof BERT_HF_ARCHITECTURES)[number] {
  const heads = [c.pooler, c.outputTransform, c.binaryHead, c.numLabels > 0].join();
  const known: Record<string, (typeof BERT_HF_ARCHITECTURES)[number]> = {
    "true,true,true,false": "BertForPreTraining",
    "false,true,false,false": "BertForMaskedLM",
    "true,false,false,false": "BertModel",
    "false,false,false,false": "BertModel",
    "true,false,false,true": "BertForSequenceClassification",
  };
  const arch = known[heads];
  if (!arch) {
    throw new DenotronError(
      `saveHfBert: no transformers BERT class has these heads (pooler ${c.pooler}, ` +
        `outputTransform ${c.outputTransform}, binaryHead ${c.binaryHead}, numLabels ` +
        `${c.numLabels}); BertForPreTraining has all three of the first, BertForMaskedLM the ` +
        `masked-LM head alone, BertModel the pooler alone, BertForSequenceClassification the ` +
        `pooler and a classifier`,
    );
  }
  return arch;
}

/** Refuses a model that HF's BERT layout cannot hold. */
function expectBertArchitecture(c: Required<GPTConfig>): void {
  const want = {
    attentionMask: "padding",
    normPosition: "post",
    normalization: "layernorm",
    positionEmbedding: "learned",
    activation: "gelu",
    bias: true,
    tieEmbeddings: true,
    nKvHead: c.nHead,
  } as const;
  const bad = (Object.keys(want) as (keyof typeof want)[]).filter((k) => c[k] !== want[k]);
  if (c.numTokenTypes < 1) bad.push("numTokenTypes" as keyof typeof want);
  if (bad.length) {
    throw new DenotronError(
      `saveHfBert: a Hugging Face BERT has ${
        Object.entries(want).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(", ")
      } and numTokenTypes >= 1; this model has ${
        bad.map((k) => `${k} ${JSON.stringify(c[k])}`).join(", ")
      }`,
    );
  }
}

/**
 * The `config.json` transformers writes for this BERT (architectures from its heads).
 *
 * @param c the model's config (BERT's architecture)
 * @returns a JSON-ready object
 */
export function hfConfigFromBert(c: Required<GPTConfig>): Record<string, unknown> {
  expectBertArchitecture(c);
  const arch = architectureOf(c);
  const labels = [...Array(c.numLabels).keys()];
  return {
    architectures: [arch],
    model_type: "bert",
    // Denotron has no dropout on the attention probabilities
    attention_probs_dropout_prob: 0,
    hidden_act: c.gelu === "erf" ? "gelu" : "gelu_new",
    hidden_dropout_prob: c.dropout,
    hidden_size: c.nEmbd,
    initializer_range: 0.02,
    intermediate_size: c.ffnHidden,
    layer_norm_eps: c.layerNormEps,
    max_position_embeddings: c.blockSize,
    num_attention_heads: c.nHead,
    num_hidden_layers: c.nLayer,
    pad_token_id: 0,
    position_embedding_type: "absolute",
    torch_dtype: "float32",
    type_vocab_size: c.numTokenTypes,
    use_cache: true,
    vocab_size: c.vocabSize,
    ...(c.numLabels > 0
      ? {
        id2label: Object.fromEntries(labels.map((i) => [String(i), `LABEL_${i}`])),
        label2id: Object.fromEntries(labels.map((i) => [`LABEL_${i}`, i])),
      }
      : {}),
  };
}

/** One HF tensor that makes up rows of one of our parameters. */
export interface BertHfPart extends HfPart {
  /** A LayerNorm's older name (gamma, beta), which loads too. */
  alias?: string;
}

/**
 * The HF tensors whose rows, stacked in order, are our parameter `ours` (for the token
 * table and the masked-LM bias: their first vocabSize rows; the rest are vocabulary
 * padding).
 *
 * @param ours one of our parameter names
 * @param c the model's config
 * @param prefix the base model's prefix: "bert." or "" (a BertModel file)
 * @returns the parts, in row order
 */
export function bertHfParts(ours: string, c: Required<GPTConfig>, prefix: string): BertHfPart[] {
  const C = c.nEmbd, F = c.ffnHidden, V = c.vocabSize;
  const emb = `${prefix}embeddings`;
  const tables: Record<string, BertHfPart[]> = {
    "emb.wte": [{ key: `${emb}.word_embeddings.weight`, rows: V }],
    "emb.wpe": [{ key: `${emb}.position_embeddings.weight`, rows: c.blockSize }],
    "emb.wtt": [{ key: `${emb}.token_type_embeddings.weight`, rows: c.numTokenTypes }],
    "mlm.bias": [{ key: "cls.predictions.bias", rows: V }],
  };
  if (ours in tables) return tables[ours];
  const m = /^(.+)\.(weight|bias)$/.exec(ours);
  if (!m) throw new DenotronError(`no Hugging Face BERT name for parameter '${ours}'`);
  const [, module, kind] = m;
  const one = (key: string, rows: number): BertHfPart[] => [{ key: `${key}.${kind}`, rows }];
  const norm = (key: string): BertHfPart[] => [{
    key: `${key}.${kind}`,
    rows: C,
    alias: `${key}.${kind === "weight" ? "gamma" : "beta"}`,
  }];
  const layer = /^h\.(\d+)\.(.+)$/.exec(module);
  if (layer) {
    const at = `${prefix}encoder.layer.${layer[1]}`;
    switch (layer[2]) {
      case "attn.qkv":
        return ["query", "key", "value"].flatMap((q) => one(`${at}.attention.self.${q}`, C));
      case "attn.proj":
        return one(`${at}.attention.output.dense`, C);
      case "ln1":
        return norm(`${at}.attention.output.LayerNorm`);
      case "mlp.fc":
        return one(`${at}.intermediate.dense`, F);
      case "mlp.proj":
        return one(`${at}.output.dense`, C);
      case "ln2":
        return norm(`${at}.output.LayerNorm`);
    }
  }
  switch (module) {
    case "emb.ln":
      return norm(`${emb}.LayerNorm`);
    case "pooler.dense":
      return one(`${prefix}pooler.dense`, C);
    case "mlm.dense":
      return one("cls.predictions.transform.dense", C);
    case "mlm.ln":
      return norm("cls.predictions.transform.LayerNorm");
    case "binary":
      return one("cls.seq_relationship", 2);
    case "classifier":
      return one("classifier", c.numLabels);
  }
  throw new DenotronError(`no Hugging Face BERT name for parameter '${ours}'`);
}

/** Buffers some checkpoints carry that the model recomputes. */
const IGNORED = /^(bert\.)?embeddings\.(position_ids|token_type_ids)$/;

/** The base model's prefix in `weights`: "bert." when its keys have it, else "". */
function prefixOf(weights: HfWeights): string {
  return [...weights.tensors.keys()].some((k) => k.startsWith("bert.")) ? "bert." : "";
}

/**
 * The classes of the file's classifier, from the rows of its `classifier.weight`
 * (numLabels, C); 0 without one. Checked here, before a model of that many classes is
 * built, so that a bad shape is named by its file.
 */
function storedLabels(weights: HfWeights, C: number): number {
  const key = "classifier.weight";
  const t = weights.tensors.get(key);
  if (!t) return 0;
  const where = weights.fileOf(key);
  if (t.shape.length !== 2 || t.shape[1] !== C) {
    throw new DenotronError(
      `${where}: tensor "${key}" has shape ${fmtShape(t.shape)}, expected [numLabels, ${C}]`,
    );
  }
  const rows = `tensor "${key}" rows (numLabels)`;
  return boundedPositiveInt(t.shape[0], rows, GPT_CONFIG_LIMITS.numLabels, where);
}

/**
 * Maps the tensors of an HF BERT directory onto our parameter names: query/key/value rows
 * stacked into qkv. Checks every shape, reports missing and unexpected tensors, and checks
 * that a stored decoder (cls.predictions.decoder) equals what it is tied to. Parameters
 * listed in `fresh` keep the model's own values when the file lacks them (a new
 * classification head), and the file's pretraining heads are then left unread.
 *
 * @param weights the directory's tensors (readHfWeights)
 * @param model a model of the file's shape (its parameters give the names and shapes)
 * @param fresh parameter-name prefixes that may be missing @default none
 * @returns a state dict for `model.loadStateDict`
 */
export function bertStateFromHf(
  weights: HfWeights,
  model: GPT,
  fresh: readonly string[] = [],
): Record<string, StateEntry> {
  const c = model.config;
  const prefix = prefixOf(weights);
  const state: Record<string, StateEntry> = {};
  const missing: string[] = [];
  for (const [ours, param] of model.namedParameters()) {
    const cols = param.shape.slice(1), width = cols.reduce((a, b) => a * b, 1);
    const parts = bertHfParts(ours, c, prefix);
    const stored = parts.every((p) => weights.has(p.key) || (p.alias && weights.has(p.alias)));
    if (!stored && fresh.some((f) => ours.startsWith(f))) {
      state[ours] = { shape: param.shape, data: param.toArray() as Float32Array };
      continue;
    }
    const data = new Float32Array(param.numel); // padding rows stay zero
    let row = 0;
    for (const { key, rows, alias } of parts) {
      const name = !weights.has(key) && alias && weights.has(alias) ? alias : key;
      const part = weights.take(name, [rows, ...cols]);
      if (part) data.set(part, row * width);
      else missing.push(key);
      row += rows;
    }
    state[ours] = { shape: param.shape, data };
  }
  if (missing.length) weights.missing(missing);
  const V = c.vocabSize;
  const wte = `${prefix}embeddings.word_embeddings.weight`;
  const why = "the masked-LM decoder is the word embedding, with cls.predictions.bias";
  if (c.outputTransform) {
    weights.takeTied(
      "cls.predictions.decoder.weight",
      wte,
      state["emb.wte"].data.subarray(0, V * c.nEmbd),
      why,
    );
    const bias = state["mlm.bias"].data.subarray(0, V);
    weights.takeTied("cls.predictions.decoder.bias", "cls.predictions.bias", bias, why);
  }
  for (const k of weights.tensors.keys()) {
    if (IGNORED.test(k) || (fresh.length && k.startsWith("cls."))) weights.skip(k);
  }
  weights.expectAllTaken(`a BERT of ${c.nLayer} layers`);
  return state;
}

/** Options of {@linkcode loadHfBert}. */
export interface LoadHfBertOptions extends GPTOptions {
  /** Pads the vocabulary (see GPTConfig.vocabMultiple). @default 1 */
  vocabMultiple?: number;
  /**
   * Builds a sequence classifier of this many classes instead of the file's heads, as
   * transformers' BertForSequenceClassification.from_pretrained does: the encoder and the
   * pooler (and a `classifier` of this size) come from the file when it has them, a
   * missing pooler or classifier starts freshly initialised, and the file's pretraining
   * heads (`cls.*`) are not read. @default the file's own heads
   */
  numLabels?: number;
}

/**
 * Builds the encoder of a Hugging Face BERT directory (`config.json` and
 * `model.safetensors`, or shards named by `model.safetensors.index.json`; F32, BF16, F16
 * or F64 tensors). The heads follow the tensors: a pooler for `pooler.dense`, the masked-LM
 * head for `cls.predictions.*`, the binary head for `cls.seq_relationship`, a classifier
 * for `classifier` (or `opts.numLabels`).
 *
 * @param dir the directory
 * @param opts device, dtype and seed of the new model (the seed sets fresh heads and
 *   dropout), vocabulary padding, and numLabels for a new classification head
 * @returns the model, in eval mode
 * @example
 * ```ts ignore
 * import { loadHfBert } from "./hf_bert.ts";
 * const model = await loadHfBert("bert-base-uncased"); // a directory from the Hub
 * ```
 */
export async function loadHfBert(dir: string, opts: LoadHfBertOptions = {}): Promise<GPT> {
  const classifier = opts.numLabels !== undefined;
  if (classifier) {
    boundedPositiveInt(opts.numLabels, "numLabels", GPT_CONFIG_LIMITS.numLabels, "loadHfBert");
  }
  const model = await loadHfModel(dir, {
    config: (raw, where) => ({
      ...bertConfigFromHf(raw, where),
      ...(opts.vocabMultiple ? { vocabMultiple: opts.vocabMultiple } : {}),
    }),
    withWeights: (config, weights) => {
      const p = prefixOf(weights);
      if (classifier) return { ...config, pooler: true, numLabels: opts.numLabels };
      const heads = {
        pooler: weights.has(`${p}pooler.dense.weight`),
        outputTransform: weights.has("cls.predictions.bias"),
        binaryHead: weights.has("cls.seq_relationship.weight"),
        numLabels: storedLabels(weights, config.nEmbd),
      };
      if ((heads.binaryHead || heads.numLabels) && !heads.pooler) {
        throw new DenotronError(
          `${weights.where}: has ${
            heads.binaryHead ? "cls.seq_relationship" : "classifier"
          } but no "${p}pooler.dense.weight" for it to read`,
        );
      }
      return { ...config, ...heads };
    },
    build: (config) => new GPT(config, opts),
    state: (weights, m) =>
      bertStateFromHf(weights, m, classifier ? ["pooler.", "classifier."] : []),
    parameters: hfParameterCount,
  });
  return model.eval();
}

/**
 * Writes `model` as a Hugging Face BERT directory: `config.json` (architectures from the
 * heads: BertForPreTraining, BertForMaskedLM, BertModel or BertForSequenceClassification)
 * and `model.safetensors` (F32; qkv split into query, key, value; the tied decoder left
 * out, as transformers does; a padded vocabulary's extra rows left out), or shards with
 * `model.safetensors.index.json` above `opts.maxShardBytes`. Each file is written
 * atomically.
 *
 * @param model a model with BERT's architecture (see BERT_ARCHITECTURE)
 * @param dir the directory (created if needed)
 * @param opts the shard size @default 5 GB shards, as transformers
 * @returns when every file is in place
 */
export async function saveHfBert(
  model: GPT,
  dir: string,
  opts: WriteHfWeightsOptions = {},
): Promise<void> {
  const c = model.config;
  const config = hfConfigFromBert(c);
  const prefix = architectureOf(c) === "BertModel" ? "" : "bert.";
  await writeHfParts(
    model.namedParameters(),
    dir,
    (ours) => bertHfParts(ours, c, prefix),
    config,
    opts,
  );
}
