/**
 * Transformer model descriptions for the planner, their exact parameter counts
 * and the published presets (GPT-2, GPT-3, Megatron-LM's scaling tables, Llama, BERT).
 *
 * defines: ModelConfig, EncoderConfig, Normalization, TransformerShape, modelConfigOf,
 * resolveModel, layerParameters, normParameters, encoderParameters, outputRows, parameterCount, MODEL_PRESETS
 *
 * @module
 */

/**
 * A transformer, named after Megatron's arguments: a decoder (GPT-style), or with
 * `encoder` set a BERT-style encoder.
 */
export interface ModelConfig {
  /** Preset name, shown in reports. */
  name?: string;
  /** Number of transformer layers `l`. */
  numLayers: number;
  /** Hidden size `h`. */
  hiddenSize: number;
  /** Number of attention heads `a`. */
  numAttentionHeads: number;
  /** Key/value head groups (grouped-query attention). @default numAttentionHeads */
  numQueryGroups?: number;
  /** FFN inner size. @default 4 * hiddenSize */
  ffnHiddenSize?: number;
  /** Vocabulary size `V` (unpadded). */
  vocabSize: number;
  /** Training sequence length `s`. */
  seqLength: number;
  /** Learned position embeddings table length; 0 for rotary (no table). @default seqLength */
  maxPositionEmbeddings?: number;
  /** Output layer shares the word embedding matrix. @default true */
  tiedEmbeddings?: boolean;
  /** Gated MLP (SwiGLU): the first FFN matrix is doubled. @default false */
  swiglu?: boolean;
  /** Linear layers carry biases. @default true */
  bias?: boolean;
  /** Layer normalisation kind: LayerNorm has a weight and a bias, RMSNorm a weight only. @default "LayerNorm" */
  normalization?: Normalization;
  /**
   * What makes it a BERT-style encoder (Devlin et al. 2019; lib/nn/gpt_config.ts
   * `BERT_ARCHITECTURE`, lib/nn/heads.ts), pretrained with the masked-LM head; null or
   * absent: a decoder, with a final norm and a logit layer over every token. An encoder
   * adds token-type embeddings; its bidirectional attention costs what the planner
   * already counts for a decoder (the full s×s); its last stage holds the masked-LM head
   * (dense h→h, GeLU, LayerNorm, then the output layer, tied to the word embeddings, with
   * a V-sized bias), which runs only at the masked positions, the pooler and the binary
   * head. Every field defaults to BERT's choice, so `encoder: {}` is BERT. @default null
   */
  encoder?: {
    /** Rows of the token-type (segment) embedding. @default 2 */
    tokenTypes?: number;
    /** The pooler: dense h→h and tanh on each sequence's first token ([CLS]). @default true */
    pooler?: boolean;
    /** The binary (next-sentence, sentence-order) head h→2 on the pooled token. @default true */
    binaryHead?: boolean;
    /** Share of the tokens the masked-LM head predicts: the rows its output layer runs at. @default 0.15 */
    maskedFraction?: number;
    /**
     * Post-LN blocks, a LayerNorm after the embeddings and no final norm (BERT); false:
     * pre-LN blocks with a final norm and none after the embeddings (Megatron-LM's
     * rearranged BERT, Shoeybi et al. 2019, Figure 7). The count is the same; where the
     * norm sits (first or last stage) is not. @default true
     */
    postNorm?: boolean;
  } | null;
}

/** An encoder's fields (see {@linkcode ModelConfig}'s `encoder`). */
export type EncoderConfig = NonNullable<ModelConfig["encoder"]>;

/** Megatron's `--normalization`. */
export type Normalization = "LayerNorm" | "RMSNorm";

/** A model config with every default filled in; `encoder` is null for a decoder. */
export type ResolvedModel = Required<Omit<ModelConfig, "encoder">> & {
  /** The encoder's parts with their defaults, or null for a decoder. */
  encoder: Required<NonNullable<ModelConfig["encoder"]>> | null;
};

/**
 * Fill in the defaults of a model config.
 *
 * @param model the config, possibly partial in its optional fields
 * @returns the config with every optional field set
 * @example
 * ```ts
 * import { resolveModel } from "./model.ts";
 * const m = resolveModel({ numLayers: 2, hiddenSize: 8, numAttentionHeads: 2, vocabSize: 10, seqLength: 4 });
 * console.assert(m.ffnHiddenSize === 32 && m.tiedEmbeddings);
 * ```
 */
export function resolveModel(model: ModelConfig): ResolvedModel {
  return {
    name: model.name ?? "custom",
    numLayers: model.numLayers,
    hiddenSize: model.hiddenSize,
    numAttentionHeads: model.numAttentionHeads,
    numQueryGroups: model.numQueryGroups ?? model.numAttentionHeads,
    ffnHiddenSize: model.ffnHiddenSize ?? 4 * model.hiddenSize,
    vocabSize: model.vocabSize,
    seqLength: model.seqLength,
    maxPositionEmbeddings: model.maxPositionEmbeddings ?? model.seqLength,
    tiedEmbeddings: model.tiedEmbeddings ?? true,
    swiglu: model.swiglu ?? false,
    bias: model.bias ?? true,
    normalization: model.normalization ?? "LayerNorm",
    encoder: model.encoder
      ? {
        tokenTypes: model.encoder.tokenTypes ?? 2,
        pooler: model.encoder.pooler ?? true,
        binaryHead: model.encoder.binaryHead ?? true,
        maskedFraction: model.encoder.maskedFraction ?? 0.15,
        postNorm: model.encoder.postNorm ?? true,
      }
      : null,
  };
}

/**
 * The fields of one of the trainer's model configs (lib/nn/gpt_config.ts, defaults filled
 * in or not) that the planner reads; a structural type, so this layer needs no import
 * from the models'.
 */
export interface TransformerShape {
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nKvHead?: number;
  ffnHidden?: number;
  vocabSize: number;
  blockSize: number;
  positionEmbedding?: "learned" | "rope";
  tieEmbeddings?: boolean;
  activation?: "gelu" | "swiglu";
  bias?: boolean;
  normalization?: "layernorm" | "rmsnorm";
  /** "padding": an encoder, whose extra parts the fields below describe. */
  attentionMask?: "causal" | "padding";
  numTokenTypes?: number;
  normPosition?: "pre" | "post";
  pooler?: boolean;
  outputTransform?: boolean;
  binaryHead?: boolean;
}

/**
 * One of the trainer's model configs in the planner's terms (Megatron's names): the one
 * mapping that the Hugging Face import's size check, the trainer's FLOPs and the memory
 * benchmark share. An encoder without the masked-LM transform (a BertModel) is not
 * described exactly (the planner's encoder always has the head): its count and FLOPs
 * include the head.
 *
 * @param c the config
 * @param seqLength the training sequence length @default c.blockSize
 * @returns the planner's model
 * @example
 * ```ts
 * import { modelConfigOf, parameterCount } from "./model.ts";
 * const m = modelConfigOf({ nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257, blockSize: 1024 });
 * console.assert(parameterCount(m).total === 124_439_808);
 * ```
 */
export function modelConfigOf(c: TransformerShape, seqLength: number = c.blockSize): ModelConfig {
  const encoder = c.attentionMask === "padding";
  return {
    numLayers: c.nLayer,
    hiddenSize: c.nEmbd,
    numAttentionHeads: c.nHead,
    numQueryGroups: c.nKvHead,
    ffnHiddenSize: c.ffnHidden,
    vocabSize: c.vocabSize,
    seqLength,
    maxPositionEmbeddings: c.positionEmbedding === "rope" ? 0 : c.blockSize,
    tiedEmbeddings: c.tieEmbeddings ?? true,
    swiglu: c.activation === "swiglu",
    bias: c.bias ?? true,
    normalization: c.normalization === "rmsnorm" ? "RMSNorm" : "LayerNorm",
    encoder: encoder
      ? {
        tokenTypes: c.numTokenTypes ?? 0,
        pooler: c.pooler ?? false,
        binaryHead: c.binaryHead ?? false,
        postNorm: c.normPosition === "post",
      }
      : null,
  };
}

/** Parameters of one transformer layer, split by how tensor parallelism treats them. */
export interface LayerParameters {
  /** Matrices and column-parallel biases: divided by the TP size. */
  split: number;
  /** Layer norms and row-parallel biases: replicated on every TP rank. */
  replicated: number;
}

/**
 * Parameters of one transformer layer: QKV, attention output, two FFN matrices, two
 * layer norms. For GPT-2 this is 12h² + 13h.
 *
 * @param model the model
 * @returns the split (divided by TP) and replicated parts
 * @example
 * ```ts
 * import { layerParameters } from "./model.ts";
 * const p = layerParameters({ numLayers: 1, hiddenSize: 768, numAttentionHeads: 12, vocabSize: 1, seqLength: 1 });
 * console.assert(p.split + p.replicated === 12 * 768 * 768 + 13 * 768);
 * ```
 */
export function layerParameters(model: ModelConfig): LayerParameters {
  const m = resolveModel(model);
  const h = m.hiddenSize;
  const kv = (m.numQueryGroups * h) / m.numAttentionHeads; // key (and value) width
  const qkvOut = h + 2 * kv;
  const fc1Out = m.ffnHiddenSize * (m.swiglu ? 2 : 1);
  const b = m.bias ? 1 : 0;
  const split = h * qkvOut + b * qkvOut + h * h + h * fc1Out + b * fc1Out + m.ffnHiddenSize * h;
  // Two norms (weight, and a bias for LayerNorm) and two row-parallel biases.
  const replicated = 2 * normParameters(m) + b * 2 * h;
  return { split, replicated };
}

/**
 * Parameters of one normalisation layer: 2h for LayerNorm (weight, bias), h for RMSNorm.
 *
 * @param model the model
 * @returns parameters
 * @example
 * ```ts
 * import { normParameters } from "./model.ts";
 * console.assert(normParameters({ numLayers: 1, hiddenSize: 8, numAttentionHeads: 2, vocabSize: 1, seqLength: 1, normalization: "RMSNorm" }) === 8);
 * ```
 */
export function normParameters(model: ModelConfig): number {
  const m = resolveModel(model);
  return m.normalization === "RMSNorm" ? m.hiddenSize : 2 * m.hiddenSize;
}

/**
 * Parameters of an encoder's parts that a decoder lacks (all 0 for a decoder), by where
 * they sit: the first stage's token types and embedding norm, the last stage's heads.
 */
export interface EncoderParameters {
  /** Token-type embeddings, types·h (replicated over TP). */
  tokenTypeEmbeddings: number;
  /** The embeddings' LayerNorm of a post-LN encoder, 2h (instead of the final norm). */
  embeddingNorm: number;
  /** The masked-LM head's transform: dense h² + h and LayerNorm 2h (replicated over TP). */
  maskedLMTransform: number;
  /** The masked-LM head's bias on the logits, V (split by vocabulary like the table). */
  maskedLMBias: number;
  /** The pooler, h² + h. */
  pooler: number;
  /** The binary head, 2h + 2. */
  binaryHead: number;
}

/**
 * Parameters of an encoder's own parts (see {@linkcode EncoderParameters}).
 *
 * @param model the model
 * @returns each part; all 0 for a decoder
 * @example
 * ```ts
 * import { encoderParameters } from "./model.ts";
 * const e = encoderParameters({ numLayers: 1, hiddenSize: 8, numAttentionHeads: 2, vocabSize: 10, seqLength: 4, encoder: {} });
 * console.assert(e.maskedLMTransform === 64 + 8 + 16 && e.maskedLMBias === 10 && e.binaryHead === 18);
 * ```
 */
export function encoderParameters(model: ModelConfig): EncoderParameters {
  const m = resolveModel(model);
  const h = m.hiddenSize;
  const e = m.encoder;
  if (!e) {
    return {
      tokenTypeEmbeddings: 0,
      embeddingNorm: 0,
      maskedLMTransform: 0,
      maskedLMBias: 0,
      pooler: 0,
      binaryHead: 0,
    };
  }
  return {
    tokenTypeEmbeddings: e.tokenTypes * h,
    embeddingNorm: e.postNorm ? normParameters(m) : 0,
    maskedLMTransform: h * h + h + normParameters(m),
    maskedLMBias: m.vocabSize,
    pooler: e.pooler ? h * h + h : 0,
    binaryHead: e.binaryHead ? 2 * h + 2 : 0,
  };
}

/**
 * Rows the output layer runs at for `tokens` tokens: all of them in a decoder, the
 * masked ones (rounded up) in an encoder, whose masked-LM head gathers them first.
 *
 * @param model the model
 * @param tokens tokens of the batch, b·s
 * @returns rows of the logits
 * @example
 * ```ts
 * import { outputRows } from "./model.ts";
 * const bert = { numLayers: 1, hiddenSize: 8, numAttentionHeads: 2, vocabSize: 10, seqLength: 512, encoder: {} };
 * console.assert(outputRows(bert, 512) === 77 && outputRows({ ...bert, encoder: null }, 512) === 512);
 * ```
 */
export function outputRows(model: ModelConfig, tokens: number): number {
  const e = resolveModel(model).encoder;
  return e ? Math.ceil(e.maskedFraction * tokens) : tokens;
}

/** Parameter count of a model, by part (the encoder's parts 0 for a decoder). */
export interface ParameterCount extends EncoderParameters {
  /** Word embeddings V·h. */
  wordEmbeddings: number;
  /** Learned position embeddings (0 with rotary). */
  positionEmbeddings: number;
  /** All transformer layers. */
  layers: number;
  /** Final layer norm (0 for a post-LN encoder: its norm follows the embeddings). */
  finalNorm: number;
  /** Untied output layer V·h (0 when tied). */
  outputLayer: number;
  /** Sum of the parts: the count published for a model. */
  total: number;
}

/**
 * Exact parameter count (unpadded vocabulary, tied weights counted once). An encoder's
 * is Hugging Face's `BertForPreTraining` count: bert-base-uncased 110,106,428.
 *
 * @param model the model
 * @returns the count by part and its total
 * @example
 * ```ts
 * import { MODEL_PRESETS, parameterCount } from "./model.ts";
 * console.assert(parameterCount(MODEL_PRESETS["gpt2-124m"]).total === 124_439_808);
 * console.assert(parameterCount(MODEL_PRESETS["bert-base"]).total === 110_106_428);
 * ```
 */
export function parameterCount(model: ModelConfig): ParameterCount {
  const m = resolveModel(model);
  const h = m.hiddenSize;
  const per = layerParameters(m);
  const encoder = encoderParameters(m);
  const wordEmbeddings = m.vocabSize * h;
  const positionEmbeddings = m.maxPositionEmbeddings * h;
  const layers = m.numLayers * (per.split + per.replicated);
  const finalNorm = m.encoder?.postNorm ? 0 : normParameters(m);
  const outputLayer = m.tiedEmbeddings ? 0 : m.vocabSize * h;
  const total = wordEmbeddings + positionEmbeddings + layers + finalNorm + outputLayer +
    Object.values(encoder).reduce((a, x) => a + x, 0);
  return { wordEmbeddings, positionEmbeddings, layers, finalNorm, outputLayer, ...encoder, total };
}

function gpt2(name: string, numLayers: number, hiddenSize: number, heads: number): ModelConfig {
  return {
    name,
    numLayers,
    hiddenSize,
    numAttentionHeads: heads,
    vocabSize: 50257,
    seqLength: 1024,
    maxPositionEmbeddings: 1024,
  };
}

// GPT-3 paper (Brown et al. 2020), Table 2.1: n_ctx 2048, the GPT-2 tokenizer. The 13B row
// prints d_model 5140; 40 heads of 128 make 5120, which is what we use.
function gpt3(name: string, numLayers: number, hiddenSize: number, heads: number): ModelConfig {
  return {
    name,
    numLayers,
    hiddenSize,
    numAttentionHeads: heads,
    vocabSize: 50257,
    seqLength: 2048,
    maxPositionEmbeddings: 2048,
  };
}

// Narayanan et al. 2021, Table 1 (Megatron-LM on A100): vocabulary 51,200, sequence 2048,
// learned positions, tied embeddings.
function megatron2021(name: string, numLayers: number, hiddenSize: number, heads: number) {
  return {
    name,
    numLayers,
    hiddenSize,
    numAttentionHeads: heads,
    vocabSize: 51200,
    seqLength: 2048,
  } satisfies ModelConfig;
}

// Megatron-Core weak-scaling table (Megatron-LM README, H100): vocabulary 131,072,
// sequence 4096; the published sizes match untied input and output embeddings and no
// learned position table.
function megatronCore(name: string, numLayers: number, hiddenSize: number, heads: number) {
  return {
    name,
    numLayers,
    hiddenSize,
    numAttentionHeads: heads,
    vocabSize: 131072,
    seqLength: 4096,
    maxPositionEmbeddings: 0,
    tiedEmbeddings: false,
  } satisfies ModelConfig;
}

// A Llama-style model: RMSNorm, SwiGLU, rotary positions, no biases, grouped-query
// attention.
function llama(
  name: string,
  shape: { l: number; h: number; a: number; kv: number; ffn: number; V: number; s: number },
  tiedEmbeddings: boolean,
): ModelConfig {
  return {
    name,
    numLayers: shape.l,
    hiddenSize: shape.h,
    numAttentionHeads: shape.a,
    numQueryGroups: shape.kv,
    ffnHiddenSize: shape.ffn,
    vocabSize: shape.V,
    seqLength: shape.s,
    maxPositionEmbeddings: 0,
    tiedEmbeddings,
    swiglu: true,
    bias: false,
    normalization: "RMSNorm",
  };
}

// Llama 3 (Grattafiori et al. 2024, "The Llama 3 Herd of Models", Table 3): 8 key/value
// heads, V = 128,256, untied output, pre-trained at 8192 tokens.
function llama3(name: string, l: number, h: number, a: number, ffn: number): ModelConfig {
  return llama(name, { l, h, a, kv: 8, ffn, V: 128256, s: 8192 }, false);
}

// BERT (Devlin et al. 2019): the uncased WordPiece vocabulary, 512 learned positions, two
// token types, the tied output layer of the masked-LM head. Megatron-LM pads the
// vocabulary to a multiple of 128·t; we leave it unpadded, as for the decoders.
function bert(name: string, numLayers: number, hiddenSize: number, heads: number, postNorm = true) {
  return {
    name,
    numLayers,
    hiddenSize,
    numAttentionHeads: heads,
    vocabSize: 30522,
    seqLength: 512,
    encoder: { postNorm },
  } satisfies ModelConfig;
}

/**
 * Named model presets: `gpt2-124m` … `gpt2-1558m`, `gpt3-125m` … `gpt3-175b`,
 * `megatron-1.7b` … `megatron-1t` (Narayanan et al. 2021, Table 1) and
 * `mcore-1.7b` … `mcore-462b` (Megatron-Core H100 table), `opt-175b`, `llama3-8b`, `llama3-70b`,
 * `llama3-405b` (Llama 3 paper, Table 3) and the framework's own Llama-style presets
 * `llama-tiny`, `smollm2-135m`, `tinyllama-1.1b`, `llama-3.2-1b`; the encoders `bert-tiny`,
 * `bert-base`, `bert-large` and Megatron-LM's BERTs `megatron-bert-336m`, `megatron-bert-1.3b`,
 * `megatron-bert-3.9b` (Shoeybi et al. 2019, Table 4).
 *
 * @example
 * ```ts
 * import { MODEL_PRESETS } from "./model.ts";
 * console.assert(MODEL_PRESETS["gpt3-175b"].numLayers === 96);
 * ```
 */
export const MODEL_PRESETS: Readonly<Record<string, ModelConfig>> = Object.freeze({
  "gpt2-124m": gpt2("gpt2-124m", 12, 768, 12),
  "gpt2-350m": gpt2("gpt2-350m", 24, 1024, 16),
  "gpt2-774m": gpt2("gpt2-774m", 36, 1280, 20),
  "gpt2-1558m": gpt2("gpt2-1558m", 48, 1600, 25),
  "gpt3-125m": gpt3("gpt3-125m", 12, 768, 12),
  "gpt3-350m": gpt3("gpt3-350m", 24, 1024, 16),
  "gpt3-760m": gpt3("gpt3-760m", 24, 1536, 16),
  "gpt3-1.3b": gpt3("gpt3-1.3b", 24, 2048, 24),
  "gpt3-2.7b": gpt3("gpt3-2.7b", 32, 2560, 32),
  "gpt3-6.7b": gpt3("gpt3-6.7b", 32, 4096, 32),
  "gpt3-13b": gpt3("gpt3-13b", 40, 5120, 40),
  "gpt3-175b": gpt3("gpt3-175b", 96, 12288, 96),
  "megatron-1.7b": megatron2021("megatron-1.7b", 24, 2304, 24),
  "megatron-3.6b": megatron2021("megatron-3.6b", 30, 3072, 32),
  "megatron-7.5b": megatron2021("megatron-7.5b", 36, 4096, 32),
  "megatron-18b": megatron2021("megatron-18b", 40, 6144, 48),
  "megatron-39b": megatron2021("megatron-39b", 48, 8192, 64),
  "megatron-76b": megatron2021("megatron-76b", 60, 10240, 80),
  "megatron-145b": megatron2021("megatron-145b", 80, 12288, 96),
  "megatron-310b": megatron2021("megatron-310b", 96, 16384, 128),
  "megatron-530b": megatron2021("megatron-530b", 105, 20480, 128),
  "megatron-1t": megatron2021("megatron-1t", 128, 25600, 160),
  "mcore-1.7b": megatronCore("mcore-1.7b", 24, 2048, 16),
  "mcore-7.1b": megatronCore("mcore-7.1b", 30, 4096, 32),
  "mcore-16b": megatronCore("mcore-16b", 32, 6144, 48),
  "mcore-32b": megatronCore("mcore-32b", 48, 7168, 56),
  "mcore-70b": megatronCore("mcore-70b", 84, 8192, 64),
  "mcore-119b": megatronCore("mcore-119b", 92, 10240, 80),
  "mcore-177b": megatronCore("mcore-177b", 96, 12288, 96),
  "mcore-314b": megatronCore("mcore-314b", 96, 16384, 128),
  "mcore-462b": megatronCore("mcore-462b", 112, 18432, 144),
  // OPT-175B (Zhang et al. 2022, Table 1; metaseq's opt_job_constants.py): GPT-3's shape,
  // the GPT-2 BPE in a 50,272-row table, learned positions with metaseq's offset of 2
  // (2050 rows), tied output; its ReLU changes neither the count nor the activations.
  "opt-175b": {
    name: "opt-175b",
    numLayers: 96,
    hiddenSize: 12288,
    numAttentionHeads: 96,
    vocabSize: 50272,
    seqLength: 2048,
    maxPositionEmbeddings: 2050,
  },
  "llama3-8b": llama3("llama3-8b", 32, 4096, 32, 14336),
  "llama3-70b": llama3("llama3-70b", 80, 8192, 64, 28672),
  "llama3-405b": llama3("llama3-405b", 126, 16384, 128, 53248),
  // The Llama-style presets of lib/nn/gpt.ts (GPT_PRESETS), planned at their training
  // lengths (Llama 3.2 1B at the 8192 of its pre-training, not its 131,072 RoPE reach).
  "llama-tiny": llama("llama-tiny", { l: 4, h: 128, a: 4, kv: 2, ffn: 344, V: 257, s: 64 }, false),
  "smollm2-135m": llama("smollm2-135m", {
    l: 30,
    h: 576,
    a: 9,
    kv: 3,
    ffn: 1536,
    V: 49152,
    s: 8192,
  }, true),
  "tinyllama-1.1b": llama("tinyllama-1.1b", {
    l: 22,
    h: 2048,
    a: 32,
    kv: 4,
    ffn: 5632,
    V: 32000,
    s: 2048,
  }, false),
  "llama-3.2-1b": llama("llama-3.2-1b", {
    l: 16,
    h: 2048,
    a: 32,
    kv: 8,
    ffn: 8192,
    V: 128256,
    s: 8192,
  }, true),
  // Google's BERT-Tiny (Turc et al. 2019) and the two BERTs of Devlin et al. 2019, post-LN
  // as published and as lib/nn/gpt_config.ts trains them (GPT_PRESETS bert-tiny, bert-base).
  "bert-tiny": bert("bert-tiny", 2, 128, 2),
  "bert-base": bert("bert-base", 12, 768, 12),
  "bert-large": bert("bert-large", 24, 1024, 16),
  // Shoeybi et al. 2019, Table 4, at s = 512: pre-LN blocks with a final norm (the
  // rearranged order of their Figure 7, which let BERT scale past BERT-Large).
  "megatron-bert-336m": bert("megatron-bert-336m", 24, 1024, 16, false),
  "megatron-bert-1.3b": bert("megatron-bert-1.3b", 24, 2048, 32, false),
  "megatron-bert-3.9b": bert("megatron-bert-3.9b", 48, 2560, 40, false),
});
