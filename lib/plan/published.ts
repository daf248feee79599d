/**
 * Published large-scale runs the planner is checked against, and the check itself.
 *
 * - Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters
 *   Using Megatron-LM", Table 1 (A100 80 GB, fp16, full recomputation; its teraFLOP/s
 *   count the recomputed forward).
 * - Megatron-Core weak-scaling table of the Megatron-LM README (H100, bf16, model FLOPs).
 *
 * defines: PublishedRun, NARAYANAN_2021, MEGATRON_CORE_H100, validateRun
 *
 * @module
 */

import { CLUSTER_PRESETS } from "./cluster.ts";
import type { ParallelLayout } from "./layout.ts";
import { MODEL_PRESETS, parameterCount } from "./model.ts";
import { predictStep } from "./predict.ts";

/** One published configuration and its measured throughput. */
export interface PublishedRun {
  /** Model preset name. */
  model: string;
  /** Parameter count as printed (billions, as many digits as the source gives). */
  parametersBillions: string;
  /** Cluster preset name. */
  cluster: string;
  /** Layout: the published sizes plus our assumptions for what the source leaves out. */
  layout: ParallelLayout;
  /** Published per-GPU teraFLOP/s. */
  teraflopsPerGpu: number;
  /** Published percentage of peak (MFU for the H100 table). */
  percentOfPeak: number;
  /** Which FLOPs the source counts: with the recomputed forward (hardware) or without (model). */
  counts: "hardware" | "model";
}

function a100Run(
  model: string,
  parametersBillions: string,
  t: number,
  p: number,
  gpus: number,
  batch: number,
  teraflopsPerGpu: number,
  percentOfPeak: number,
): PublishedRun {
  return {
    model,
    parametersBillions,
    cluster: "a100",
    layout: {
      tensorModelParallelSize: t,
      pipelineModelParallelSize: p,
      dataParallelSize: gpus / (t * p),
      globalBatchSize: batch,
      microBatchSize: 1,
      precision: "fp16",
      recomputeGranularity: "full",
      flashAttention: false,
      sequenceParallel: false,
      useDistributedOptimizer: false,
      overlapCommunication: false,
    },
    teraflopsPerGpu,
    percentOfPeak,
    counts: "hardware",
  };
}

function h100Run(
  model: string,
  parametersBillions: string,
  t: number,
  p: number,
  gpus: number,
  batch: number,
  teraflopsPerGpu: number,
  percentOfPeak: number,
): PublishedRun {
  return {
    model,
    parametersBillions,
    cluster: "h100",
    layout: {
      tensorModelParallelSize: t,
      pipelineModelParallelSize: p,
      dataParallelSize: gpus / (t * p),
      globalBatchSize: batch,
      microBatchSize: 1,
      precision: "bf16",
      recomputeGranularity: "none",
      flashAttention: true,
      sequenceParallel: t > 1,
      useDistributedOptimizer: true,
      overlapCommunication: true,
    },
    teraflopsPerGpu,
    percentOfPeak,
    counts: "model",
  };
}

/**
 * Narayanan et al. 2021, Table 1: model, parameters (billions), TP, PP, GPUs, batch,
 * teraFLOP/s per GPU, % of peak. Micro-batch 1, fp16 and no interleaving are our
 * assumptions; full recomputation is the paper's.
 */
export const NARAYANAN_2021: readonly PublishedRun[] = [
  a100Run("megatron-1.7b", "1.7", 1, 1, 32, 512, 137, 44),
  a100Run("megatron-3.6b", "3.6", 2, 1, 64, 512, 138, 44),
  a100Run("megatron-7.5b", "7.5", 4, 1, 128, 512, 142, 46),
  a100Run("megatron-18b", "18.4", 8, 1, 256, 1024, 135, 43),
  a100Run("megatron-39b", "39.1", 8, 2, 512, 1536, 138, 44),
  a100Run("megatron-76b", "76.1", 8, 4, 1024, 1792, 140, 45),
  a100Run("megatron-145b", "145.6", 8, 8, 1536, 2304, 148, 47),
  a100Run("megatron-310b", "310.1", 8, 16, 1920, 2160, 155, 50),
  a100Run("megatron-530b", "529.6", 8, 35, 2520, 2520, 163, 52),
  a100Run("megatron-1t", "1008.0", 8, 64, 3072, 3072, 163, 52),
];

/**
 * Megatron-Core weak scaling on H100 (Megatron-LM README): model, size, TP, PP, GPUs,
 * batch, teraFLOP/s per GPU, MFU. Data-parallel size 48 throughout. Micro-batch 1, no
 * recomputation, no interleaving, sequence parallelism and the distributed optimizer
 * are our assumptions; the communication overlap is the README's.
 */
export const MEGATRON_CORE_H100: readonly PublishedRun[] = [
  h100Run("mcore-1.7b", "1.7", 1, 1, 48, 192, 408.8, 41),
  h100Run("mcore-7.1b", "7.1", 2, 1, 96, 192, 465.9, 47),
  h100Run("mcore-16b", "16", 4, 1, 192, 192, 489.1, 49),
  h100Run("mcore-32b", "32", 8, 1, 384, 192, 459.6, 46),
  h100Run("mcore-70b", "70", 8, 2, 768, 384, 419.7, 42),
  h100Run("mcore-119b", "119", 8, 4, 1536, 768, 420.5, 43),
  h100Run("mcore-177b", "177", 8, 6, 2304, 1152, 432.8, 44),
  h100Run("mcore-314b", "314", 8, 8, 3072, 1536, 474.4, 48),
  h100Run("mcore-462b", "462", 8, 16, 6144, 3072, 459.9, 47),
];

/** The planner's numbers beside a published run's. */
export interface ValidationRow {
  /** The run. */
  run: PublishedRun;
  /** Predicted parameter count. */
  parameters: number;
  /** Relative error of the count against the printed one. */
  parameterError: number;
  /** Whether the predicted count is within half a unit of the printed value's last digit. */
  parameterRoundsToPublished: boolean;
  /** Predicted teraFLOP/s per GPU, counted as the source counts. */
  teraflopsPerGpu: number;
  /** Relative error of the throughput. */
  throughputError: number;
  /** Whether the layout fits in memory by the planner's count. */
  fits: boolean;
}

// Within half a unit of the last printed digit: "1.7" admits 1.65 to 1.75.
function roundsTo(value: number, printed: string): boolean {
  const digits = printed.split(".")[1]?.length ?? 0;
  return Math.abs(value - Number(printed)) <= 0.5 * 10 ** -digits + 1e-12;
}

/**
 * Predict a published run and compare.
 *
 * @param run the published run
 * @returns predicted and published numbers with relative errors
 * @example
 * ```ts
 * import { NARAYANAN_2021, validateRun } from "./published.ts";
 * const row = validateRun(NARAYANAN_2021[9]);
 * console.assert(Math.abs(row.parameterError) < 0.01);
 * ```
 */
export function validateRun(run: PublishedRun): ValidationRow {
  const model = MODEL_PRESETS[run.model];
  const cluster = CLUSTER_PRESETS[run.cluster];
  const parameters = parameterCount(model).total;
  const published = Number(run.parametersBillions) * 1e9;
  const prediction = predictStep({ model, layout: run.layout, cluster });
  const perGpu = run.counts === "hardware"
    ? prediction.hardwareFlopsPerGpu
    : prediction.modelFlopsPerGpu;
  const teraflopsPerGpu = perGpu / 1e12;
  return {
    run,
    parameters,
    parameterError: parameters / published - 1,
    parameterRoundsToPublished: roundsTo(parameters / 1e9, run.parametersBillions),
    teraflopsPerGpu,
    throughputError: teraflopsPerGpu / run.teraflopsPerGpu - 1,
    fits: prediction.memory.fits,
  };
}
