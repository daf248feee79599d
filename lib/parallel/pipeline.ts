/**
 * defines: PipelineGPTOptions, PipelineGPT, MicroBatch, VocabTables, runPipeline,
 *          TensorParallelGPTOptions, TensorParallelGPT, EncoderLoss, ChunkOptions
 *
 * Pipeline parallelism: a rank of the pipeline group holds the layers of its virtual
 * stages (chunk c of rank r is virtual stage c·p + r; each holds L/(p·v) consecutive
 * layers), the first virtual stage also the embeddings, the last the final layernorm and
 * the output layer. A tied output layer is the token embedding: that table lives on both
 * the first and the last stage and their gradients are summed over the embedding group,
 * so the two copies stay equal; an untied one (`head`) lives on the last stage only.
 * Within a stage the layers are tensor-parallel (tp_gpt.ts).
 *
 * {@linkcode runPipeline} runs one training step's forward and backward passes by a
 * schedule of schedules.ts, sending activations forward and gradients backward through
 * the pipeline group in the order of `planCommunication`. Like Megatron's schedules it
 * frees each micro-batch's forward tensors as soon as that micro-batch's backward has run,
 * so a stage holds only the micro-batches in flight (1F1B: at most p − stage), and its
 * micro-batches read one padded copy of each vocabulary shard made at the start of the
 * step (see {@linkcode VocabTables}).
 *
 * @module
 */
import { backward } from "../autograd.ts";
import { type Device, device as getDevice } from "../device.ts";
import { DenotronError } from "../errors.ts";
import {
  dropoutDraws,
  type GPTConfig,
  gptConfigWithDefaults,
  type GPTOptions,
  isEncoder,
  type LayerPlan,
  ropeFrequencies,
} from "../nn/gpt.ts";
import { paddingLayout, type SequenceLayout } from "../nn/attention.ts";
import { type MaskedLMHead, maskedRows, Pooler } from "../nn/heads.ts";
import { Linear, type Norm } from "../nn/layers.ts";
import { crossEntropy } from "../ops/crossentropy.ts";
import { add, dropout } from "../ops/elementwise.ts";
import { FlatParameters, Module } from "../nn/module.ts";
import { Generator } from "../random.ts";
import { Tensor, tidy, tracked } from "../tensor.ts";
import { paddedValues, padRows, padRowsView, vocabParallelCrossEntropy } from "./cross_entropy.ts";
import { gatherFromSequenceRegion, sequenceShard } from "./mappings.ts";
import { type ProcessGroup, SingleProcessGroup } from "./process_group.ts";
import type { RecomputeOptions } from "../nn/recompute.ts";
import {
  interleavedOneFOneB,
  noPipelining,
  oneFOneB,
  type PipelineAction,
  planCommunication,
  virtualStage,
} from "./schedules.ts";
import {
  type LayerOpts,
  makeDrop,
  ParallelBlock,
  parallelMaskedLMHead,
  parallelNorm,
  runLayers,
  setSelectiveRecompute,
  validateTensorParallel,
  vocabParallelLogits,
  VocabParallelTable,
} from "./tp_gpt.ts";
import {
  initTensorParallelParams,
  recordOwner,
  syncTensorParallelGrads,
  VocabParallelEmbedding,
} from "./tp_layers.ts";

/** Options of a {@linkcode PipelineGPT}. */
export interface PipelineGPTOptions extends GPTOptions {
  /** This rank's tensor-parallel group. */
  tensor: ProcessGroup;
  /** This rank's pipeline (one rank per stage). */
  pipeline: ProcessGroup;
  /** First and last stage (the tied embedding); null on the other stages. */
  embedding: ProcessGroup | null;
  /** Split activations outside the TP regions along the token rows. @default false */
  sequenceParallel?: boolean;
  /** Model chunks per rank (interleaved schedule). @default 1 */
  virtualSize?: number;
  /** Activation recomputation, per model chunk. @default none */
  recompute?: RecomputeOptions | null;
}

/** One micro-batch: tokens and targets, int32 (b,T). */
export interface MicroBatch {
  /** Input token ids, int32 (b,T). */
  tokens: Tensor;
  /**
   * int32 (b,T): next-token targets (decoders), or the original token at each masked
   * position (encoder pretraining); -1 where the target does not count.
   */
  targets: Tensor;
  /**
   * Packed documents in the rows (nn/attention.ts sequenceLayout), or an encoder's
   * padding (paddingLayout); absent: one causal sequence per row (decoders), every
   * token valid (encoders).
   */
  layout?: SequenceLayout;
  /** int32 (b,T): each token's segment (encoders with token types). @default all 0 */
  tokenTypes?: Tensor;
  /**
   * int32 (b): each row's label: the binary head's (sentence order), or the classifier's.
   * Required by encoders with either head.
   */
  rowLabels?: Tensor;
}

/**
 * The last stage's loss of an encoder micro-batch, with its parts for logging and, when
 * asked for, the logits an evaluation's accuracies read.
 */
export interface EncoderLoss {
  /** What backward starts from (one element). */
  loss: Tensor;
  /** Named one-element parts: "mlm" and "sop" for pretraining; none for classification. */
  parts: Record<string, Tensor>;
  /** This rank's vocabulary columns of the masked-LM logits, (M, V/tp+1). */
  mlmLogits?: Tensor;
  /** The original tokens at the M masked positions. */
  mlmLabels?: Int32Array;
  /** The binary head's logits (b,2). */
  binaryLogits?: Tensor;
}

/** Options of {@linkcode PipelineGPT.forwardChunk}. */
export interface ChunkOptions {
  /**
   * On the last stage: the mean loss, or this rank's vocabulary shard of the logits,
   * (b,T,V/tp+1) with the pad columns at PAD_LOGIT (an encoder's through its masked-LM
   * head, at every position). @default "loss"
   */
  output?: "loss" | "logits";
  /**
   * The step's layer plan over all nLayer layers (progressive layer dropping): this chunk
   * skips its dropped layers and scales its kept layers' residual branches; ignored in
   * eval mode. @default every layer
   */
  plan?: LayerPlan | null;
  /**
   * The step's padded vocabulary shards ({@linkcode PipelineGPT.vocabTables}); null pads
   * the shards for this call alone. @default null
   */
  tables?: VocabTables | null;
  /** On an encoder's last stage: receives the loss with its parts (and logits). */
  onEncoderLoss?: (r: EncoderLoss) => void;
  /** Keep the logits in what onEncoderLoss receives (evaluation). @default false */
  withLogits?: boolean;
}

/**
 * The padded vocabulary shards ({@linkcode paddedValues}, (V/tp+1, C)) a rank's chunks
 * read: the token table's on the first stage and the output layer's on the last, the same
 * tensor when one table serves both. Made once per step by
 * {@linkcode PipelineGPT.vocabTables}, they are valid until the parameters change.
 */
export interface VocabTables {
  /** [wte; 0] on the first stage; null elsewhere. */
  embedding: Tensor | null;
  /** [output weight; 0] on the last stage; null elsewhere. */
  output: Tensor | null;
}

/** This rank's stages of a GPT split across a pipeline (and a tensor-parallel group). */
export class PipelineGPT extends Module {
  /** The model config with defaults filled in. */
  readonly config: Required<GPTConfig>;
  /** This rank's parameters, in one flat buffer. */
  readonly params: FlatParameters;
  /** This rank's tensor-parallel group. */
  readonly tensor: ProcessGroup;
  /** This rank's pipeline (one rank per stage). */
  readonly pipeline: ProcessGroup;
  /** First and last stage (the tied embedding); null on the other stages. */
  readonly embedding: ProcessGroup | null;
  /** Whether activations outside the TP regions are split along the token rows. */
  readonly sequenceParallel: boolean;
  /** Model chunks per rank. */
  readonly virtualSize: number;
  /** Global layer indices of each chunk. */
  readonly chunkLayers: number[][];
  /** This rank's transformer layers, by global layer index. */
  readonly blocks: Map<number, ParallelBlock> = new Map();
  /** Token and position embeddings on the first stage; null elsewhere. */
  readonly emb: VocabParallelEmbedding | null = null;
  /**
   * The output layer's vocabulary rows on the last stage: the untied `head`, or the tied
   * token table's copy (`emb.wte`) when the last stage is not also the first; else null.
   */
  readonly out: VocabParallelTable | null = null;
  /** The final normalisation on the last stage of a pre-LN model; null elsewhere. */
  readonly lnf: Norm | null = null;
  /** BERT's masked-LM transform and output bias on the last stage; null elsewhere or without. */
  readonly mlm: MaskedLMHead | null = null;
  /** BERT's pooler on the last stage; null elsewhere or without. */
  readonly pooler: Pooler | null = null;
  /** The binary (sentence-order) head on the last stage; null elsewhere or without. */
  readonly binary: Linear | null = null;
  /** The classification head on the last stage; null elsewhere or without. */
  readonly classifier: Linear | null = null;
  /** Rotary frequencies shared by this rank's blocks; null with learned positions. */
  readonly ropeFreq: Tensor | null;
  /** The parameter and dropout seed. */
  readonly seed: number;
  /** Activation recomputation, per model chunk, or null for none. */
  readonly recompute: RecomputeOptions | null;

  /** Builds this rank's chunks of the model of `config` (same config and seed on every rank). */
  constructor(config: GPTConfig, opts: PipelineGPTOptions) {
    super();
    const c = gptConfigWithDefaults(config);
    validateTensorParallel(config, opts.tensor.size);
    this.config = c;
    this.tensor = opts.tensor;
    this.pipeline = opts.pipeline;
    this.embedding = opts.embedding;
    this.sequenceParallel = opts.sequenceParallel ?? false;
    const v = this.virtualSize = opts.virtualSize ?? 1;
    const p = opts.pipeline.size, r = opts.pipeline.rank;
    if (c.nLayer % (p * v) !== 0) {
      throw new DenotronError(
        `pipelineModelParallelSize ${p} × virtualPipelineModelParallelSize ${v} does not divide numLayers ${c.nLayer}`,
      );
    }
    const per = c.nLayer / (p * v);
    this.chunkLayers = [...Array(v).keys()].map((k) =>
      [...Array(per).keys()].map((i) => virtualStage(r, k, p) * per + i)
    );
    const device: Device = opts.device ?? getDevice();
    this.seed = opts.seed ?? 1337;
    const o: LayerOpts = {
      group: opts.tensor,
      device,
      dtype: opts.dtype,
      sequenceParallel: this.sequenceParallel,
      projStd: 0.02 / Math.sqrt(2 * c.nLayer),
      rope: this.ropeFreq = ropeFrequencies(c, device),
    };
    const post = c.normPosition === "post";
    if (this.isFirst(0)) {
      const positions = c.positionEmbedding === "learned" ? c.blockSize : 0;
      this.emb = this.child(
        "emb",
        new VocabParallelEmbedding(c.vocabSize, positions, c.nEmbd, {
          ...o,
          tokenTypes: c.numTokenTypes,
          // post-LN: the embeddings' LayerNorm
          norm: post ? parallelNorm({ ...c, normalization: "layernorm" }, o) : undefined,
        }),
      );
    }
    const last = this.isLast(v - 1);
    if (last && c.tieEmbeddings && !this.emb) {
      this.out = this.child("emb", new VocabParallelTable(c.vocabSize, c.nEmbd, "wte", o));
    }
    for (const layers of this.chunkLayers) {
      for (const l of layers) this.blocks.set(l, this.child(`h.${l}`, new ParallelBlock(c, o)));
    }
    // post-LN normalises each block's output already: no final norm
    if (last && !post) this.lnf = this.child("lnf", parallelNorm(c, o));
    if (last && !c.tieEmbeddings) {
      this.out = this.child("head", new VocabParallelTable(c.vocabSize, c.nEmbd, "weight", o));
    }
    // BERT's heads, on the last stage: the masked-LM head's transform and bias, and the
    // pooler with its heads (replicated; every rank computes them whole)
    if (last) {
      const h = { device, dtype: opts.dtype };
      if (c.outputTransform) this.mlm = this.child("mlm", parallelMaskedLMHead(c, o));
      if (c.pooler) this.pooler = this.child("pooler", new Pooler(c.nEmbd, h));
      if (c.binaryHead) this.binary = this.child("binary", new Linear(c.nEmbd, 2, h));
      if (c.numLabels > 0) {
        this.classifier = this.child("classifier", new Linear(c.nEmbd, c.numLabels, h));
      }
    }
    this.recompute = opts.recompute ?? null;
    setSelectiveRecompute([...this.blocks.values()], this.recompute);
    recordOwner(this, opts.tensor);
    this.params = new FlatParameters(this, device, this.seed);
    initTensorParallelParams(this.params, this.seed);
  }

  /** Whether `chunk` of this rank is the first virtual stage. */
  isFirst(chunk: number): boolean {
    return virtualStage(this.pipeline.rank, chunk, this.pipeline.size) === 0;
  }

  /** Whether `chunk` of this rank is the last virtual stage. */
  isLast(chunk: number): boolean {
    const p = this.pipeline.size;
    return virtualStage(this.pipeline.rank, chunk, p) === p * this.virtualSize - 1;
  }

  /** The tied token table held on this rank (first or last stage), or null. */
  get wte(): Tensor | null {
    if (!this.config.tieEmbeddings) return this.emb?.wte ?? null;
    return this.emb?.wte ?? this.out?.weight ?? null;
  }

  /** The output layer's vocabulary rows on the last stage (tied or untied), else null. */
  get outputWeight(): Tensor | null {
    return this.config.tieEmbeddings ? this.wte : this.out?.weight ?? null;
  }

  /**
   * The padded vocabulary shards this rank's chunks read, one copy per table: a step's
   * micro-batches share them instead of padding the shard in every use (for GPT-2 at one
   * stage, one 147 MiB copy rather than two per micro-batch).
   *
   * @returns the tables; the caller disposes them once the step's passes are done
   */
  vocabTables(): VocabTables {
    const embedding = this.emb ? paddedValues(this.emb.wte) : null;
    const w = this.isLast(this.virtualSize - 1) ? this.outputWeight : null;
    const output = !w ? null : w === this.emb?.wte ? embedding : paddedValues(w);
    return { embedding, output };
  }

  /**
   * One chunk's forward pass for one micro-batch.
   *
   * @param chunk the model chunk
   * @param x the previous stage's activation, or null on the first stage
   * @param mb the micro-batch
   * @param rng the dropout stream, positioned at the micro-batch's first counter
   * @param o the last stage's output, the layer plan, the step's vocabulary tables
   * @returns the activation for the next stage, or on the last stage the mean loss
   *   (or the logits)
   */
  forwardChunk(
    chunk: number,
    x: Tensor | null,
    mb: MicroBatch,
    rng: Generator,
    o: ChunkOptions = {},
  ): Tensor {
    const [b, T] = mb.tokens.shape;
    const C = this.config.nEmbd;
    const full = [b, T, C];
    const p = this.training ? this.config.dropout : 0;
    const lp = this.training ? o.plan ?? null : null;
    if (lp && (lp.keep.length !== this.config.nLayer || lp.scale.length !== lp.keep.length)) {
      throw new DenotronError(
        `forwardChunk: the layer plan covers ${lp.keep.length} layers, the model has ${this.config.nLayer}`,
      );
    }
    const layers = this.chunkLayers[chunk].filter((l) => !lp || lp.keep[l]);
    // The stream of the unsplit model: the embedding's dropout, then two per layer run
    // before this chunk's first layer (dropped layers take none).
    const first = this.chunkLayers[chunk][0];
    const before = lp ? lp.keep.slice(0, first).filter((k) => k).length : first;
    rng.offset += this.isFirst(chunk) ? 0 : (1 + 2 * before) * b * T * C;
    const drop = makeDrop(rng, p, b * T * C, C, this.sequenceParallel ? this.tensor : null);
    // [w; 0] of a vocabulary shard: a view of the step's copy, or a copy of its own
    const padded = (w: Tensor, values: Tensor | null | undefined) =>
      values ? padRowsView(w, values) : padRows(w);
    // An encoder without a layout reads every token of its row, both ways.
    const layout = mb.layout ??
      (isEncoder(this.config)
        ? paddingLayout(new Array(b).fill(T), T, mb.tokens.device)
        : undefined);
    let h: Tensor;
    if (this.isFirst(chunk)) {
      const wext = padded(this.emb!.wte, o.tables?.embedding);
      h = drop(this.emb!.forward(mb.tokens, wext, mb.layout?.positions, mb.tokenTypes));
    } else {
      if (!x) throw new DenotronError(`chunk ${chunk} is not the first stage: it needs an input`);
      h = x;
    }
    const blocks = layers.map((l) => this.blocks.get(l)!);
    const scales = lp ? layers.map((l) => lp.scale[l]) : undefined;
    h = runLayers(blocks, h, full, drop, rng, this.recompute, scales, layout);
    if (!this.isLast(chunk)) return h;
    if (this.lnf) h = this.lnf.forward(h);
    const wext = padded(this.outputWeight!, o.tables?.output);
    const vocabStart = this.tensor.rank * (wext.shape[0] - 1);
    const logitsOf = (rows?: Tensor) =>
      vocabParallelLogits(
        h,
        wext,
        this.tensor,
        this.sequenceParallel,
        full,
        this.config.vocabSize - vocabStart,
        { rows, head: this.mlm ?? undefined },
      );
    if (o.output === "logits") return logitsOf();
    if (isEncoder(this.config)) {
      const r = this.#encoderLoss(h, mb, full, logitsOf, vocabStart, rng, o.withLogits ?? false);
      o.onEncoderLoss?.(r);
      return r.loss;
    }
    return vocabParallelCrossEntropy(logitsOf(), mb.targets, this.tensor, vocabStart);
  }

  /**
   * An encoder's loss on the last stage, as lib/nn/gpt.ts computes it on one process: the
   * masked-LM cross-entropy at the masked positions plus the binary head's, or the
   * classification loss. The pooler and its heads read each row's first token on every
   * rank, which then holds their whole gradient.
   */
  #encoderLoss(
    h: Tensor,
    mb: MicroBatch,
    full: number[],
    logitsOf: (rows?: Tensor) => Tensor,
    vocabStart: number,
    rng: Generator,
    withLogits: boolean,
  ): EncoderLoss {
    const c = this.config;
    const pooled = () => {
      if (!this.pooler) throw new DenotronError("the model's heads need a pooler (set pooler)");
      const rows = this.sequenceParallel
        ? gatherFromSequenceRegion(h, this.tensor, full, "replicated")
        : h;
      return this.pooler.forward(rows);
    };
    const labels = () => {
      if (!mb.rowLabels) {
        throw new DenotronError(
          this.classifier
            ? "a classification model needs row labels in its batches"
            : "an encoder with a binary head needs sentence labels in its batches",
        );
      }
      return mb.rowLabels;
    };
    if (this.classifier) {
      const p = this.training ? c.dropout : 0;
      const logits = this.classifier.forward(dropout(pooled(), p, rng));
      return { loss: crossEntropy(logits, labels()), parts: {} };
    }
    const rows = maskedRows(mb.targets.toArray() as Int32Array, h.device);
    const mlmLogits = logitsOf(rows.index); // (M, V/tp+1)
    const mlm = vocabParallelCrossEntropy(mlmLogits, rows.labels, this.tensor, vocabStart);
    const kept = withLogits ? { mlmLogits, mlmLabels: rows.labelValues } : {};
    if (!this.binary) return { loss: mlm, parts: { mlm }, ...kept };
    const binaryLogits = this.binary.forward(pooled());
    const sop = crossEntropy(binaryLogits, labels());
    return {
      loss: add(mlm, sop),
      parts: { mlm, sop },
      ...kept,
      ...(withLogits ? { binaryLogits } : {}),
    };
  }

  /**
   * After the backward passes of a step: sums partial gradients over the tensor group
   * and the tied embedding's over the embedding group (first and last stage).
   */
  syncGrads(): void {
    syncTensorParallelGrads(this, this.tensor);
    if (!this.config.tieEmbeddings) return;
    const wte = this.wte;
    if (this.embedding && this.embedding.size > 1 && wte?.grad) this.embedding.allReduce(wte.grad);
  }

  /** Frees the parameters (idempotent). */
  dispose(): void {
    if (!this.params.data.disposed) this.params.dispose();
    if (this.ropeFreq && !this.ropeFreq.disposed) this.ropeFreq.dispose();
  }
}

/** Options of a {@linkcode TensorParallelGPT}. */
export interface TensorParallelGPTOptions extends GPTOptions {
  /** The tensor-parallel group (a group of one runs the same code unsplit). */
  group: ProcessGroup;
  /** Split the layernorm and dropout regions along the token rows. @default false */
  sequenceParallel?: boolean;
  /** Activation recomputation. @default none */
  recompute?: RecomputeOptions | null;
}

/**
 * A tensor-parallel GPT: the {@linkcode PipelineGPT} of one stage, with a forward and a
 * loss of whole batches and its own dropout stream (which, as one process's, goes on
 * from call to call). Every rank of `group` builds it with the same config and seed.
 *
 * @example
 * ```ts
 * import { SingleProcessGroup } from "./process_group.ts";
 * import { TensorParallelGPT } from "./pipeline.ts";
 * const group = new SingleProcessGroup("tp", 0);
 * const m = new TensorParallelGPT(
 *   { vocabSize: 64, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16 },
 *   { group },
 * );
 * console.log(m.numParameters());
 * m.dispose();
 * ```
 */
export class TensorParallelGPT extends PipelineGPT {
  /** The dropout stream; it advances by the full tensor's counters on every rank. */
  readonly rng: Generator;
  /** The tensor-parallel group. */
  readonly group: ProcessGroup;

  /** Builds this rank's shard of the model of `config` (same config and seed on every rank). */
  constructor(config: GPTConfig, opts: TensorParallelGPTOptions) {
    const { group, ...rest } = opts;
    super(config, {
      ...rest,
      tensor: group,
      pipeline: new SingleProcessGroup("pipeline", 0),
      embedding: null,
    });
    this.group = group;
    this.rng = new Generator(this.seed);
  }

  /**
   * This rank's columns of the logits (an encoder's through its masked-LM head).
   *
   * @param tokens int32 (B,T)
   * @param layout packed documents or padding (see nn/attention.ts) @default none
   * @returns (B,T,V/tp+1): this rank's vocabulary columns and the pad column
   */
  forward(tokens: Tensor, layout?: SequenceLayout): Tensor {
    // the targets are not read for logits
    const mb = { tokens, targets: tokens, ...(layout ? { layout } : {}) };
    return this.forwardChunk(0, null, mb, this.rng, { output: "logits" });
  }

  /**
   * Mean next-token cross-entropy, the same on every rank; the full logits are never
   * formed. `layout`: packed documents.
   */
  loss(tokens: Tensor, targets: Tensor, layout?: SequenceLayout): Tensor {
    return this.forwardChunk(0, null, { tokens, targets, ...(layout ? { layout } : {}) }, this.rng);
  }
}

/** Options of {@linkcode runPipeline}. */
export interface RunPipelineOptions {
  /** Each micro-batch's loss gradient (e.g. 1/(micro-batches · DP size)). */
  lossScale: number;
  /**
   * Where these micro-batches sit in the global batch, for the dropout stream: micro-batch
   * m is number firstMicroBatch + m · microBatchStride (data-parallel rank r of d reads
   * every d-th: first r, stride d). @default 0
   */
  firstMicroBatch?: number;
  /** See firstMicroBatch. @default 1 */
  microBatchStride?: number;
  /** The dropout stream's offset at the start of the step. @default 0 */
  rngOffset?: number;
  /** Force a schedule; by default 1F1B, interleaved with virtual stages. */
  schedule?: "none" | "1f1b" | "interleaved";
  /** The step's layer plan (progressive layer dropping); null runs every layer. @default null */
  layers?: LayerPlan | null;
  /** Called after each forward or backward pass with its milliseconds (benchmarks). */
  onCompute?: (action: PipelineAction, ms: number) => void;
  /**
   * Adds the micro-batches' loss parts (an encoder's mlm and sop) into this record, by
   * name, on the last stage.
   */
  partSums?: Record<string, number>;
}

/**
 * Runs the forward and backward passes of every micro-batch through this rank's stages.
 * Every rank of the pipeline calls it with the same number of micro-batches.
 *
 * @param model this rank's stages
 * @param batches the micro-batches (every stage needs the targets only on the last stage
 *   and the tokens on the first, but all ranks pass them)
 * @returns the losses of the micro-batches (on the last stage; empty elsewhere)
 */
export function runPipeline(
  model: PipelineGPT,
  batches: MicroBatch[],
  opts: RunPipelineOptions,
): number[] {
  const p = model.pipeline.size, r = model.pipeline.rank, v = model.virtualSize;
  const m = batches.length;
  const kind = opts.schedule ?? (v > 1 ? "interleaved" : p > 1 ? "1f1b" : "none");
  const scheduleOf = (rank: number): PipelineAction[] =>
    kind === "interleaved"
      ? [...interleavedOneFOneB(p, rank, m, v)]
      : kind === "1f1b"
      ? [...oneFOneB(p, rank, m)]
      : [...noPipelining(m)];
  if (kind === "none" && p > 1) {
    throw new DenotronError(`schedule "none" needs one pipeline stage, not ${p}`);
  }
  const plan = planCommunication([...Array(p).keys()].map(scheduleOf), v)[r];
  const [b, T] = batches[0].tokens.shape;
  const C = model.config.nEmbd;
  const rows = model.sequenceParallel ? sequenceShard(b * T, model.tensor).rows : 0;
  const shape = model.sequenceParallel ? [rows, C] : [b, T, C];
  const perMicroBatch = dropoutDraws(model.config, b, T, opts.layers);
  const key = (mb: number, chunk: number) => `${mb}:${chunk}`;
  const inputs = new Map<string, Tensor>();
  const outputs = new Map<string, Tensor>();
  const gradsIn = new Map<string, Tensor>();
  const outbox = new Map<string, Tensor>();
  // What each forward pass created, by micro-batch and chunk: freed after its backward.
  const made = new Map<string, Tensor[]>();
  const losses: number[] = [];
  const chunkOf = (stage: number) => Math.floor(stage / p);
  // The step's tidy() frees the vocabulary tables, and whatever an error leaves behind.
  tidy(() => {
    const tables = model.vocabTables();
    for (const op of plan) {
      if (op.op === "recv") {
        // activations and their gradients travel in the model's dtype
        const t = Tensor.empty(shape, {
          dtype: model.params.data.dtype,
          device: model.params.data.device,
        });
        model.pipeline.recv(t, op.peer);
        const k = key(op.message.microBatch, chunkOf(op.message.toStage));
        if (op.message.kind === "activation") {
          t.requiresGrad = true;
          inputs.set(k, t);
        } else gradsIn.set(k, t);
      } else if (op.op === "send") {
        const m = op.message;
        const k = `${m.kind}:${m.microBatch}:${m.toStage}`;
        const t = outbox.get(k)!;
        model.pipeline.send(t, op.peer);
        outbox.delete(k);
        // A gradient message is the received activation's leaf gradient, kept by autograd.
        if (m.kind === "gradient") t.dispose();
      } else if (op.op === "compute") {
        const { kind: pass, microBatch: mb, chunk } = op.action;
        const t0 = performance.now();
        const k = key(mb, chunk);
        const s = virtualStage(r, chunk, p);
        if (pass === "forward") {
          const rng = new Generator(model.seed);
          const index = (opts.firstMicroBatch ?? 0) + mb * (opts.microBatchStride ?? 1);
          rng.offset = (opts.rngOffset ?? 0) + index * perMicroBatch;
          const { result: out, tensors } = tracked(() =>
            model.forwardChunk(chunk, inputs.get(k) ?? null, batches[mb], rng, {
              plan: opts.layers ?? null,
              tables,
              onEncoderLoss: opts.partSums && ((r) => {
                for (const [n, t] of Object.entries(r.parts)) {
                  opts.partSums![n] = (opts.partSums![n] ?? 0) + t.item();
                }
              }),
            })
          );
          made.set(k, tensors);
          outputs.set(k, out);
          if (model.isLast(chunk)) losses[mb] = out.item();
          else outbox.set(`activation:${mb}:${s + 1}`, out);
        } else {
          const out = outputs.get(k)!;
          outputs.delete(k);
          const gradIn = gradsIn.get(k);
          gradsIn.delete(k);
          // the backward's own temporaries go with it
          tidy(() => {
            if (model.isLast(chunk)) {
              backward(out, Tensor.full([1], opts.lossScale, { device: out.device }));
            } else backward(out, gradIn!);
          });
          const input = inputs.get(k);
          if (input) {
            inputs.delete(k);
            // The received activation is a leaf: its gradient goes back a stage.
            outbox.set(`gradient:${mb}:${s - 1}`, input.grad!);
            input.dispose();
          }
          // This micro-batch is done on this chunk: its activations go now, as in
          // Megatron, not at the end of the step.
          gradIn?.dispose();
          for (const t of made.get(k)!) t.dispose();
          made.delete(k);
        }
        opts.onCompute?.(op.action, performance.now() - t0);
      }
    }
  });
  return losses;
}
