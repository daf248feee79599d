/**
 * defines: GPTConfig, GPT_PRESETS, GPT — one decoder-only transformer, configurable like
 * Megatron's transformer config: GPT-2 (learned positions, LayerNorm, GELU MLP, biases,
 * output layer tied to the token embedding) is its default, and Llama-family models
 * (RMSNorm, rotary positions with optional Llama 3 scaling, SwiGLU, grouped-query
 * attention, no biases, an untied output layer) are presets of the same class.
 *
 * Parameter names are the same for every variant where the tensor exists: `emb.wte`,
 * `emb.wpe` (learned positions only), `h.N.ln1.weight`, `h.N.ln1.bias` (LayerNorm only),
 * `h.N.attn.qkv.weight` ((nHead + 2·nKvHead)·headDim rows: queries, keys, values),
 * `h.N.attn.proj.weight`, `h.N.mlp.fc.weight` (SwiGLU: 2·ffnHidden rows, gate then up),
 * `h.N.mlp.proj.weight`, `lnf.weight`, and `head.weight` when the output layer is untied;
 * `.bias` beside each Linear's weight when biases are on.
 *
 * @module
 */
import type { SequenceLayout } from "./attention.ts";
import { type Device, device as getDevice } from "../device.ts";
import { DenotronError, fmtValue } from "../errors.ts";
import { crossEntropy } from "../ops/crossentropy.ts";
import { dropout } from "../ops/elementwise.ts";
import { linear } from "../ops/matmul.ts";
import { ropeInvFreq, type RopeScaling } from "../ops/rope.ts";
import { Generator } from "../random.ts";
import { type DType, Tensor } from "../tensor.ts";
import { Block } from "./block.ts";
import { Embedding, Linear, makeNorm, type Norm } from "./layers.ts";
import { FlatParameters, Module } from "./module.ts";
import { checkpoint, recomputeGroups, type RecomputeOptions } from "./recompute.ts";

/** The shape of a GPT. Names follow nanoGPT / Hugging Face's GPT2Config. */
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
 * GPT-2's published sizes, Llama-family shapes (SmolLM2-135M, TinyLlama-1.1B,
 * Llama-3.2-1B, as in their Hugging Face config.json files), and tiny models for tests
 * and laptops.
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

/** Throws a DenotronError naming the first bad field of `c`. */
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

/** `c` validated (validateGPTConfig), with every optional field's default filled in. */
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
  };
  const given = Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined));
  return { ...defaults, ...given };
}

/** Whether `c` is GPT-2's architecture (every Llama-family switch at its default). */
export function isGpt2Architecture(c: Required<GPTConfig>): boolean {
  return c.normalization === "layernorm" && c.positionEmbedding === "learned" &&
    c.activation === "gelu" && c.nKvHead === c.nHead && c.bias && c.tieEmbeddings;
}

/**
 * The rotary frequencies every block of a model of `c` shares, (headDim/2) f32 on
 * `device`; null with learned positions. The caller owns (and disposes) the tensor.
 */
export function ropeFrequencies(c: Required<GPTConfig>, device: Device): Tensor | null {
  if (c.positionEmbedding !== "rope") return null;
  const hs = c.nEmbd / c.nHead;
  const f = ropeInvFreq(hs, c.ropeTheta, c.ropeScaling ?? undefined);
  return Tensor.fromArray(f, [hs / 2], { device });
}

/**
 * Which blocks one training forward runs (progressive layer dropping, see
 * lib/curriculum/layer_drop.ts): a dropped block is the identity, a kept one
 * scales its residual branches.
 */
export interface LayerPlan {
  /** keep[i] for block i. (nLayer) */
  keep: boolean[];
  /** The residual-branch scale of each kept block. (nLayer) */
  scale: number[];
}

/**
 * Counters of the dropout stream that one training forward of a (B, T) micro-batch takes:
 * the embedding's output and the two residual branches of every block that runs, (B, T, C)
 * each. Parallel trainers place each micro-batch at the offset one process would reach.
 *
 * @param layers the step's layer plan (dropped blocks take none) @default every block
 */
export function dropoutDraws(
  c: Pick<GPTConfig, "nLayer" | "nEmbd">,
  B: number,
  T: number,
  layers?: LayerPlan | null,
): number {
  const kept = layers ? layers.keep.filter((k) => k).length : c.nLayer;
  return (1 + 2 * kept) * B * T * c.nEmbd;
}

/** Options for building a {@linkcode GPT}. */
export interface GPTOptions {
  /** Where the parameters live. @default device() */
  device?: Device;
  /** Seeds the weights and the dropout stream. @default 1337 */
  seed?: number;
  /**
   * Parameter dtype; activations follow it. With "bf16" or "f16" the gradients are
   * fp32 main gradients (see {@linkcode FlatParameters}); train with
   * MixedPrecisionAdamW. @default "f32"
   */
  dtype?: DType;
}

/**
 * A GPT-2 language model whose parameters live in one flat buffer.
 *
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "./gpt.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * console.log(model.numParameters());
 * model.dispose();
 * ```
 */
export class GPT extends Module {
  /** The configuration with defaults filled in. */
  readonly config: Required<GPTConfig>;
  /** Token and position embeddings. */
  readonly emb: Embedding;
  /** The transformer blocks, `h.0` first. */
  readonly blocks: Block[];
  /** The final normalisation. */
  readonly lnf: Norm;
  /** The output layer when untied ((Vp, C), no bias); null: the token embedding is it. */
  readonly head: Linear | null;
  /** Rotary frequencies (headDim/2, f32) shared by every block; null: learned positions. */
  readonly ropeFreq: Tensor | null;
  /** The flat parameter and gradient buffers. */
  readonly params: FlatParameters;
  /** The dropout stream. */
  readonly rng: Generator;
  /**
   * Activation recomputation (Megatron's): "full" keeps only the input of each group of
   * blocks and reruns the group in backward with the same dropout counters; "selective"
   * reruns the core attention only. Losses and gradients are unchanged. null: off.
   */
  get recompute(): RecomputeOptions | null {
    return this.#recompute;
  }
  set recompute(o: RecomputeOptions | null) {
    recomputeGroups(this.blocks.length, o); // checks the options
    this.#recompute = o;
    for (const b of this.blocks) b.attn.recomputeCoreAttention = o?.granularity === "selective";
  }
  #recompute: RecomputeOptions | null = null;

  /** Creates and initialises the model (GPT-2's initialisation, seeded). */
  constructor(config: GPTConfig, opts: GPTOptions = {}) {
    super();
    const c = gptConfigWithDefaults(config);
    this.config = c;
    const device = opts.device ?? getDevice();
    const seed = opts.seed ?? 1337;
    const dtype = opts.dtype ?? "f32";
    // GPT-2 scales the init of the projections that feed the residual stream by
    // 1/sqrt(2·layers), so the stream's variance does not grow with depth.
    const projStd = 0.02 / Math.sqrt(2 * c.nLayer);
    const rotary = c.positionEmbedding === "rope";
    this.emb = this.child(
      "emb",
      new Embedding(c.vocabSize, rotary ? 0 : c.blockSize, c.nEmbd, {
        device,
        dtype,
        rows: paddedVocabSize(c),
      }),
    );
    this.ropeFreq = ropeFrequencies(c, device);
    this.blocks = [];
    for (let i = 0; i < c.nLayer; i++) {
      this.blocks.push(this.child(
        `h.${i}`,
        new Block({
          width: c.nEmbd,
          nHead: c.nHead,
          hidden: c.ffnHidden,
          dropout: c.dropout,
          eps: c.layerNormEps,
          projStd,
          device,
          dtype,
          normalization: c.normalization,
          activation: c.activation,
          nKvHead: c.nKvHead,
          bias: c.bias,
          rope: this.ropeFreq,
        }),
      ));
    }
    const norm = { eps: c.layerNormEps, device, dtype };
    this.lnf = this.child("lnf", makeNorm(c.normalization, c.nEmbd, norm));
    this.head = c.tieEmbeddings ? null : this.child(
      "head",
      new Linear(c.nEmbd, paddedVocabSize(c), { bias: false, device, dtype }),
    );
    this.params = new FlatParameters(this, device, seed);
    this.rng = new Generator(seed);
  }

  /** The device the parameters live on. */
  get device(): Device {
    return this.params.data.device;
  }

  /**
   * Logits of the next token at every position.
   *
   * @param tokens int32 (B,T) with T <= blockSize
   * @param layers blocks to run and their scales; ignored in eval mode, which
   *   always runs every block @default every block
   * @returns (B,T,V), or (B,T,Vp) with a padded vocabulary (see
   *   {@linkcode GPTConfig.vocabMultiple}): columns V..Vp-1 are padding, logits 0 that
   *   are no token's
   * @param layout documents packed into each row ({@linkcode sequenceLayout}): positions
   *   restart and attention stays inside each document @default one sequence per row
   */
  forward(tokens: Tensor, layers?: LayerPlan, layout?: SequenceLayout): Tensor {
    const p = this.training ? this.config.dropout : 0;
    const plan = this.training ? layers : undefined;
    if (
      plan && (plan.keep.length !== this.blocks.length || plan.scale.length !== plan.keep.length)
    ) {
      throw new DenotronError(
        `GPT.forward: the layer plan covers ${plan.keep.length} blocks, the model has ${this.blocks.length}`,
      );
    }
    let x = dropout(this.emb.forward(tokens, layout?.positions), p, this.rng); // (B,T,C)
    const run = [...this.blocks.keys()].filter((i) => !plan || plan.keep[i]);
    const block = (j: number, h: Tensor) => {
      const i = run[j];
      return this.blocks[i].forward(h, this.rng, plan?.scale[i] ?? 1, layout);
    };
    // Each recomputed group keeps only its input; its inside runs again in backward.
    const groups = new Map(recomputeGroups(run.length, this.#recompute).map((g) => [g[0], g]));
    for (let j = 0; j < run.length;) {
      const g = groups.get(j);
      if (g) {
        x = checkpoint(x, (h) => g.reduce((a, q) => block(q, a), h), this.rng);
        j += g.length;
      } else {
        x = block(j++, x);
      }
    }
    x = this.lnf.forward(x);
    return linear(x, this.outputWeight, null); // (B,T,Vp)
  }

  /** The output layer's weight (Vp, C): the token embedding when tied. */
  get outputWeight(): Tensor {
    return this.head?.weight ?? this.emb.wte;
  }

  /**
   * Mean next-token cross-entropy.
   *
   * @param tokens int32 (B,T)
   * @param targets int32 (B,T); -1 marks positions that do not count
   * @param layers see {@linkcode GPT.forward}
   * @param layout see {@linkcode GPT.forward}
   * @returns a one-element tensor
   */
  loss(tokens: Tensor, targets: Tensor, layers?: LayerPlan, layout?: SequenceLayout): Tensor {
    return crossEntropy(this.forward(tokens, layers, layout), targets, {
      classes: this.config.vocabSize,
    });
  }

  /** Frees the parameter buffers. Safe to call twice. */
  dispose(): void {
    if (!this.params.data.disposed) this.params.dispose();
    if (this.ropeFreq && !this.ropeFreq.disposed) this.ropeFreq.dispose();
  }

  /** Frees the parameters (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** One line: shape, parameter count and device. */
  override toString(): string {
    const c = this.config;
    const padded = paddedVocabSize(c);
    const vocab = padded === c.vocabSize ? `${c.vocabSize}` : `${c.vocabSize} (padded ${padded})`;
    const llama = isGpt2Architecture(c) ? "" : `${describeArchitecture(c)}, `;
    return `GPT(layers=${c.nLayer}, heads=${c.nHead}, width=${c.nEmbd}, vocab=${vocab}, ` +
      `positions=${c.blockSize}, ${llama}${
        this.numParameters().toLocaleString("en-US")
      } parameters, on ${this.device.name})`;
  }
}

/** The non-GPT-2 choices of a config, for one-line descriptions. */
function describeArchitecture(c: Required<GPTConfig>): string {
  const parts = [c.normalization, c.positionEmbedding === "rope" ? "rope" : "learned positions"];
  parts.push(c.activation);
  if (c.nKvHead !== c.nHead) parts.push(`kv heads=${c.nKvHead}`);
  if (!c.bias) parts.push("no biases");
  if (!c.tieEmbeddings) parts.push("untied head");
  return parts.join(" ");
}
