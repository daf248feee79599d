/**
 * Layout search: every way to split a model over N accelerators (tensor, context,
 * pipeline with even or uneven splits and virtual stages, data parallelism with each
 * sharding strategy), costed, the ones that fit ranked by predicted throughput, the
 * others kept with the reason they fail.
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
  type ShardingStrategy,
  unevenSplits,
} from "./layout.ts";
import { layerForwardFlops, logitForwardFlops } from "./flops.ts";
import { type MemoryBreakdown, memoryPerStage } from "./memory.ts";
import { IMPLEMENTATION_PROFILES, type ImplementationProfile, profileProblems } from "./profile.ts";
import { type ModelConfig, resolveModel } from "./model.ts";
import { predictStep, type StepPrediction } from "./predict.ts";

/** What to search over. */
export interface SearchOptions {
  /** The model. */
  model: ModelConfig;
  /** The machines. */
  cluster: ClusterConfig;
  /** Accelerators to use, all of them: t · c · p · d = gpus. */
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
  /**
   * Context-parallel sizes to try. @default every divisor of the GPUs left by t that
   * splits the sequence into 2c chunks (c > 1 only with flash attention)
   */
  contextParallelSizes?: number[];
  /**
   * What data parallelism shards, each tried where it differs from the others (d · c > 1);
   * FSDP only without a pipeline (the planner does not model it with one).
   * @default ["optim", "optim_grads", "optim_grads_params"] with the distributed optimizer, else ["no_shard"]
   */
  shardingStrategies?: ShardingStrategy[];
  /**
   * Try uneven pipeline splits beside the even one (see layout.ts `unevenSplits`; an end
   * gives up at most the output layer's cost in layers, at least 1). @default true
   */
  unevenPipelineSplits?: boolean;
  /** Shard optimizer state over data parallelism (sets the default `shardingStrategies`). @default true */
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
  const terms: [string, number][] = [
    ["weights", peak.weights],
    ["gradients", peak.gradients],
    ["optimizer", peak.optimizer],
    ["activations", peak.activations],
    ["vocabulary copies", peak.vocabularyCopies],
    ["backward workspace", peak.workspace],
    ["gathered layers", peak.gathered],
  ];
  // The four kinds every layout has, then those of the profile or the sharding.
  const named = terms.filter(([, x], i) => i < 4 || x > 0).map(([name, x]) => `${name} ${gb(x)}`);
  return `needs ${gb(peak.total)} GB on stage ${peak.stage} (${named.join(", ")}), ${
    gb(usable)
  } GB usable`;
}

/**
 * Try every (t, c, p, v, split, b, recomputation, sharding) that uses exactly `gpus`
 * accelerators.
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
  const flash = options.flashAttention ?? true;
  const strategies = options.shardingStrategies ??
    ((options.useDistributedOptimizer ?? true)
      ? ["optim", "optim_grads", "optim_grads_params"] as ShardingStrategy[]
      : ["no_shard"] as ShardingStrategy[]);
  const profile = options.profile ?? IMPLEMENTATION_PROFILES["megatron-lm"];
  // An end stage gives up at most the output layer's cost in layers (GPT-2 124M: 5.5 at
  // V = 50,257; Llama 3 405B: 0.6), and at least one layer, which balances memory.
  const layer = layerForwardFlops(m, 1).total;
  const maxShift = Math.max(1, Math.ceil(logitForwardFlops(m, 1) / layer));
  const usable = options.cluster.memoryBytes - options.cluster.reservedBytes;
  // Memory first: most layouts of a large model fail there, and it costs a fraction of
  // the step-time model.
  const tryLayout = (layout: ParallelLayout, problems: string[]) => {
    if (problems.length > 0) {
      rejected.push({ layout: resolveLayout(layout), reason: problems.join("; ") });
      return;
    }
    const stages = memoryPerStage(m, layout, profile);
    const peak = stages.reduce((a, x) => (x.total > a.total ? x : a));
    if (peak.total > usable) {
      rejected.push({ layout: resolveLayout(layout), reason: memoryReason(peak, usable) });
      return;
    }
    ranked.push(predictStep({ model: m, layout, cluster: options.cluster, profile }));
  };
  for (const t of divisors(options.gpus)) {
    // By default only the CP sizes that can run; sizes asked for are tried, or refused
    // with the reason.
    const cs = options.contextParallelSizes?.filter((c) => options.gpus % (t * c) === 0) ??
      divisors(options.gpus / t).filter((c) => c === 1 || (flash && m.seqLength % (2 * c) === 0));
    for (const c of cs) {
      for (const p of divisors(options.gpus / (t * c))) {
        const d = options.gpus / (t * c * p);
        const perStage = m.numLayers / p;
        const splits: { first: number; last: number; v: number }[] = [];
        const vs = p === 1 || !Number.isInteger(perStage)
          ? [1]
          : divisors(perStage).filter((v) => v <= maxV);
        for (const v of vs) splits.push({ first: 0, last: 0, v });
        if (options.unevenPipelineSplits ?? true) {
          for (const x of unevenSplits(m.numLayers, p, maxShift)) splits.push({ ...x, v: 1 });
        }
        // Without replicas to shard over, every strategy is the same: try one.
        const shardings = d * c > 1 ? strategies : strategies.slice(0, 1);
        for (const split of splits) {
          for (const sharding of shardings) {
            if (sharding === "optim_grads_params" && p > 1) continue;
            for (const b of microBatchSizes) {
              // The checks do not depend on recomputation: once per micro-batch size.
              let problems: string[] | null = null;
              for (const r of recomputes) {
                const layout: ParallelLayout = {
                  tensorModelParallelSize: t,
                  contextParallelSize: c,
                  pipelineModelParallelSize: p,
                  virtualPipelineModelParallelSize: split.v,
                  decoderFirstPipelineNumLayers: split.first,
                  decoderLastPipelineNumLayers: split.last,
                  dataParallelSize: d,
                  microBatchSize: b,
                  globalBatchSize: options.globalBatchSize,
                  recomputeGranularity: r,
                  precision: options.precision ?? "bf16",
                  sequenceParallel: (options.sequenceParallel ?? true) && t > 1,
                  dataParallelShardingStrategy: sharding,
                  flashAttention: flash,
                  overlapCommunication: options.overlapCommunication ?? false,
                };
                problems ??= [
                  ...layoutProblems(m, layout),
                  ...profileProblems(profile, resolveLayout(layout)),
                ];
                tryLayout(layout, problems);
              }
            }
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
