/**
 * defines: GPTConfig, paddedVocabSize, LLAMA_ARCHITECTURE, BERT_ARCHITECTURE, GPT_PRESETS,
 * GPT_CONFIG_LIMITS, boundedPositiveInt, layerNormEpsilon, validateGPTConfig,
 * gptConfigWithDefaults, isGpt2Architecture, isEncoder, describeArchitecture — the one
 * transformer's configuration, like Megatron's transformer config: every architectural
 * choice is a field, GPT-2 is the defaults, and Llama-family decoders and BERT encoders
 * are presets that set the fields they change.
 *
 * @module
 */
import { DenotronError, fmtValue } from "../errors.ts";
import { ropeInvFreq, type RopeScaling } from "../ops/rope.ts";

/**
 * The shape and architecture of the transformer. Names follow nanoGPT / Hugging Face's
 * GPT2Config; every optional field defaults to GPT-2's choice.
 */
export interface GPTConfig {
  /** Tokens in the vocabulary (50257 for GPT-2). */
  vocabSize: number;
  /** Maximum sequence length: rows of the position embedding. */
  blockSize: number;
  /** Transformer blocks. */
  nLayer: number;
  /** Attention heads per block; must divide nEmbd. */
  nHead: number;
  /** Model width C. */
  nEmbd: number;
  /** Dropout probability on embeddings and residual branches. @default 0 */
  dropout?: number;
  /** Layernorm (or RMSNorm) epsilon. @default 1e-5 */
  layerNormEps?: number;
  /** MLP hidden width (SwiGLU: the width of each of gate and up). @default 4 · nEmbd */
  ffnHidden?: number;
  /** "layernorm" (GPT-2) or "rmsnorm" (Llama: no mean, no bias). @default "layernorm" */
  normalization?: "layernorm" | "rmsnorm";
  /**
   * "learned" absolute positions (GPT-2's wpe table) or "rope" (rotary, applied to the
   * queries and keys; no position table). @default "learned"
   */
  positionEmbedding?: "learned" | "rope";
  /** RoPE's base θ (10000 for Llama 2, 500000 for Llama 3). @default 10000 */
  ropeTheta?: number;
  /** Llama 3's frequency scaling of RoPE; null: none. @default null */
  ropeScaling?: RopeScaling | null;
  /** "gelu" (GPT-2's tanh approximation) or "swiglu" (silu(gate) · up). @default "gelu" */
  activation?: "gelu" | "swiglu";
  /**
   * Key/value heads (Megatron's num-query-groups): nHead for multi-head attention, fewer
   * for grouped-query attention, 1 for multi-query attention; must divide nHead.
   * @default nHead
   */
  nKvHead?: number;
  /** Biases in every Linear (qkv, proj, fc). @default true */
  bias?: boolean;
  /** The output layer is the token embedding (GPT-2), or a separate `head`. @default true */
  tieEmbeddings?: boolean;
  /**
   * The token table and the logits get vocabSize rounded up to a multiple of this
   * (Megatron's --make-vocab-size-divisible-by, llm.c's padded vocabulary): GPT-2's
   * 50257 becomes 50304 with 128, so the output-layer GEMMs run on aligned sizes. The
   * padding rows start at zero, no token selects them, and the loss leaves their logits
   * out of the softmax, so training is the unpadded model's. @default 1
   */
  vocabMultiple?: number;
  /**
   * Which keys each query reads: "causal" (decoders: itself and the tokens before it) or
   * "padding" (encoders such as BERT: every valid token of its row, both ways; the valid
   * length of each row comes from a `paddingLayout` (lib/nn/attention.ts), all T tokens without one).
   * @default "causal"
   */
  attentionMask?: "causal" | "padding";
  /**
   * Where the blocks normalise: "pre" (GPT-2, Llama: x + f(norm(x)), then a final norm
   * `lnf` after the last block) or "post" (BERT: norm(x + f(x)) for both branches, the
   * embeddings' sum normalised by `emb.ln`, and no final norm). @default "pre"
   */
  normPosition?: "pre" | "post";
  /** Rows of the token-type (segment) embedding `emb.wtt`; 0: none (BERT: 2). @default 0 */
  numTokenTypes?: number;
  /**
   * The GELU that activation "gelu" computes: "tanh", GPT-2's approximation (Hugging
   * Face's "gelu_new"), or "erf", the exact x·Φ(x) (Hugging Face's "gelu", BERT's). The
   * two differ by up to about 1e-3 (near x = ±2). @default "tanh"
   */
  gelu?: "tanh" | "erf";
  /**
   * BERT's pooler `pooler.dense`: tanh(W h + b) of each row's first token ([CLS]), the
   * input of the binary and classification heads. @default false
   */
  pooler?: boolean;
  /**
   * BERT's masked-LM head between the last hidden states and the output layer: dense,
   * GELU, LayerNorm (`mlm.dense`, `mlm.ln`), and a bias on the logits (`mlm.bias`).
   * @default false
   */
  outputTransform?: boolean;
  /**
   * The binary head `binary` (C → 2) on the pooled output: Megatron's sentence-order
   * head, BERT's next-sentence head. Needs the pooler. @default false
   */
  binaryHead?: boolean;
  /**
   * Classes of a sequence-classification head `classifier` (C → numLabels) on the pooled
   * output, after dropout (Hugging Face's BertForSequenceClassification); 0: none. Needs
   * the pooler. @default 0
   */
  numLabels?: number;
}

/** vocabSize rounded up to a multiple of vocabMultiple: the rows of wte and the logits' width. */
export function paddedVocabSize(c: Pick<GPTConfig, "vocabSize" | "vocabMultiple">): number {
  const m = c.vocabMultiple ?? 1;
  return Math.ceil(c.vocabSize / m) * m;
}

/** The fields that make a GPT-2 config a Llama-style one. */
export const LLAMA_ARCHITECTURE = {
  normalization: "rmsnorm",
  positionEmbedding: "rope",
  activation: "swiglu",
  bias: false,
  layerNormEps: 1e-5,
} as const satisfies Partial<GPTConfig>;

/**
 * The fields that make a GPT-2 config a BERT encoder (Devlin et al. 2019, as Hugging
 * Face's BertForPreTraining): bidirectional attention over each row's valid tokens,
 * post-LN blocks, segment embeddings, the exact GELU, LayerNorm epsilon 1e-12, the
 * pooler, the masked-LM head and the binary head.
 */
export const BERT_ARCHITECTURE = {
  attentionMask: "padding",
  normPosition: "post",
  numTokenTypes: 2,
  gelu: "erf",
  layerNormEps: 1e-12,
  pooler: true,
  outputTransform: true,
  binaryHead: true,
} as const satisfies Partial<GPTConfig>;

/**
 * GPT-2's published sizes, Llama-family shapes (SmolLM2-135M, TinyLlama-1.1B,
 * Llama-3.2-1B, as in their Hugging Face config.json files), BERT's (bert-base-uncased,
 * and Google's BERT-Tiny, google/bert_uncased_L-2_H-128_A-2 of Turc et al. 2019, both with
 * the 30522-token uncased WordPiece vocabulary), and tiny models for tests and laptops.
 */
export const GPT_PRESETS: Record<string, GPTConfig> = {
  "gpt2": { vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768 },
  "gpt2-medium": { vocabSize: 50257, blockSize: 1024, nLayer: 24, nHead: 16, nEmbd: 1024 },
  "gpt2-large": { vocabSize: 50257, blockSize: 1024, nLayer: 36, nHead: 20, nEmbd: 1280 },
  "gpt2-xl": { vocabSize: 50257, blockSize: 1024, nLayer: 48, nHead: 25, nEmbd: 1600 },
  "tiny": { vocabSize: 257, blockSize: 64, nLayer: 2, nHead: 2, nEmbd: 32 },
  // The default run's size (4 layers, 128 wide) with Llama's choices: SwiGLU's 2/3 · 4C,
  // rounded to a multiple of 8, keeps the MLP's parameters close to GPT-2's 4C.
  "llama-tiny": {
    ...LLAMA_ARCHITECTURE,
    vocabSize: 257,
    blockSize: 64,
    nLayer: 4,
    nHead: 4,
    nKvHead: 2,
    nEmbd: 128,
    ffnHidden: 344,
    tieEmbeddings: false,
  },
  "smollm2-135m": {
    ...LLAMA_ARCHITECTURE,
    vocabSize: 49152,
    blockSize: 8192,
    nLayer: 30,
    nHead: 9,
    nKvHead: 3,
    nEmbd: 576,
    ffnHidden: 1536,
    ropeTheta: 100000,
    tieEmbeddings: true,
  },
  "tinyllama-1.1b": {
    ...LLAMA_ARCHITECTURE,
    vocabSize: 32000,
    blockSize: 2048,
    nLayer: 22,
    nHead: 32,
    nKvHead: 4,
    nEmbd: 2048,
    ffnHidden: 5632,
    ropeTheta: 10000,
    tieEmbeddings: false,
  },
  "llama-3.2-1b": {
    ...LLAMA_ARCHITECTURE,
    vocabSize: 128256,
    blockSize: 131072,
    nLayer: 16,
    nHead: 32,
    nKvHead: 8,
    nEmbd: 2048,
    ffnHidden: 8192,
    ropeTheta: 500000,
    ropeScaling: {
      ropeType: "llama3",
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    },
    tieEmbeddings: true,
  },
  "bert-base": {
    ...BERT_ARCHITECTURE,
    vocabSize: 30522,
    blockSize: 512,
    nLayer: 12,
    nHead: 12,
    nEmbd: 768,
  },
  // BERT-Tiny: 4.4M parameters, 3.9M of them the token table; a tokenizer of another size
  // replaces vocabSize.
  "bert-tiny": {
    ...BERT_ARCHITECTURE,
    vocabSize: 30522,
    blockSize: 512,
    nLayer: 2,
    nHead: 2,
    nEmbd: 128,
  },
};

/**
 * The largest value each integer field of a {@linkcode GPTConfig} may take: beyond any
 * published model, and small enough that no parameter or activation size computed from
 * them overflows, so a bad config fails here, by name, before anything is allocated.
 */
export const GPT_CONFIG_LIMITS = {
  vocabSize: 2 ** 24,
  blockSize: 2 ** 20,
  nLayer: 4096,
  nHead: 65536,
  nEmbd: 65536,
  ffnHidden: 2 ** 20,
  vocabMultiple: 65536,
  numTokenTypes: 65536,
  numLabels: 2 ** 20,
} as const satisfies Partial<Record<keyof GPTConfig, number>>;

/**
 * `v` when it is an integer in [1, max], else a DenotronError "`where`: `key` must be …".
 *
 * @param v the value to check
 * @param key the field's name in messages
 * @param max the largest value allowed
 * @param where what holds the field ("GPT config", "run/config.json")
 * @returns v
 */
export function boundedPositiveInt(v: unknown, key: string, max: number, where: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new DenotronError(
      `${where}: ${key} must be a positive integer, got ${fmtValue(v)}`,
    );
  }
  if (v > max) {
    throw new DenotronError(`${where}: ${key} ${v} is more than the limit of ${max}`);
  }
  return v;
}

/**
 * `v` when it is a layernorm epsilon that float32 holds as a positive number, at most 1.
 *
 * @param v the value to check
 * @param key the field's name in messages
 * @param where what holds the field
 * @returns v
 */
export function layerNormEpsilon(v: unknown, key: string, where: string): number {
  if (typeof v !== "number" || !(Math.fround(v) > 0 && v <= 1)) {
    throw new DenotronError(
      `${where}: ${key} must be a number in (0, 1] that float32 holds as positive, got ${
        fmtValue(v)
      }`,
    );
  }
  return v;
}

/**
 * Throws a DenotronError naming the first bad field of `c`.
 *
 * @param c the config to check
 */
export function validateGPTConfig(c: GPTConfig): void {
  const ints = ["vocabSize", "blockSize", "nLayer", "nHead", "nEmbd"] as const;
  for (const k of ints) boundedPositiveInt(c[k], k, GPT_CONFIG_LIMITS[k], "GPT config");
  if (c.nEmbd % c.nHead !== 0) {
    throw new DenotronError(`GPT config: nHead ${c.nHead} does not divide nEmbd ${c.nEmbd}`);
  }
  const kv = c.nKvHead ?? c.nHead;
  boundedPositiveInt(kv, "nKvHead", GPT_CONFIG_LIMITS.nHead, "GPT config");
  if (c.nHead % kv !== 0) {
    throw new DenotronError(
      `GPT config: nKvHead ${kv} must divide nHead ${c.nHead} (query heads share each ` +
        `key/value head in groups of nHead / nKvHead)`,
    );
  }
  const choice = (key: keyof GPTConfig, options: readonly unknown[]) => {
    const v = c[key];
    if (v !== undefined && !options.includes(v)) {
      throw new DenotronError(
        `GPT config: ${key} must be one of ${
          options.map((o) => JSON.stringify(o)).join(", ")
        }, got ${JSON.stringify(v)}`,
      );
    }
  };
  choice("normalization", ["layernorm", "rmsnorm"]);
  choice("positionEmbedding", ["learned", "rope"]);
  choice("activation", ["gelu", "swiglu"]);
  choice("bias", [true, false]);
  choice("tieEmbeddings", [true, false]);
  choice("attentionMask", ["causal", "padding"]);
  choice("normPosition", ["pre", "post"]);
  choice("gelu", ["tanh", "erf"]);
  for (const k of ["pooler", "outputTransform", "binaryHead"] as const) choice(k, [true, false]);
  for (const k of ["numTokenTypes", "numLabels"] as const) {
    const v = c[k] ?? 0;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new DenotronError(
        `GPT config: ${k} must be 0 (none) or a positive integer, got ${fmtValue(v)}`,
      );
    }
    if (v > 0) boundedPositiveInt(v, k, GPT_CONFIG_LIMITS[k], "GPT config");
  }
  for (const k of ["binaryHead", "numLabels"] as const) {
    if (c[k] && !c.pooler) {
      throw new DenotronError(
        `GPT config: ${k} ${c[k]} reads the pooled output; it needs pooler true`,
      );
    }
  }
  if (c.positionEmbedding === "rope") {
    if ((c.nEmbd / c.nHead) % 2 !== 0) {
      throw new DenotronError(
        `GPT config: rotary positions need an even head size, nEmbd / nHead is ${
          c.nEmbd / c.nHead
        }`,
      );
    }
    const theta = c.ropeTheta ?? 10000;
    if (typeof theta !== "number" || !(theta > 1 && theta < 1e12)) {
      throw new DenotronError(`GPT config: ropeTheta must be a number in (1, 1e12), got ${theta}`);
    }
    // the scaling's own fields are checked where the frequencies are made
    if (c.ropeScaling) ropeInvFreq(c.nEmbd / c.nHead, theta, c.ropeScaling);
  } else if (c.ropeScaling) {
    throw new DenotronError(`GPT config: ropeScaling needs positionEmbedding "rope"`);
  }
  const p = c.dropout ?? 0;
  if (typeof p !== "number" || !(p >= 0 && p < 1)) {
    throw new DenotronError(`GPT config: dropout must be in [0, 1), got ${String(p)}`);
  }
  const vm = c.vocabMultiple ?? 1;
  boundedPositiveInt(vm, "vocabMultiple", GPT_CONFIG_LIMITS.vocabMultiple, "GPT config");
  if (c.ffnHidden !== undefined) {
    boundedPositiveInt(c.ffnHidden, "ffnHidden", GPT_CONFIG_LIMITS.ffnHidden, "GPT config");
  }
  layerNormEpsilon(c.layerNormEps ?? 1e-5, "layerNormEps", "GPT config");
}

/**
 * `c` validated (validateGPTConfig), with every optional field's default filled in.
 *
 * @param c the config
 * @returns every field set
 */
export function gptConfigWithDefaults(c: GPTConfig): Required<GPTConfig> {
  validateGPTConfig(c);
  const defaults: Required<GPTConfig> = {
    ...c,
    dropout: 0,
    layerNormEps: 1e-5,
    ffnHidden: 4 * c.nEmbd,
    vocabMultiple: 1,
    normalization: "layernorm",
    positionEmbedding: "learned",
    ropeTheta: 10000,
    ropeScaling: null,
    activation: "gelu",
    nKvHead: c.nHead,
    bias: true,
    tieEmbeddings: true,
    attentionMask: "causal",
    normPosition: "pre",
    numTokenTypes: 0,
    gelu: "tanh",
    pooler: false,
    outputTransform: false,
    binaryHead: false,
    numLabels: 0,
  };
  const given = Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined));
  return { ...defaults, ...given };
}

/**
 * Whether `c` is GPT-2's architecture: every Llama-family and encoder switch at its
 * default.
 *
 * @param c a config with defaults filled in
 * @returns true for GPT-2's choices
 */
export function isGpt2Architecture(c: Required<GPTConfig>): boolean {
  return c.normalization === "layernorm" && c.positionEmbedding === "learned" &&
    c.activation === "gelu" && c.nKvHead === c.nHead && c.bias && c.tieEmbeddings &&
    !isEncoder(c) && c.normPosition === "pre" && c.numTokenTypes === 0 && c.gelu === "tanh" &&
    !c.pooler && !c.outputTransform && !c.binaryHead && c.numLabels === 0;
}

/**
 * Whether `c` describes an encoder: attention that reads both ways (BERT).
 *
 * @param c a config
 * @returns true when attentionMask is "padding"
 */
export function isEncoder(c: GPTConfig): boolean {
  return c.attentionMask === "padding";
}

/**
 * The choices of a config that are not GPT-2's, for one-line descriptions.
 *
 * @param c a config with defaults filled in
 * @returns e.g. "rmsnorm rope swiglu kv heads=2 no biases untied head", or "" for GPT-2
 */
export function describeArchitecture(c: Required<GPTConfig>): string {
  if (isGpt2Architecture(c)) return "";
  const parts = [c.normalization, c.positionEmbedding === "rope" ? "rope" : "learned positions"];
  parts.push(c.activation === "gelu" && c.gelu === "erf" ? "gelu (erf)" : c.activation);
  if (c.nKvHead !== c.nHead) parts.push(`kv heads=${c.nKvHead}`);
  if (!c.bias) parts.push("no biases");
  if (!c.tieEmbeddings) parts.push("untied head");
  if (isEncoder(c)) parts.push("bidirectional");
  if (c.normPosition === "post") parts.push("post-LN");
  if (c.numTokenTypes) parts.push(`token types=${c.numTokenTypes}`);
  const heads = [
    c.pooler && "pooler",
    c.outputTransform && "MLM head",
    c.binaryHead && "binary head",
    c.numLabels && `classifier of ${c.numLabels}`,
  ].filter(Boolean);
  if (heads.length) parts.push(heads.join(", "));
  return parts.join(" ");
}
