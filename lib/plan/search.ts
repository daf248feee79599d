/**
 * Layout search: every way to split a model over N accelerators, costed, the ones that
 * fit ranked by predicted throughput, the others kept with the reason they fail.
 *
 * defines: SearchOptions, SearchResult, searchLayouts, divisors
 *
 * @module
 */

import type { ClusterConfig, Precision } from "./cluster.ts";
import {
  layoutProblems,
  type ParallelLayout,
  type Recompute,
  type ResolvedLayout,
  resolveLayout,
} from "./layout.ts";
import type { MemoryBreakdown } from "./memory.ts";
import type { ImplementationProfile } from "./profile.ts";
import { type ModelConfig, resolveModel } from "./model.ts";
import { predictStep, type StepPrediction } from "./predict.ts";

/** What to search over. */
export interface SearchOptions {
  /** The model. */
  model: ModelConfig;
  /** The machines. */
  cluster: ClusterConfig;
  /** Accelerators to use, all of them: t · p · d = gpus. */
  gpus: number;
  /** Sequences per step. */
  globalBatchSize: number;
  /** Training precision. @default "bf16" */
  precision?: Precision;
  /** Micro-batch sizes to try. @default [1, 2, 4, 8] */
  microBatchSizes?: number[];
  /** Recomputation modes to try. @default ["none", "selective", "full"] */
  recompute?: Recompute[];
  /** Largest virtual pipeline size to try (only sizes dividing layers per stage). @default 8 */
  maxVirtualStages?: number;
  /** Shard optimizer state over data parallelism. @default true */
  useDistributedOptimizer?: boolean;
  /** Sequence parallelism whenever t > 1. @default true */
  sequenceParallel?: boolean;
  /** Fused attention. @default true */
  flashAttention?: boolean;
  /** Overlap communication with compute. @default false */
  overlapCommunication?: boolean;
  /** The codebase. @default IMPLEMENTATION_PROFILES["megatron-lm"] */
  profile?: ImplementationProfile;
}

/** A layout that was tried and why it cannot be used. */
export interface Rejection {
  /** The layout. */
  layout: ResolvedLayout;
  /** The reason, a sentence. */
  reason: string;
}

/** The outcome of a search. */
export interface SearchResult {
  /** Layouts that fit, fastest first. */
  ranked: StepPrediction[];
  /** Layouts that do not, each with its reason. */
  rejected: Rejection[];
}

/**
 * Divisors of n in increasing order.
 *
 * @param n a positive integer
 * @returns its divisors
 * @example
 * ```ts
 * import { divisors } from "./search.ts";
 * console.assert(divisors(12).join() === "1,2,3,4,6,12");
 * ```
 */
export function divisors(n: number): number[] {
  const out: number[] = [];
  for (let k = 1; k <= n; k++) if (n % k === 0) out.push(k);
  return out;
}

const GB = 1e9;

function memoryReason(peak: MemoryBreakdown, usable: number): string {
  const gb = (x: number) => (x / GB).toFixed(1);
  return `needs ${gb(peak.total)} GB on stage ${peak.stage} (weights ${
    gb(peak.weights)
  }, gradients ${gb(peak.gradients)}, optimizer ${gb(peak.optimizer)}, activations ${
    gb(peak.activations)
  }), ${gb(usable)} GB usable`;
}

/**
 * Try every (t, p, v, b, recomputation) that uses exactly `gpus` accelerators.
 *
 * @param options what to search over
 * @returns fitting layouts ranked by tokens per second, and the rejected ones with reasons
 * @example
 * ```ts
 * import { CLUSTER_PRESETS, MODEL_PRESETS, searchLayouts } from "./mod.ts";
 * const r = searchLayouts({ model: MODEL_PRESETS["gpt2-124m"], cluster: CLUSTER_PRESETS.a100, gpus: 8, globalBatchSize: 64 });
 * console.assert(r.ranked.length > 0 && r.ranked[0].gpus === 8);
 * ```
 */
export function searchLayouts(options: SearchOptions): SearchResult {
  const m = resolveModel(options.model);
  const ranked: StepPrediction[] = [];
  const rejected: Rejection[] = [];
  const microBatchSizes = options.microBatchSizes ?? [1, 2, 4, 8];
  const recomputes = options.recompute ?? ["none", "selective", "full"];
  const maxV = options.maxVirtualStages ?? 8;
  for (const t of divisors(options.gpus)) {
    for (const p of divisors(options.gpus / t)) {
      const perStage = m.numLayers / p;
      const vs = p === 1 || !Number.isInteger(perStage)
        ? [1]
        : divisors(perStage).filter((v) => v <= maxV);
      for (const v of vs) {
        for (const b of microBatchSizes) {
          for (const r of recomputes) {
            const layout: ParallelLayout = {
              tensorModelParallelSize: t,
              pipelineModelParallelSize: p,
              virtualPipelineModelParallelSize: v,
              dataParallelSize: options.gpus / (t * p),
              microBatchSize: b,
              globalBatchSize: options.globalBatchSize,
              recomputeGranularity: r,
              precision: options.precision ?? "bf16",
              sequenceParallel: (options.sequenceParallel ?? true) && t > 1,
              useDistributedOptimizer: options.useDistributedOptimizer ?? true,
              flashAttention: options.flashAttention ?? true,
              overlapCommunication: options.overlapCommunication ?? false,
            };
            const problems = layoutProblems(m, layout);
            if (problems.length > 0) {
              rejected.push({ layout: resolveLayout(layout), reason: problems.join("; ") });
              continue;
            }
            const prediction = predictStep({
              model: m,
              layout,
              cluster: options.cluster,
              profile: options.profile,
            });
            if (prediction.memory.fits) ranked.push(prediction);
            else {rejected.push({
                layout: prediction.layout,
                reason: memoryReason(prediction.memory.peak, prediction.memory.usable),
              });}
          }
        }
      }
    }
  }
  ranked.sort((a, b) =>
    b.tokensPerSecond - a.tokensPerSecond || a.memory.peak.total - b.memory.peak.total
  );
  return { ranked, rejected };
}
