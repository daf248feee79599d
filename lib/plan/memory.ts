/**
 * Memory per accelerator: weights, gradients and Adam state (Megatron's
 * bytes-per-parameter table) and activations (Korthikanti et al. 2022), or, under the
 * `denotron` profile, the tensors our own pipeline engine holds (held_tensors.ts).
 *
 * defines: bytesPerParameter, activationBytesPerLayer, stageParameters,
 * inFlightMicroBatches, outputActivationBytes, memoryPerStage
 *
 * @module
 */

import type { Precision } from "./cluster.ts";
import {
  layersPerStage,
  numMicroBatches,
  type ParallelLayout,
  type Recompute,
  resolveLayout,
  type ShardingStrategy,
} from "./layout.ts";
import { allocatorBlockBytes, heldBytes, rankTensors } from "./held_tensors.ts";
import {
  encoderParameters,
  layerParameters,
  type ModelConfig,
  normParameters,
  outputRows,
  resolveModel,
} from "./model.ts";
import { IMPLEMENTATION_PROFILES, type ImplementationProfile } from "./profile.ts";

/** Bytes per parameter for weights, gradients and optimizer state. */
export interface BytesPerParameter {
  /** Model weights in the training dtype. */
  weights: number;
  /** Gradients as accumulated (fp32 main grads for bf16). */
  gradients: number;
  /** Adam state and fp32 master weights, after sharding over `d` when distributed. */
  optimizer: number;
  /** Sum of the three. */
  total: number;
}

// Megatron's layout of mixed precision with Adam: fp16 keeps fp16 grads plus fp32 master
// weights, fp32 master grads and two moments; bf16 accumulates grads in fp32 (main_grad)
// and keeps fp32 master weights and two moments; fp32 needs only the two moments.
const PARAMETER_BYTES: Record<
  Precision,
  { weights: number; gradients: number; optimizer: number }
> = {
  fp16: { weights: 2, gradients: 2, optimizer: 16 },
  bf16: { weights: 2, gradients: 4, optimizer: 12 },
  fp32: { weights: 4, gradients: 4, optimizer: 8 },
};

/**
 * Bytes per parameter (Megatron's distributed-optimizer table): fp16 20 or 4 + 16/d,
 * bf16 18 or 6 + 12/d, fp32 16 or 8 + 8/d. ZeRO-2 (`optim_grads`) also divides the
 * gradients by d, ZeRO-3 / FSDP (`optim_grads_params`) the weights as well.
 *
 * @param precision the training precision
 * @param distributedOptimizer what data parallelism shards (`true` is ZeRO-1, `optim`)
 * @param dataParallelSize `d`
 * @returns bytes per parameter by kind
 * @example
 * ```ts
 * import { bytesPerParameter } from "./memory.ts";
 * console.assert(bytesPerParameter("bf16", false, 8).total === 18);
 * console.assert(bytesPerParameter("bf16", true, 4).total === 9);
 * ```
 */
export function bytesPerParameter(
  precision: Precision,
  distributedOptimizer: boolean | ShardingStrategy,
  dataParallelSize: number,
): BytesPerParameter {
  const row = PARAMETER_BYTES[precision];
  const strategy = distributedOptimizer === true
    ? "optim"
    : distributedOptimizer === false
    ? "no_shard"
    : distributedOptimizer;
  const d = dataParallelSize;
  const optimizer = strategy === "no_shard" ? row.optimizer : row.optimizer / d;
  const shardsGrads = strategy === "optim_grads" || strategy === "optim_grads_params";
  const gradients = shardsGrads ? row.gradients / d : row.gradients;
  const weights = strategy === "optim_grads_params" ? row.weights / d : row.weights;
  return { weights, gradients, optimizer, total: weights + gradients + optimizer };
}

/** Inputs of the per-layer activation formula. */
export interface ActivationShape {
  /** Sequence length `s`. */
  seqLength: number;
  /** Micro-batch size `b`. */
  microBatchSize: number;
  /** Hidden size `h`. */
  hiddenSize: number;
  /** Attention heads `a`. */
  numAttentionHeads: number;
  /** Tensor-parallel size `t`. @default 1 */
  tensorParallel?: number;
  /** Sequence parallelism. @default false */
  sequenceParallel?: boolean;
  /** Recomputation. @default "none" */
  recompute?: Recompute;
  /** Full recomputation keeps 1/t of each layer input per TP rank. @default false */
  distributeSavedActivations?: boolean;
  /** Fused attention keeps no s×s matrices. @default false */
  flashAttention?: boolean;
  /** Bytes per activation element; the formula assumes 2. @default 2 */
  bytesPerElement?: number;
  /** Width of the keys (and of the values): h·groups/a with grouped-query attention. @default hiddenSize */
  keyValueSize?: number;
  /** FFN inner size `f`. @default 4 * hiddenSize */
  ffnHiddenSize?: number;
  /** Gated MLP (SwiGLU). @default false */
  swiglu?: boolean;
}

/**
 * Activation bytes one layer keeps for the backward pass, per micro-batch, per TP rank
 * (Korthikanti et al. 2022, 16-bit activations):
 *
 * - no parallelism: s·b·h·(34 + 5·a·s/h)
 * - tensor parallel: s·b·h·(10 + 24/t + 5·a·s/(h·t)); with sequence parallel s·b·h·(34/t + 5·a·s/(h·t))
 * - selective recomputation or flash attention drop the 5·a·s/(h·t) term
 * - full recomputation keeps only the layer input: 2·s·b·h (divided by t with SP or
 *   distributed saved activations)
 *
 * The 24 of the TP-split part is Q 2, K 2, V 2, the attention output 2 and the FFN's
 * 16 = 4·f/h; with grouped-query keys and values of width `kv` and FFN size `f` it is
 * 2 + 4·kv/h + 2 + 4·f/h, and SwiGLU keeps gate, up and their product: 6·f/h.
 *
 * @param shape the layer and layout
 * @returns bytes
 * @example
 * ```ts
 * import { activationBytesPerLayer } from "./memory.ts";
 * // s=4, b=1, h=8, a=2: 32 * (34 + 5) bytes
 * console.assert(activationBytesPerLayer({ seqLength: 4, microBatchSize: 1, hiddenSize: 8, numAttentionHeads: 2 }) === 1248);
 * ```
 */
export function activationBytesPerLayer(shape: ActivationShape): number {
  const s = shape.seqLength;
  const b = shape.microBatchSize;
  const h = shape.hiddenSize;
  const a = shape.numAttentionHeads;
  const t = shape.tensorParallel ?? 1;
  const sp = (shape.sequenceParallel ?? false) && t > 1;
  const recompute = shape.recompute ?? "none";
  const scale = (shape.bytesPerElement ?? 2) / 2;
  const sbh = s * b * h;
  if (recompute === "full") {
    return scale * (sp || shape.distributeSavedActivations ? (2 * sbh) / t : 2 * sbh);
  }
  const keepsScores = recompute === "none" && !(shape.flashAttention ?? false);
  const scores = keepsScores ? (5 * a * s) / (h * t) : 0;
  const kv = shape.keyValueSize ?? h;
  const f = shape.ffnHiddenSize ?? 4 * h;
  const split = 4 + (4 * kv) / h + ((shape.swiglu ? 6 : 4) * f) / h;
  const linear = sp ? (10 + split) / t : 10 + split / t;
  return scale * sbh * (linear + scores);
}

/** Parameters held by one pipeline stage on one TP rank. */
export interface StageParameters {
  /** Transformer layers' share. */
  layers: number;
  /**
   * Embeddings (first stage); output layer or tied copy, final norm and an encoder's heads
   * (last stage).
   */
  embeddings: number;
  /** Sum of the two. */
  total: number;
}

/**
 * Parameters on one rank of a pipeline stage. The first stage holds the word (vocab-parallel)
 * and position embeddings; the last holds the final norm and the output layer, which is
 * a copy of the word embeddings when tied and p > 1. An encoder's first stage adds the
 * token-type embeddings and (post-LN) the embeddings' norm; its last stage has no final
 * norm (post-LN) and adds the heads, replicated over TP but for the masked-LM bias, which
 * is split by vocabulary like the table.
 *
 * @param model the model
 * @param layout the layout
 * @param stage the pipeline stage, 0-based
 * @returns parameters on one rank of that stage
 * @example
 * ```ts
 * import { stageParameters } from "./memory.ts";
 * import { MODEL_PRESETS } from "./model.ts";
 * console.assert(stageParameters(MODEL_PRESETS["gpt2-124m"], {}, 0).total === 124_439_808);
 * ```
 */
export function stageParameters(
  model: ModelConfig,
  layout: ParallelLayout,
  stage: number,
): StageParameters {
  const m = resolveModel(model);
  const l = resolveLayout(layout);
  const t = l.tensorModelParallelSize;
  const p = l.pipelineModelParallelSize;
  const h = m.hiddenSize;
  const per = layerParameters(m);
  const layers = layersPerStage(m, l)[stage] * (per.split / t + per.replicated);
  const vocabRows = Math.ceil(m.vocabSize / t);
  const vocabShard = vocabRows * h;
  const encoder = encoderParameters(m);
  let embeddings = 0;
  if (stage === 0) {
    embeddings += vocabShard + m.maxPositionEmbeddings * h + encoder.tokenTypeEmbeddings +
      encoder.embeddingNorm;
  }
  if (stage === p - 1) {
    if (!m.encoder?.postNorm) embeddings += normParameters(m);
    if (!m.tiedEmbeddings || p > 1) embeddings += vocabShard;
    if (m.encoder) {
      embeddings += encoder.maskedLMTransform + vocabRows + encoder.pooler + encoder.binaryHead;
    }
  }
  return { layers, embeddings, total: layers + embeddings };
}

/**
 * Micro-batches whose activations stage `k` holds at its peak, in units of a whole
 * stage's activations. 1F1B: p − k. Interleaved with v chunks per rank: Megatron warms
 * up 2·(p − k − 1) + (v − 1)·p chunks, plus one in flight, each 1/v of a stage; for the
 * first stage this is p·(1 + (p − 1)/(p·v)) (Korthikanti et al. 2022). Never more than m.
 *
 * @param p pipeline stages
 * @param v virtual stages per rank
 * @param m micro-batches per step
 * @param stage the stage `k`, 0-based
 * @returns stage-activations held at once
 * @example
 * ```ts
 * import { inFlightMicroBatches } from "./memory.ts";
 * console.assert(inFlightMicroBatches(4, 1, 16, 0) === 4);
 * console.assert(inFlightMicroBatches(4, 2, 16, 0) === 5.5);
 * ```
 */
export function inFlightMicroBatches(p: number, v: number, m: number, stage: number): number {
  const held = v === 1 ? p - stage : (2 * (p - stage - 1) + (v - 1) * p + 1) / v;
  return Math.min(held, m);
}

/**
 * Activation bytes of what follows the last layer, one micro-batch, one TP rank
 * (Megatron's count). Output layer, logits and cross-entropy in fp32 at the output rows
 * `R`: 4·R·(h + V)/t (Korthikanti et al.; R = s·b for a decoder). An encoder's masked-LM
 * head keeps, at its R masked rows, the inputs of its dense layer, GeLU and LayerNorm,
 * 3·R·h elements replicated on every TP rank, and its pooler and binary head the inputs
 * of their two GEMMs, 2·b·h.
 *
 * @param model the model
 * @param tokens tokens of the micro-batch on this rank, s·b (s/c with context parallelism)
 * @param sequences sequences of the micro-batch `b`
 * @param t tensor-parallel size
 * @param bytesPerElement bytes of a 16-bit (2) or fp32 (4) activation
 * @returns bytes
 * @example
 * ```ts
 * import { outputActivationBytes } from "./memory.ts";
 * const m = { numLayers: 1, hiddenSize: 8, numAttentionHeads: 2, vocabSize: 10, seqLength: 4 };
 * console.assert(outputActivationBytes(m, 4, 1, 1, 2) === 4 * 4 * 18);
 * console.assert(outputActivationBytes({ ...m, encoder: {} }, 4, 1, 1, 2) === 4 * 18 + 2 * (3 * 8 + 2 * 8));
 * ```
 */
export function outputActivationBytes(
  model: ModelConfig,
  tokens: number,
  sequences: number,
  t: number,
  bytesPerElement: number,
): number {
  const m = resolveModel(model);
  const h = m.hiddenSize;
  const rows = outputRows(m, tokens);
  const logits = (4 * rows * (h + m.vocabSize)) / t;
  if (!m.encoder) return logits;
  const pooled = (m.encoder.pooler ? h : 0) + (m.encoder.binaryHead ? h : 0);
  return logits + bytesPerElement * (3 * rows * h + sequences * pooled);
}

/** Memory of one rank of one pipeline stage, bytes. */
export interface MemoryBreakdown {
  /** Pipeline stage, 0-based. */
  stage: number;
  /** Parameters on this rank. */
  parameters: number;
  /** Model weights. */
  weights: number;
  /** Gradients. */
  gradients: number;
  /** Optimizer state (master weights, moments). */
  optimizer: number;
  /** Activations kept for backward, including the recomputed layer's working set. */
  activations: number;
  /** `denotron` only: the step's padded copies of the vocabulary shard (0 otherwise). */
  vocabularyCopies: number;
  /**
   * `denotron` only: the largest set of gradients one backward pass holds at once, on top
   * of the rest (0 otherwise: Megatron's is inside its activation count and reserve).
   */
  workspace: number;
  /**
   * FSDP only: two layers' full weights and gradients, gathered and prefetched (0 otherwise).
   */
  gathered: number;
  /** Sum of the above. */
  total: number;
}

/**
 * Memory of every pipeline stage on one rank.
 *
 * @param model the model
 * @param layout the layout
 * @param profile the codebase; its `memoryModel` picks the count
 * @default profile IMPLEMENTATION_PROFILES["megatron-lm"]
 * @returns one breakdown per stage
 * @example
 * ```ts
 * import { memoryPerStage } from "./memory.ts";
 * import { MODEL_PRESETS } from "./model.ts";
 * const [s0] = memoryPerStage(MODEL_PRESETS["gpt2-124m"], { precision: "fp32" });
 * console.assert(s0.weights + s0.gradients + s0.optimizer === 16 * 124_439_808);
 * ```
 */
export function memoryPerStage(
  model: ModelConfig,
  layout: ParallelLayout,
  profile: ImplementationProfile = IMPLEMENTATION_PROFILES["megatron-lm"],
): MemoryBreakdown[] {
  if (profile.memoryModel === "denotron") return denotronMemoryPerStage(model, layout);
  const m = resolveModel(model);
  const l = resolveLayout(layout);
  const t = l.tensorModelParallelSize;
  const p = l.pipelineModelParallelSize;
  const v = l.virtualPipelineModelParallelSize;
  const b = l.microBatchSize;
  // Context parallelism: each rank keeps s/c of the sequence; gradients and optimizer
  // state are sharded over the data- and context-parallel ranks together (Megatron's
  // dp-cp group), since all of them hold the same parameters.
  const c = l.contextParallelSize;
  const s = m.seqLength / c;
  const h = m.hiddenSize;
  const sp = l.sequenceParallel && t > 1;
  const bytesPerElement = l.precision === "fp32" ? 4 : 2;
  const perParam = bytesPerParameter(
    l.precision,
    l.dataParallelShardingStrategy,
    l.dataParallelSize * c,
  );
  const shape = {
    keyValueSize: (m.numQueryGroups * h) / m.numAttentionHeads,
    ffnHiddenSize: m.ffnHiddenSize,
    swiglu: m.swiglu,
    seqLength: s,
    microBatchSize: b,
    hiddenSize: h,
    numAttentionHeads: m.numAttentionHeads,
    tensorParallel: t,
    sequenceParallel: sp,
    flashAttention: l.flashAttention,
    bytesPerElement,
  };
  const kept = activationBytesPerLayer({
    ...shape,
    recompute: l.recomputeGranularity,
    distributeSavedActivations: l.distributeSavedActivations,
  });
  // Full recomputation rebuilds one layer's activations at a time during backward.
  const working = l.recomputeGranularity === "full"
    ? activationBytesPerLayer({ ...shape, recompute: "none" })
    : 0;
  const stageLayers = layersPerStage(m, l);
  const mb = numMicroBatches(l);
  // FSDP gathers one layer's weights for compute while prefetching the next, and holds
  // the full gradient of the layer whose reduce-scatter is in flight.
  const full = bytesPerParameter(l.precision, false, 1);
  const per = layerParameters(m);
  const gathered = l.dataParallelShardingStrategy === "optim_grads_params"
    ? 2 * (per.split / t + per.replicated) * (full.weights + full.gradients)
    : 0;
  const stages: MemoryBreakdown[] = [];
  for (let k = 0; k < p; k++) {
    const params = stageParameters(m, l, k).total;
    let activations = kept * stageLayers[k] * inFlightMicroBatches(p, v, mb, k) + working;
    // Embedding dropout mask (1 byte per element) for each micro-batch in flight, and a
    // post-LN encoder's embedding norm input.
    const embeddingNorm = m.encoder?.postNorm ? bytesPerElement : 0;
    if (k === 0) {
      activations += ((s * b * h * (1 + embeddingNorm)) / (sp ? t : 1)) *
        inFlightMicroBatches(p, v, mb, 0);
    }
    if (k === p - 1) activations += outputActivationBytes(m, s * b, b, t, bytesPerElement);
    const weights = params * perParam.weights;
    const gradients = params * perParam.gradients;
    const optimizer = params * perParam.optimizer;
    stages.push({
      stage: k,
      parameters: params,
      weights,
      gradients,
      optimizer,
      activations,
      vocabularyCopies: 0,
      workspace: 0,
      gathered,
      total: weights + gradients + optimizer + activations + gathered,
    });
  }
  return stages;
}

/**
 * Memory of every pipeline rank as Denotron's pipeline engine allocates it: the flat
 * weight and fp32 gradient buffers (lib/nn/module.ts FlatParameters), AdamW's flat fp32
 * buffers (moments; with 16-bit weights also the fp32 main copy), each one allocator
 * block, and the tensors of held_tensors.ts.
 */
function denotronMemoryPerStage(model: ModelConfig, layout: ParallelLayout): MemoryBreakdown[] {
  const m = resolveModel(model);
  const l = resolveLayout(layout);
  const d = l.dataParallelSize;
  const weightBytes = l.precision === "fp32" ? 4 : 2;
  const sharded = l.dataParallelShardingStrategy === "optim";
  const stages: MemoryBreakdown[] = [];
  for (let k = 0; k < l.pipelineModelParallelSize; k++) {
    const params = stageParameters(m, l, k).total;
    const weights = allocatorBlockBytes(params * weightBytes);
    const gradients = allocatorBlockBytes(params * 4);
    // AdamW's fp32 buffers: m and v, and with 16-bit weights the main copy (lib/optim).
    const optimizer = (l.precision === "fp32" ? 2 : 3) *
      allocatorBlockBytes((params * 4) / (sharded ? d : 1));
    const held = rankTensors(m, l, k);
    const activations = heldBytes(held.activations);
    const vocabularyCopies = heldBytes(held.vocabularyCopies);
    const workspace = heldBytes(held.workspace);
    stages.push({
      stage: k,
      parameters: params,
      weights,
      gradients,
      optimizer,
      activations,
      vocabularyCopies,
      workspace,
      gathered: 0,
      total: weights + gradients + optimizer + activations + vocabularyCopies + workspace,
    });
  }
  return stages;
}
