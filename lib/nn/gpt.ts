/**
 * defines: GPTConfig, GPT_PRESETS, GPT — the GPT-2 architecture: learned positions,
 * pre-LN blocks, a final LN, and an output layer tied to the token embedding.
 *
 * @module
 */
import { type Device, device as getDevice } from "../device.ts";
import { DenotronError } from "../errors.ts";
import { crossEntropy } from "../ops/crossentropy.ts";
import { dropout } from "../ops/elementwise.ts";
import { linear } from "../ops/matmul.ts";
import { Generator } from "../random.ts";
import type { DType, Tensor } from "../tensor.ts";
import { Block } from "./block.ts";
import { Embedding, LayerNorm } from "./layers.ts";
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
  /** Layernorm epsilon. @default 1e-5 */
  layerNormEps?: number;
  /** MLP hidden width. @default 4 · nEmbd */
  ffnHidden?: number;
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

/** GPT-2's published sizes and a tiny model for tests and laptops. */
export const GPT_PRESETS: Record<string, GPTConfig> = {
  "gpt2": { vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768 },
  "gpt2-medium": { vocabSize: 50257, blockSize: 1024, nLayer: 24, nHead: 16, nEmbd: 1024 },
  "gpt2-large": { vocabSize: 50257, blockSize: 1024, nLayer: 36, nHead: 20, nEmbd: 1280 },
  "gpt2-xl": { vocabSize: 50257, blockSize: 1024, nLayer: 48, nHead: 25, nEmbd: 1600 },
  "tiny": { vocabSize: 257, blockSize: 64, nLayer: 2, nHead: 2, nEmbd: 32 },
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
      `${where}: ${key} must be a positive integer, got ${JSON.stringify(v)}`,
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
        JSON.stringify(v)
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
  return { dropout: 0, layerNormEps: 1e-5, ffnHidden: 4 * c.nEmbd, vocabMultiple: 1, ...c };
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
  /** The final layernorm. */
  readonly lnf: LayerNorm;
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
    this.emb = this.child(
      "emb",
      new Embedding(c.vocabSize, c.blockSize, c.nEmbd, {
        device,
        dtype,
        rows: paddedVocabSize(c),
      }),
    );
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
        }),
      ));
    }
    this.lnf = this.child("lnf", new LayerNorm(c.nEmbd, { eps: c.layerNormEps, device, dtype }));
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
   */
  forward(tokens: Tensor, layers?: LayerPlan): Tensor {
    const p = this.training ? this.config.dropout : 0;
    const plan = this.training ? layers : undefined;
    if (
      plan && (plan.keep.length !== this.blocks.length || plan.scale.length !== plan.keep.length)
    ) {
      throw new DenotronError(
        `GPT.forward: the layer plan covers ${plan.keep.length} blocks, the model has ${this.blocks.length}`,
      );
    }
    let x = dropout(this.emb.forward(tokens), p, this.rng); // (B,T,C)
    const run = [...this.blocks.keys()].filter((i) => !plan || plan.keep[i]);
    const block = (j: number, h: Tensor) => {
      const i = run[j];
      return this.blocks[i].forward(h, this.rng, plan?.scale[i] ?? 1);
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
    return linear(x, this.emb.wte, null); // tied output layer: (B,T,Vp)
  }

  /**
   * Mean next-token cross-entropy.
   *
   * @param tokens int32 (B,T)
   * @param targets int32 (B,T); -1 marks positions that do not count
   * @param layers see {@linkcode GPT.forward}
   * @returns a one-element tensor
   */
  loss(tokens: Tensor, targets: Tensor, layers?: LayerPlan): Tensor {
    return crossEntropy(this.forward(tokens, layers), targets, {
      classes: this.config.vocabSize,
    });
  }

  /** Frees the parameter buffers. Safe to call twice. */
  dispose(): void {
    if (!this.params.data.disposed) this.params.dispose();
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
    return `GPT(layers=${c.nLayer}, heads=${c.nHead}, width=${c.nEmbd}, vocab=${vocab}, ` +
      `positions=${c.blockSize}, ${
        this.numParameters().toLocaleString("en-US")
      } parameters, on ${this.device.name})`;
  }
}
