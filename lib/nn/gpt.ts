/**
 * defines: GPT, GPTOptions, ForwardOptions, PretrainingBatch, PretrainingLoss, LayerPlan,
 * dropoutDraws, ropeFrequencies — the one transformer, configured (lib/nn/gpt_config.ts)
 * into a GPT-2 decoder (its defaults), a Llama-family decoder (RMSNorm, rotary positions
 * with optional Llama 3 scaling, SwiGLU, grouped-query attention, no biases, an untied
 * output layer) or a BERT encoder (bidirectional attention over each row's valid tokens,
 * post-LN blocks, token types, the exact GELU, the pooler and its heads).
 *
 * Parameter names are the same for every variant where the tensor exists: `emb.wte`,
 * `emb.wpe` (learned positions only), `emb.wtt` (token types), `emb.ln.weight`,
 * `emb.ln.bias` (post-LN: the embeddings' LayerNorm), `h.N.ln1.weight`, `h.N.ln1.bias`
 * (LayerNorm only; post-LN: after the attention residual), `h.N.attn.qkv.weight`
 * ((nHead + 2·nKvHead)·headDim rows: queries, keys, values), `h.N.attn.proj.weight`,
 * `h.N.ln2.*` (post-LN: after the MLP residual), `h.N.mlp.fc.weight` (SwiGLU: 2·ffnHidden
 * rows, gate then up), `h.N.mlp.proj.weight`, `lnf.weight` (pre-LN only), `head.weight`
 * when the output layer is untied, `pooler.dense.*`, `mlm.dense.*`, `mlm.ln.*`,
 * `mlm.bias` (the logits' bias), `binary.*` (2 rows) and `classifier.*` (numLabels rows);
 * `.bias` beside each Linear's weight when biases are on (the heads always have them).
 *
 * @module
 */
import { paddingLayout, type SequenceLayout } from "./attention.ts";
import { type Device, device as getDevice } from "../device.ts";
import { DenotronError } from "../errors.ts";
import { crossEntropy } from "../ops/crossentropy.ts";
import { gatherRows } from "../ops/embedding.ts";
import { add, dropout } from "../ops/elementwise.ts";
import { linear } from "../ops/matmul.ts";
import { ropeInvFreq } from "../ops/rope.ts";
import { Generator } from "../random.ts";
import { type DType, Tensor } from "../tensor.ts";
import { Block } from "./block.ts";
import {
  describeArchitecture,
  type GPTConfig,
  gptConfigWithDefaults,
  paddedVocabSize,
} from "./gpt_config.ts";
import { MaskedLMHead, maskedRows, Pooler } from "./heads.ts";
import { Embedding, Linear, makeNorm, type Norm } from "./layers.ts";
import { FlatParameters, Module } from "./module.ts";
import { checkpoint, recomputeGroups, type RecomputeOptions } from "./recompute.ts";

export {
  BERT_ARCHITECTURE,
  boundedPositiveInt,
  describeArchitecture,
  GPT_CONFIG_LIMITS,
  GPT_PRESETS,
  type GPTConfig,
  gptConfigWithDefaults,
  isEncoder,
  isGpt2Architecture,
  layerNormEpsilon,
  LLAMA_ARCHITECTURE,
  paddedVocabSize,
  validateGPTConfig,
} from "./gpt_config.ts";

/**
 * The rotary frequencies every block of a model of `c` shares, (headDim/2) f32 on
 * `device`; null with learned positions. The caller owns (and disposes) the tensor.
 *
 * @param c the config
 * @param device where the tensor goes
 * @returns the frequencies, or null
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
 * each, and with a classification head its pooled input, (B, C). Parallel trainers place
 * each micro-batch at the offset one process would reach.
 *
 * @param c the model's shape
 * @param B rows of the micro-batch
 * @param T its sequence length
 * @param layers the step's layer plan (dropped blocks take none) @default every block
 * @returns the counters taken
 */
export function dropoutDraws(
  c: Pick<GPTConfig, "nLayer" | "nEmbd" | "numLabels">,
  B: number,
  T: number,
  layers?: LayerPlan | null,
): number {
  const kept = layers ? layers.keep.filter((k) => k).length : c.nLayer;
  const classifier = (c.numLabels ?? 0) > 0 ? B * c.nEmbd : 0;
  return (1 + 2 * kept) * B * T * c.nEmbd + classifier;
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

/** What a forward pass reads beside the tokens. */
export interface ForwardOptions {
  /** int32 (B,T): each token's segment, in [0, numTokenTypes). @default all 0 */
  tokenTypes?: Tensor;
  /**
   * How the tokens of each row see each other: documents packed into rows
   * ({@linkcode sequenceLayout}), or an encoder's valid tokens and padding
   * ({@linkcode paddingLayout}). @default decoders: one causal sequence per row;
   * encoders: all T tokens of each row valid
   */
  layout?: SequenceLayout;
  /**
   * Blocks to run and their scales; ignored in eval mode, which always runs every block.
   * @default every block
   */
  layers?: LayerPlan;
}

/** One batch of BERT pretraining (Megatron's BERT: masked LM and the binary head). */
export interface PretrainingBatch {
  /** int32 (B,T): the masked tokens. */
  tokens: Tensor;
  /** int32 (B,T): segment A (0) or B (1) of each token. @default all 0 */
  tokenTypes?: Tensor;
  /** Each row's valid tokens ({@linkcode paddingLayout}). @default all T valid */
  layout?: SequenceLayout;
  /** int32 (B,T): the original token at each masked position, -1 elsewhere. */
  mlmTargets: Tensor;
  /**
   * The same values on the host, when the caller has them (a batch does): the masked
   * positions are then found without reading the device. @default read from mlmTargets
   */
  mlmTargetValues?: Int32Array;
  /**
   * int32 (B): the binary head's label of each row (sentence order: 1 when swapped;
   * next sentence: 1 when random); required exactly when the model has a binary head.
   */
  sentenceLabels?: Tensor;
}

/** {@linkcode GPT.pretrainingLoss}'s result: the loss, and each of its parts for logging. */
export interface PretrainingLoss {
  /** mlm + sop: a one-element tensor to backpropagate. */
  loss: Tensor;
  /** Mean cross-entropy over the masked positions (one element). */
  mlm: Tensor;
  /** Mean cross-entropy of the binary head (one element); null without one. */
  sop: Tensor | null;
  /** The masked-LM logits at the masked positions (M,Vp), for accuracy; only when asked for. */
  mlmLogits?: Tensor;
  /** The original tokens at those positions (M); with mlmLogits. */
  mlmLabels?: Int32Array;
  /** The binary head's logits (B,2); only when asked for and the model has the head. */
  binaryLogits?: Tensor;
}

/**
 * The transformer, decoder or encoder, whose parameters live in one flat buffer.
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
  /** Token, position and token-type embeddings (and, post-LN, their LayerNorm). */
  readonly emb: Embedding;
  /** The transformer blocks, `h.0` first. */
  readonly blocks: Block[];
  /** The output layer when untied ((Vp, C), no bias); null: the token embedding is it. */
  readonly head: Linear | null;
  /** BERT's pooler; null without one. */
  readonly pooler: Pooler | null;
  /** BERT's masked-LM transform and output bias; null: the output layer alone. */
  readonly mlm: MaskedLMHead | null;
  /** The binary head (C → 2) on the pooled output; null without one. */
  readonly binary: Linear | null;
  /** The classification head (C → numLabels) on the pooled output; null without one. */
  readonly classifier: Linear | null;
  /** Rotary frequencies (headDim/2, f32) shared by every block; null: learned positions. */
  readonly ropeFreq: Tensor | null;
  /** The flat parameter and gradient buffers. */
  readonly params: FlatParameters;
  /** The dropout stream. */
  readonly rng: Generator;
  readonly #lnf: Norm | null;
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
    const post = c.normPosition === "post";
    this.emb = this.child(
      "emb",
      new Embedding(c.vocabSize, rotary ? 0 : c.blockSize, c.nEmbd, {
        device,
        dtype,
        rows: paddedVocabSize(c),
        tokenTypes: c.numTokenTypes,
        norm: post ? { eps: c.layerNormEps } : undefined,
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
          gelu: c.gelu,
          normPosition: c.normPosition,
          nKvHead: c.nKvHead,
          bias: c.bias,
          rope: this.ropeFreq,
        }),
      ));
    }
    const norm = { eps: c.layerNormEps, device, dtype };
    // post-LN normalises each block's output already: no final norm
    this.#lnf = post ? null : this.child("lnf", makeNorm(c.normalization, c.nEmbd, norm));
    this.head = c.tieEmbeddings ? null : this.child(
      "head",
      new Linear(c.nEmbd, paddedVocabSize(c), { bias: false, device, dtype }),
    );
    const o = { device, dtype };
    this.pooler = c.pooler ? this.child("pooler", new Pooler(c.nEmbd, o)) : null;
    this.mlm = c.outputTransform
      ? this.child(
        "mlm",
        new MaskedLMHead(c.nEmbd, paddedVocabSize(c), { ...o, eps: c.layerNormEps, gelu: c.gelu }),
      )
      : null;
    this.binary = c.binaryHead ? this.child("binary", new Linear(c.nEmbd, 2, o)) : null;
    this.classifier = c.numLabels > 0
      ? this.child("classifier", new Linear(c.nEmbd, c.numLabels, o))
      : null;
    this.params = new FlatParameters(this, device, seed);
    this.rng = new Generator(seed);
  }

  /** The device the parameters live on. */
  get device(): Device {
    return this.params.data.device;
  }

  /** The final normalisation of a pre-LN model; a post-LN model (BERT) has none. */
  get lnf(): Norm {
    if (!this.#lnf) {
      throw new DenotronError(
        `GPT: a model with normPosition "post" has no final norm (lnf); its blocks end normalised`,
      );
    }
    return this.#lnf;
  }

  /**
   * Logits at every position: of the next token (decoders), or of the masked token
   * (encoders, through the masked-LM head when there is one).
   *
   * @param tokens int32 (B,T) with T <= blockSize
   * @param layers blocks to run and their scales; ignored in eval mode, which
   *   always runs every block @default every block
   * @param layout documents packed into each row ({@linkcode sequenceLayout}), or an
   *   encoder's padding ({@linkcode paddingLayout}) @default one sequence per row
   * @returns (B,T,V), or (B,T,Vp) with a padded vocabulary (see
   *   {@linkcode GPTConfig.vocabMultiple}): columns V..Vp-1 are padding, logits 0 that
   *   are no token's
   */
  forward(tokens: Tensor, layers?: LayerPlan, layout?: SequenceLayout): Tensor {
    return this.lmLogits(this.hiddenStates(tokens, { layers, layout }));
  }

  /**
   * The last hidden states: after the last block (and, pre-LN, the final norm), before any
   * head. Hugging Face's `last_hidden_state`.
   *
   * @param tokens int32 (B,T) with T <= blockSize
   * @param o token types, layout and layer plan
   * @returns (B,T,C)
   */
  hiddenStates(tokens: Tensor, o: ForwardOptions = {}): Tensor {
    const p = this.training ? this.config.dropout : 0;
    const plan = this.training ? o.layers : undefined;
    if (
      plan && (plan.keep.length !== this.blocks.length || plan.scale.length !== plan.keep.length)
    ) {
      throw new DenotronError(
        `GPT.forward: the layer plan covers ${plan.keep.length} blocks, the model has ${this.blocks.length}`,
      );
    }
    let x = dropout(this.emb.forward(tokens, o.layout?.positions, o.tokenTypes), p, this.rng);
    const [B, T] = tokens.shape;
    // An encoder without a layout reads every token of its row, both ways.
    const own = !o.layout && this.config.attentionMask === "padding"
      ? paddingLayout(new Array(B).fill(T), T, this.device)
      : null;
    const layout = o.layout ?? own ?? undefined;
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
    // backward reads the spans; without a graph nothing does
    if (own && !x.requiresGrad) {
      own.positions.dispose();
      own.spans.dispose();
    }
    return this.#lnf ? this.#lnf.forward(x) : x; // (B,T,C)
  }

  /**
   * The output layer over hidden states: the masked-LM head when the model has one (BERT),
   * else the output weight alone.
   *
   * @param hidden (..., C) from {@linkcode GPT.hiddenStates}
   * @returns (..., Vp)
   */
  lmLogits(hidden: Tensor): Tensor {
    return this.mlm
      ? this.mlm.forward(hidden, this.outputWeight)
      : linear(hidden, this.outputWeight, null);
  }

  /**
   * The pooler's output: tanh(dense(h)) of each row's first token ([CLS]).
   *
   * @param hidden (B,T,C) from {@linkcode GPT.hiddenStates}
   * @returns (B,C)
   */
  pooled(hidden: Tensor): Tensor {
    return this.#need(this.pooler, "pooler", "pooled").forward(hidden);
  }

  /**
   * The binary (sentence-order / next-sentence) head's logits.
   *
   * @param pooled (B,C) from {@linkcode GPT.pooled}
   * @returns (B,2)
   */
  binaryLogits(pooled: Tensor): Tensor {
    return this.#need(this.binary, "binaryHead", "binaryLogits").forward(pooled);
  }

  /**
   * The classification head's logits, after dropout on the pooled output.
   *
   * @param pooled (B,C) from {@linkcode GPT.pooled}
   * @returns (B,numLabels)
   */
  classifierLogits(pooled: Tensor): Tensor {
    const head = this.#need(this.classifier, "numLabels", "classifierLogits");
    const p = this.training ? this.config.dropout : 0;
    return head.forward(dropout(pooled, p, this.rng));
  }

  /**
   * Logits of a sequence-classification model: hidden states, pooler, classifier.
   *
   * @param tokens int32 (B,T)
   * @param o token types and layout (padding)
   * @returns (B,numLabels)
   */
  classify(tokens: Tensor, o: ForwardOptions = {}): Tensor {
    return this.classifierLogits(this.pooled(this.hiddenStates(tokens, o)));
  }

  /**
   * Mean cross-entropy of the classification head.
   *
   * @param tokens int32 (B,T)
   * @param labels int32 (B), each in [0, numLabels) (-1: not counted)
   * @param o token types and layout (padding)
   * @returns a one-element tensor
   */
  classificationLoss(tokens: Tensor, labels: Tensor, o: ForwardOptions = {}): Tensor {
    return crossEntropy(this.classify(tokens, o), labels);
  }

  /** The output layer's weight (Vp, C): the token embedding when tied. */
  get outputWeight(): Tensor {
    return this.head?.weight ?? this.emb.wte;
  }

  /**
   * Mean cross-entropy of the logits against targets: the next-token loss of a decoder,
   * or an encoder's masked-LM loss alone.
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

  /**
   * BERT's pretraining loss: the masked-LM cross-entropy over the masked positions plus
   * the binary head's cross-entropy (Megatron's lm loss + sop loss), each part returned
   * for logging.
   *
   * @param batch tokens, token types, padding, and both kinds of targets
   * @param layers see {@linkcode GPT.forward}
   * @param withLogits also return the logits (an evaluation's accuracy) @default false
   * @returns the total and its parts
   */
  pretrainingLoss(
    batch: PretrainingBatch,
    layers?: LayerPlan,
    withLogits = false,
  ): PretrainingLoss {
    if (!this.binary !== !batch.sentenceLabels) {
      throw new DenotronError(
        this.binary
          ? "GPT.pretrainingLoss: the model has a binary head; the batch needs sentenceLabels"
          : "GPT.pretrainingLoss: sentenceLabels given, but the model has no binary head",
      );
    }
    const { tokenTypes, layout } = batch;
    const h = this.hiddenStates(batch.tokens, { tokenTypes, layout, layers });
    const targets = batch.mlmTargetValues ?? batch.mlmTargets.toArray() as Int32Array;
    const rows = maskedRows(targets, h.device);
    const mlmLogits = this.lmLogits(gatherRows(h, rows.index)); // (M, Vp)
    const mlm = crossEntropy(mlmLogits, rows.labels, { classes: this.config.vocabSize });
    const mlmLabels = rows.labelValues;
    const kept = withLogits ? { mlmLogits, mlmLabels } : {};
    if (!this.binary) return { loss: mlm, mlm, sop: null, ...kept };
    const binaryLogits = this.binaryLogits(this.pooled(h));
    const sop = crossEntropy(binaryLogits, batch.sentenceLabels!);
    return { loss: add(mlm, sop), mlm, sop, ...kept, ...(withLogits ? { binaryLogits } : {}) };
  }

  /** `part`, or a sentence naming the config field that would create it. */
  #need<T>(part: T | null, field: keyof GPTConfig, method: string): T {
    if (!part) {
      throw new DenotronError(`GPT.${method}: the model has no ${field} (set it in the config)`);
    }
    return part;
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
    const arch = describeArchitecture(c);
    return `GPT(layers=${c.nLayer}, heads=${c.nHead}, width=${c.nEmbd}, vocab=${vocab}, ` +
      `positions=${c.blockSize}, ${arch ? `${arch}, ` : ""}${
        this.numParameters().toLocaleString("en-US")
      } parameters, on ${this.device.name})`;
  }
}
