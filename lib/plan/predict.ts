/**
 * The step-time model: compute, memory-bound work, communication per group, pipeline
 * bubble and optimizer, put together into a step time, model FLOP/s and MFU.
 *
 * defines: PlanConfig, StepPrediction, predictStep, bubbleFraction, PlanError
 *
 * @module
 */

import { type ClusterConfig, peakFlops } from "./cluster.ts";
import {
  collectiveTime,
  contextParallelBandwidth,
  dataParallelBandwidth,
  pipelineBandwidth,
  tensorParallelBandwidth,
} from "./comm.ts";
import { flopsPerStep, layerForwardFlops, logitForwardFlops } from "./flops.ts";
import {
  layersPerStage,
  layoutProblems,
  numMicroBatches,
  type ParallelLayout,
  type ResolvedLayout,
  resolveLayout,
  worldSize,
} from "./layout.ts";
import {
  activationBytesPerLayer,
  bytesPerParameter,
  type MemoryBreakdown,
  memoryPerStage,
  stageParameters,
} from "./memory.ts";
import { IMPLEMENTATION_PROFILES, type ImplementationProfile, profileProblems } from "./profile.ts";
import {
  type ModelConfig,
  outputRows,
  parameterCount,
  type ResolvedModel,
  resolveModel,
} from "./model.ts";

/** Everything the planner needs: what to train, how to split it, and on what. */
export interface PlanConfig {
  /** The model. */
  model: ModelConfig;
  /** The layout and training options. */
  layout: ParallelLayout;
  /** The machines. */
  cluster: ClusterConfig;
  /** The codebase that runs it. @default IMPLEMENTATION_PROFILES["megatron-lm"] */
  profile?: ImplementationProfile;
}

/** A layout that cannot run the model; `problems` lists every reason. */
export class PlanError extends Error {
  /** Each reason, a sentence naming the bad value. */
  readonly problems: string[];
  /**
   * @param problems the reasons, one sentence each
   */
  constructor(problems: string[]) {
    super(problems.join("; "));
    this.name = "PlanError";
    this.problems = problems;
  }
}

/** Communication of one kind of process group, per rank, per step. */
export interface GroupCommunication {
  /** Which group. */
  group: "tensor" | "context" | "pipeline" | "data";
  /** Ranks in the group. */
  size: number;
  /** Bytes each rank hands to collectives per step. */
  bytes: number;
  /** Bus bandwidth the group gets, bytes/s. */
  bandwidth: number;
  /** Time the collectives take, seconds. */
  seconds: number;
  /** Part of `seconds` not hidden behind compute, seconds. */
  exposedSeconds: number;
}

/** Memory summary: every stage, the fullest one, and whether it fits. */
export interface MemoryReport {
  /** One breakdown per pipeline stage, bytes. */
  stages: MemoryBreakdown[];
  /** The stage with the largest total. */
  peak: MemoryBreakdown;
  /** Memory a rank may use: capacity less the reserve, bytes. */
  usable: number;
  /** Whether the peak stage fits. */
  fits: boolean;
}

/** The planner's prediction for one step. */
export interface StepPrediction {
  /** The model with defaults filled in. */
  model: ResolvedModel;
  /** The layout with defaults filled in. */
  layout: ResolvedLayout;
  /** Cluster preset name. */
  cluster: string;
  /**
   * The communication backend the collectives are modelled on: "nccl" for GPU clusters
   * (its ring and tree algorithms), "shm" for the CPU preset (this project's shared-memory
   * groups).
   */
  backend: "nccl" | "shm";
  /** Implementation profile name. */
  profile: string;
  /** Accelerators used: t · c · p · d. */
  gpus: number;
  /** Parameter count of the model. */
  parameters: number;
  /** Micro-batches per replica per step `m`. */
  microBatches: number;
  /** Model FLOPs of the step, all ranks. */
  modelFlops: number;
  /** Hardware FLOPs (with recomputation) of the step, all ranks. */
  hardwareFlops: number;
  /** Predicted step time, seconds. */
  stepSeconds: number;
  /** Time of one micro-batch on the slowest stage, seconds. */
  microBatchSeconds: number;
  /** Pipeline fill and drain time, seconds. */
  bubbleSeconds: number;
  /** Bubble relative to the ideal time: (p − 1)/(v · m). */
  bubbleFraction: number;
  /** Optimizer update time, seconds. */
  optimizerSeconds: number;
  /** Communication by group. */
  communication: GroupCommunication[];
  /** Model FLOP/s per accelerator. */
  modelFlopsPerGpu: number;
  /** Hardware FLOP/s per accelerator. */
  hardwareFlopsPerGpu: number;
  /** Model FLOP/s utilization: modelFlopsPerGpu / peak. */
  mfu: number;
  /** Hardware FLOP/s utilization. */
  hfu: number;
  /** Tokens per second, whole job. */
  tokensPerSecond: number;
  /** Memory per rank. */
  memory: MemoryReport;
}

/**
 * Memory-bound work of a layer, as a multiple of the bytes its activations occupy per
 * pass: layer norms, GeLU, dropout, residual adds and (unfused) softmax each read and
 * write their tensors once or twice. Fitted once, see docs/planner.md.
 */
export const MEMORY_TRAFFIC_PER_ACTIVATION_BYTE =
  IMPLEMENTATION_PROFILES["megatron-lm"].memoryTrafficPerActivationByte;

/**
 * Pipeline bubble relative to the ideal step: (p − 1)/m for 1F1B, divided by v for the
 * interleaved schedule (Narayanan et al. 2021).
 *
 * @param p pipeline stages
 * @param m micro-batches per step
 * @param v virtual stages per rank
 * @default v 1
 * @returns the fraction
 * @example
 * ```ts
 * import { bubbleFraction } from "./predict.ts";
 * console.assert(bubbleFraction(4, 8) === 3 / 8);
 * console.assert(bubbleFraction(4, 8, 3) === 1 / 8);
 * ```
 */
export function bubbleFraction(p: number, m: number, v = 1): number {
  return (p - 1) / (v * m);
}

// Bytes one TP rank sends across a stage boundary: a 1/t slice with scatter/gather.
function pipelineSendBytes(activationBytes: number, t: number, profile: ImplementationProfile) {
  return profile.pipelineScatterGather ? activationBytes / t : activationBytes;
}

/** Time of one micro-batch through one rank of a stage, by part. */
interface StageTime {
  contextBytes: number;
  contextComm: number;
  contextExposed: number;
  compute: number;
  memoryBound: number;
  tensorComm: number;
  tensorExposed: number;
  pipelineComm: number;
  pipelineExposed: number;
  total: number;
}

function stageTimes(
  m: ResolvedModel,
  l: ResolvedLayout,
  cluster: ClusterConfig,
  profile: ImplementationProfile,
): StageTime[] {
  const t = l.tensorModelParallelSize;
  const p = l.pipelineModelParallelSize;
  const v = l.virtualPipelineModelParallelSize;
  const d = l.dataParallelSize;
  const b = l.microBatchSize;
  const c = l.contextParallelSize;
  const s = m.seqLength / c; // this rank's share of the sequence
  const h = m.hiddenSize;
  const elementBytes = l.precision === "fp32" ? 4 : 2;
  const flopRate = peakFlops(cluster, l.precision) * cluster.sustainedFraction;
  const attentionRate = peakFlops(cluster, l.precision) * cluster.attentionFraction;
  const full = l.recomputeGranularity === "full";

  // One layer, one micro-batch, one TP rank.
  const fwd = layerForwardFlops(m, b);
  const attentionPasses = full || l.recomputeGranularity === "selective" ? 4 : 3;
  const densePasses = full ? 4 : 3;
  // With CP each rank runs 1/c of the dense work and, load-balanced, 1/c of the s×s scores.
  const layerCompute =
    (densePasses * fwd.dense / flopRate + attentionPasses * fwd.attention / attentionRate) /
    (t * c);
  // Ring attention: c − 1 steps pass this rank's keys and values (each b·(s/c)·kv/t) on
  // in forward, and keys, values and their gradients in backward; each step hides behind
  // the attention of the chunk already there.
  const kv = (m.numQueryGroups * h) / m.numAttentionHeads;
  const ringHop = collectiveTime(
    "send-recv",
    (2 * b * s * kv * elementBytes) / t,
    2,
    contextParallelBandwidth(cluster, t, c),
    cluster.latency,
  );
  // One ring per attention pass: forward, backward twice (keys/values and their
  // gradients), and the recomputed forward when there is one.
  const layerContextComm = c > 1 ? attentionPasses * (c - 1) * ringHop : 0;
  const layerContextBytes = c > 1
    ? attentionPasses * (c - 1) * (2 * b * s * kv * elementBytes) / t
    : 0;
  const layerAttention = (attentionPasses * fwd.attention) / attentionRate / (t * c);
  const layerContextExposed = Math.max(0, layerContextComm - layerAttention);
  const touched = activationBytesPerLayer({
    keyValueSize: (m.numQueryGroups * h) / m.numAttentionHeads,
    ffnHiddenSize: m.ffnHiddenSize,
    swiglu: m.swiglu,
    seqLength: s,
    microBatchSize: b,
    hiddenSize: h,
    numAttentionHeads: m.numAttentionHeads,
    tensorParallel: t,
    sequenceParallel: l.sequenceParallel,
    flashAttention: l.flashAttention,
    bytesPerElement: elementBytes,
  });
  const passes = full ? 4 : 3; // forward, backward counted twice, recomputed forward
  const layerMemoryBound = (profile.memoryTrafficPerActivationByte * passes * touched) /
    cluster.memoryBandwidth;
  // Two all-reduces per layer in each forward and backward (reduce-scatter + all-gather
  // pairs with sequence parallelism: the same bytes).
  const tpBandwidth = tensorParallelBandwidth(cluster, t);
  const oneAllReduce = collectiveTime(
    "all-reduce",
    b * s * h * elementBytes,
    t,
    tpBandwidth,
    cluster.latency,
  );
  const layerTensorComm = (full ? 6 : 4) * oneAllReduce;
  const layerTensorExposed = l.overlapCommunication && profile.overlapsTensorParallel
    ? Math.max(0, layerTensorComm - layerCompute)
    : layerTensorComm;

  // Activations cross each of the v stage boundaries of a rank, forward and backward,
  // split over the TP ranks (scatter/gather or sequence parallelism).
  const ppBandwidth = pipelineBandwidth(cluster, t * c, d, p);
  const hop = collectiveTime(
    "send-recv",
    pipelineSendBytes(b * s * h * elementBytes, t, profile),
    2,
    ppBandwidth,
    cluster.latency,
  );
  const pipelineComm = p > 1 ? 2 * v * hop : 0;
  const pipelineExposed = l.overlapCommunication ? 0 : pipelineComm;

  const stageLayers = layersPerStage(m, l);
  const times: StageTime[] = [];
  for (let k = 0; k < p; k++) {
    const layers = stageLayers[k];
    let compute = layers * layerCompute;
    let memoryBound = layers * layerMemoryBound;
    if (k === p - 1) {
      // Logit GEMM forward and backward (an encoder's at its masked rows, with its heads),
      // and the fp32 logits read and written three times.
      compute += (3 * logitForwardFlops(m, b)) / (t * c) / flopRate;
      memoryBound += (3 * 2 * 4 * outputRows(m, b * s) * m.vocabSize) / t /
        cluster.memoryBandwidth;
    }
    const tensorComm = layers * layerTensorComm;
    const tensorExposed = layers * layerTensorExposed;
    const contextComm = layers * layerContextComm;
    const contextExposed = layers * layerContextExposed;
    const total = compute + memoryBound + tensorExposed + pipelineExposed + contextExposed;
    times.push({
      contextBytes: layers * layerContextBytes,
      contextComm,
      contextExposed,
      compute,
      memoryBound,
      tensorComm,
      tensorExposed,
      pipelineComm,
      pipelineExposed,
      total,
    });
  }
  return times;
}

/**
 * Predict one training step: FLOPs, time, model FLOP/s per accelerator, MFU, memory per
 * rank, pipeline bubble and communication per group.
 *
 * @param config the model, layout and cluster
 * @returns the prediction
 * @throws {PlanError} when the layout cannot run the model (memory is reported, not thrown)
 * @example
 * ```ts
 * import { CLUSTER_PRESETS, MODEL_PRESETS, predictStep } from "./mod.ts";
 * const p = predictStep({
 *   model: MODEL_PRESETS["gpt2-124m"],
 *   layout: { microBatchSize: 4, globalBatchSize: 8, precision: "fp32" },
 *   cluster: CLUSTER_PRESETS.cpu,
 * });
 * console.assert(p.mfu > 0 && p.mfu < 1 && p.memory.fits);
 * ```
 */
export function predictStep(config: PlanConfig): StepPrediction {
  const profile = config.profile ?? IMPLEMENTATION_PROFILES["megatron-lm"];
  const problems = [
    ...layoutProblems(config.model, config.layout),
    ...profileProblems(profile, resolveLayout(config.layout)),
  ];
  if (problems.length > 0) throw new PlanError(problems);
  const m = resolveModel(config.model);
  const l = resolveLayout(config.layout);
  const cluster = config.cluster;
  const p = l.pipelineModelParallelSize;
  const v = l.virtualPipelineModelParallelSize;
  const d = l.dataParallelSize;
  const t = l.tensorModelParallelSize;
  const gpus = worldSize(l);
  const mb = numMicroBatches(l);

  const times = stageTimes(m, l, cluster, profile);
  const slowest = Math.max(...times.map((x) => x.total));
  const average = times.reduce((sum, x) => sum + x.total, 0) / p;
  const bubbleSeconds = ((p - 1) / v) * average;
  const pipelineSeconds = mb * slowest + bubbleSeconds;

  // Data parallelism: gradients of the fullest stage, reduced once per step over the
  // data- and context-parallel ranks together (all hold the same parameters). With
  // overlap, buckets go out during the last micro-batch's backward (and parameters are
  // gathered during the next forward).
  const dc = d * l.contextParallelSize;
  const sharding = l.dataParallelShardingStrategy;
  const perParam = bytesPerParameter(l.precision, false, 1);
  const stageParams = Math.max(
    ...Array.from({ length: p }, (_, k) => stageParameters(m, l, k).total),
  );
  const dpBandwidth = dataParallelBandwidth(cluster, t, dc);
  const gradBytes = stageParams * perParam.gradients;
  const weightBytes = stageParams * perParam.weights;
  const reduce = collectiveTime(
    l.useDistributedOptimizer ? "reduce-scatter" : "all-reduce",
    gradBytes,
    dc,
    dpBandwidth,
    cluster.latency,
  );
  const gather = l.useDistributedOptimizer
    ? collectiveTime("all-gather", weightBytes, dc, dpBandwidth, cluster.latency)
    : 0;
  const backwardShare = l.recomputeGranularity === "full" ? 3 / 4 : 2 / 3;
  let dpExposed = l.overlapCommunication
    ? Math.max(0, reduce - backwardShare * slowest) +
      Math.max(0, gather - (1 - backwardShare) * slowest)
    : reduce + gather;
  let dpSeconds = reduce + gather;
  let dpVolume = dc > 1
    ? (l.useDistributedOptimizer ? gradBytes + weightBytes : 2 * gradBytes) * ((dc - 1) / dc)
    : 0;
  if (sharding === "optim_grads_params") {
    // FSDP: every micro-batch gathers the weights for forward and again for backward and
    // reduce-scatters its gradients; with overlap each layer's gather is prefetched
    // behind the previous layer's compute, so only what exceeds the compute shows.
    dpSeconds = mb * (2 * gather + reduce);
    dpVolume = dc > 1 ? mb * (2 * weightBytes + gradBytes) * ((dc - 1) / dc) : 0;
    dpExposed = l.overlapCommunication
      ? mb * (Math.max(0, gather + reduce - backwardShare * slowest) +
        Math.max(0, gather - (1 - backwardShare) * slowest))
      : dpSeconds;
  }

  // Adam reads and writes its state, reads the gradient, writes the weights: memory bound.
  const shard = l.useDistributedOptimizer ? stageParams / dc : stageParams;
  const optimizerBytesPerParam = 2 * bytesPerParameter(l.precision, false, 1).optimizer +
    perParam.gradients + perParam.weights;
  const optimizerSeconds = (shard * optimizerBytesPerParam) / cluster.memoryBandwidth;

  const stepSeconds = pipelineSeconds + dpExposed + optimizerSeconds;
  const flops = flopsPerStep(m, l.globalBatchSize, l.recomputeGranularity);
  const peak = peakFlops(cluster, l.precision);
  const modelFlopsPerGpu = flops.model / stepSeconds / gpus;
  const hardwareFlopsPerGpu = flops.hardware / stepSeconds / gpus;

  const elementBytes = l.precision === "fp32" ? 4 : 2;
  const tensorBytesPerLayer = (l.recomputeGranularity === "full" ? 6 : 4) * 2 * ((t - 1) / t) *
    l.microBatchSize * (m.seqLength / l.contextParallelSize) * m.hiddenSize * elementBytes;
  const worstIndex = times.reduce((best, x, k) => (x.total > times[best].total ? k : best), 0);
  const worst = times[worstIndex];
  const communication: GroupCommunication[] = [
    {
      group: "tensor",
      size: t,
      bytes: t > 1 ? tensorBytesPerLayer * layersPerStage(m, l)[worstIndex] * mb : 0,
      bandwidth: tensorParallelBandwidth(cluster, t),
      seconds: worst.tensorComm * mb,
      exposedSeconds: worst.tensorExposed * mb,
    },
    {
      group: "context",
      size: l.contextParallelSize,
      bytes: worst.contextBytes * mb,
      bandwidth: contextParallelBandwidth(cluster, t, l.contextParallelSize),
      seconds: worst.contextComm * mb,
      exposedSeconds: worst.contextExposed * mb,
    },
    {
      group: "pipeline",
      size: p,
      bytes: p > 1
        ? 2 * v * mb *
          pipelineSendBytes(
            l.microBatchSize * (m.seqLength / l.contextParallelSize) * m.hiddenSize * elementBytes,
            t,
            profile,
          )
        : 0,
      bandwidth: pipelineBandwidth(cluster, t * l.contextParallelSize, d, p),
      seconds: worst.pipelineComm * mb,
      exposedSeconds: worst.pipelineExposed * mb,
    },
    {
      group: "data",
      size: d,
      bytes: dpVolume,
      bandwidth: dpBandwidth,
      seconds: dpSeconds,
      exposedSeconds: dpExposed,
    },
  ];

  const stages = memoryPerStage(m, l, profile);
  const peakStage = stages.reduce((a, x) => (x.total > a.total ? x : a));
  const usable = cluster.memoryBytes - cluster.reservedBytes;
  return {
    model: m,
    layout: l,
    cluster: cluster.name,
    backend: cluster.name === "cpu" ? "shm" : "nccl",
    profile: profile.name,
    gpus,
    parameters: parameterCount(m).total,
    microBatches: mb,
    modelFlops: flops.model,
    hardwareFlops: flops.hardware,
    stepSeconds,
    microBatchSeconds: slowest,
    bubbleSeconds,
    bubbleFraction: bubbleFraction(p, mb, v),
    optimizerSeconds,
    communication,
    modelFlopsPerGpu,
    hardwareFlopsPerGpu,
    mfu: modelFlopsPerGpu / peak,
    hfu: hardwareFlopsPerGpu / peak,
    tokensPerSecond: (l.globalBatchSize * m.seqLength) / stepSeconds,
    memory: { stages, peak: peakStage, usable, fits: peakStage.total <= usable },
  };
}
