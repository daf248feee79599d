/**
 * The parallel layout and training options of a run, named after Megatron's arguments,
 * and the checks a layout must pass before it can be costed.
 *
 * defines: ParallelLayout, ResolvedLayout, Recompute, resolveLayout, layoutProblems
 *
 * @module
 */

import type { Precision } from "./cluster.ts";
import { type ModelConfig, resolveModel } from "./model.ts";

/** Activation recomputation (Korthikanti et al. 2022). */
export type Recompute = "none" | "selective" | "full";

/** How the model is split and trained. */
export interface ParallelLayout {
  /** Tensor-parallel size `t`. @default 1 */
  tensorModelParallelSize?: number;
  /** Pipeline-parallel size `p`. @default 1 */
  pipelineModelParallelSize?: number;
  /** Virtual pipeline stages per rank `v` (interleaved 1F1B). @default 1 */
  virtualPipelineModelParallelSize?: number;
  /** Data-parallel size `d`. @default 1 */
  dataParallelSize?: number;
  /** Sequence parallelism in the TP region (Korthikanti et al. 2022). @default t > 1 */
  sequenceParallel?: boolean;
  /** Shard optimizer state over data-parallel ranks (ZeRO-1). @default false */
  useDistributedOptimizer?: boolean;
  /** Activation recomputation. @default "none" */
  recomputeGranularity?: Recompute;
  /** Sequences per micro-batch `b`. @default 1 */
  microBatchSize?: number;
  /** Sequences per step `B`. @default microBatchSize * dataParallelSize */
  globalBatchSize?: number;
  /** Weights and activations dtype. @default "bf16" */
  precision?: Precision;
  /** Fused (flash) attention: no s×s score matrix in memory. @default true */
  flashAttention?: boolean;
  /** Overlap DP, TP and PP communication with compute (Megatron-Core). @default false */
  overlapCommunication?: boolean;
}

/** A layout with every default filled in. */
export type ResolvedLayout = Required<ParallelLayout>;

/**
 * Fill in the defaults of a layout.
 *
 * @param layout the layout, possibly partial
 * @returns the layout with every field set
 * @example
 * ```ts
 * import { resolveLayout } from "./layout.ts";
 * const l = resolveLayout({ tensorModelParallelSize: 2, dataParallelSize: 4 });
 * console.assert(l.sequenceParallel && l.globalBatchSize === 4);
 * ```
 */
export function resolveLayout(layout: ParallelLayout): ResolvedLayout {
  const t = layout.tensorModelParallelSize ?? 1;
  const d = layout.dataParallelSize ?? 1;
  const b = layout.microBatchSize ?? 1;
  return {
    tensorModelParallelSize: t,
    pipelineModelParallelSize: layout.pipelineModelParallelSize ?? 1,
    virtualPipelineModelParallelSize: layout.virtualPipelineModelParallelSize ?? 1,
    dataParallelSize: d,
    sequenceParallel: layout.sequenceParallel ?? t > 1,
    useDistributedOptimizer: layout.useDistributedOptimizer ?? false,
    recomputeGranularity: layout.recomputeGranularity ?? "none",
    microBatchSize: b,
    globalBatchSize: layout.globalBatchSize ?? b * d,
    precision: layout.precision ?? "bf16",
    flashAttention: layout.flashAttention ?? true,
    overlapCommunication: layout.overlapCommunication ?? false,
  };
}

/**
 * Total ranks of a layout: t · p · d.
 *
 * @param layout the layout
 * @returns the number of accelerators it occupies
 * @example
 * ```ts
 * import { worldSize } from "./layout.ts";
 * console.assert(worldSize({ tensorModelParallelSize: 8, pipelineModelParallelSize: 2, dataParallelSize: 4 }) === 64);
 * ```
 */
export function worldSize(layout: ParallelLayout): number {
  const l = resolveLayout(layout);
  return l.tensorModelParallelSize * l.pipelineModelParallelSize * l.dataParallelSize;
}

/**
 * Micro-batches per step on each data-parallel replica: B / (d · b).
 *
 * @param layout the layout
 * @returns the number of micro-batches `m` (may be fractional for an invalid layout)
 * @example
 * ```ts
 * import { numMicroBatches } from "./layout.ts";
 * console.assert(numMicroBatches({ dataParallelSize: 4, microBatchSize: 2, globalBatchSize: 64 }) === 8);
 * ```
 */
export function numMicroBatches(layout: ParallelLayout): number {
  const l = resolveLayout(layout);
  return l.globalBatchSize / (l.dataParallelSize * l.microBatchSize);
}

function isPositiveInteger(x: number): boolean {
  return Number.isInteger(x) && x >= 1;
}

/**
 * Why a layout cannot run a model, as sentences naming the bad value; empty when it can.
 * Memory is not checked here (see `predictStep`).
 *
 * @param model the model
 * @param layout the layout
 * @returns the problems, empty when the layout is valid
 * @example
 * ```ts
 * import { layoutProblems } from "./layout.ts";
 * import { MODEL_PRESETS } from "./model.ts";
 * const p = layoutProblems(MODEL_PRESETS["gpt2-124m"], { tensorModelParallelSize: 5 });
 * console.assert(p[0] === "tensorModelParallelSize 5 does not divide numAttentionHeads 12");
 * ```
 */
export function layoutProblems(model: ModelConfig, layout: ParallelLayout): string[] {
  const m = resolveModel(model);
  const l = resolveLayout(layout);
  const t = l.tensorModelParallelSize;
  const p = l.pipelineModelParallelSize;
  const v = l.virtualPipelineModelParallelSize;
  const problems: string[] = [];
  const sizes: [string, number][] = [
    ["tensorModelParallelSize", t],
    ["pipelineModelParallelSize", p],
    ["virtualPipelineModelParallelSize", v],
    ["dataParallelSize", l.dataParallelSize],
    ["microBatchSize", l.microBatchSize],
    ["globalBatchSize", l.globalBatchSize],
  ];
  for (const [name, value] of sizes) {
    if (!isPositiveInteger(value)) problems.push(`${name} ${value} is not a positive integer`);
  }
  if (problems.length > 0) return problems;
  if (m.numAttentionHeads % t !== 0) {
    problems.push(
      `tensorModelParallelSize ${t} does not divide numAttentionHeads ${m.numAttentionHeads}`,
    );
  }
  if (m.numQueryGroups % t !== 0 && m.numQueryGroups !== m.numAttentionHeads) {
    problems.push(
      `tensorModelParallelSize ${t} does not divide numQueryGroups ${m.numQueryGroups}`,
    );
  }
  if (l.sequenceParallel && t > 1 && m.seqLength % t !== 0) {
    problems.push(
      `sequenceParallel needs tensorModelParallelSize ${t} to divide seqLength ${m.seqLength}`,
    );
  }
  if (m.numLayers % (p * v) !== 0) {
    problems.push(
      v > 1
        ? `pipelineModelParallelSize ${p} x virtualPipelineModelParallelSize ${v} does not divide numLayers ${m.numLayers}`
        : `pipelineModelParallelSize ${p} does not divide numLayers ${m.numLayers}`,
    );
  }
  if (v > 1 && p === 1) {
    problems.push(`virtualPipelineModelParallelSize ${v} needs pipelineModelParallelSize > 1`);
  }
  const mb = numMicroBatches(l);
  if (!Number.isInteger(mb)) {
    problems.push(
      `globalBatchSize ${l.globalBatchSize} is not a multiple of dataParallelSize ${l.dataParallelSize} x microBatchSize ${l.microBatchSize}`,
    );
  } else if (v > 1 && mb % p !== 0) {
    problems.push(
      `interleaved schedule needs micro-batches per replica (${mb}) to be a multiple of pipelineModelParallelSize ${p}`,
    );
  }
  return problems;
}
