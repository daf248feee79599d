/**
 * The parallel layout and training options of a run, named after Megatron's arguments,
 * and the checks a layout must pass before it can be costed.
 *
 * defines: ParallelLayout, ResolvedLayout, Recompute, ShardingStrategy, resolveLayout,
 * layersPerStage, PipelineSplit, unevenSplits, layoutProblems
 *
 * @module
 */

import type { Precision } from "./cluster.ts";
import { type ModelConfig, resolveModel } from "./model.ts";

/**
 * What data parallelism shards (Megatron's `--data-parallel-sharding-strategy`):
 * `no_shard` replicates everything; `optim` is ZeRO-1 (the distributed optimizer);
 * `optim_grads` is ZeRO-2 (gradients reduce-scattered into shards); `optim_grads_params`
 * is ZeRO-3 / FSDP (weights too, gathered layer by layer for forward and backward).
 */
export type ShardingStrategy = "no_shard" | "optim" | "optim_grads" | "optim_grads_params";

/** Activation recomputation (Korthikanti et al. 2022). */
export type Recompute = "none" | "selective" | "full";

/** How the model is split and trained. */
export interface ParallelLayout {
  /** Tensor-parallel size `t`. @default 1 */
  tensorModelParallelSize?: number;
  /**
   * Context-parallel size `c` (ring attention over sequence chunks; Megatron's rank order
   * puts the CP group right after TP). @default 1
   */
  contextParallelSize?: number;
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
  /** What data parallelism shards; overrides `useDistributedOptimizer`. @default "optim" with the distributed optimizer, else "no_shard" */
  dataParallelShardingStrategy?: ShardingStrategy;
  /** Transformer layers on the first pipeline stage (uneven split). @default even split */
  decoderFirstPipelineNumLayers?: number;
  /** Transformer layers on the last pipeline stage (uneven split). @default even split */
  decoderLastPipelineNumLayers?: number;
  /** Activation recomputation. @default "none" */
  recomputeGranularity?: Recompute;
  /**
   * With full recomputation, each TP rank keeps 1/t of every checkpointed layer input
   * (Megatron's `--distribute-saved-activations`, metaseq's
   * `--distribute-checkpointed-activations`); sequence parallelism does this anyway.
   * @default false
   */
  distributeSavedActivations?: boolean;
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

/** A layout with every default filled in; 0 first/last layers means an even split. */
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
  const sharding = layout.dataParallelShardingStrategy ??
    (layout.useDistributedOptimizer ? "optim" : "no_shard");
  return {
    tensorModelParallelSize: t,
    contextParallelSize: layout.contextParallelSize ?? 1,
    pipelineModelParallelSize: layout.pipelineModelParallelSize ?? 1,
    virtualPipelineModelParallelSize: layout.virtualPipelineModelParallelSize ?? 1,
    dataParallelSize: d,
    sequenceParallel: layout.sequenceParallel ?? t > 1,
    useDistributedOptimizer: sharding !== "no_shard",
    dataParallelShardingStrategy: sharding,
    decoderFirstPipelineNumLayers: layout.decoderFirstPipelineNumLayers ?? 0,
    decoderLastPipelineNumLayers: layout.decoderLastPipelineNumLayers ?? 0,
    recomputeGranularity: layout.recomputeGranularity ?? "none",
    distributeSavedActivations: layout.distributeSavedActivations ?? false,
    microBatchSize: b,
    globalBatchSize: layout.globalBatchSize ?? b * d,
    precision: layout.precision ?? "bf16",
    flashAttention: layout.flashAttention ?? true,
    overlapCommunication: layout.overlapCommunication ?? false,
  };
}

/**
 * Total ranks of a layout: t · c · p · d.
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
  return l.tensorModelParallelSize * l.contextParallelSize * l.pipelineModelParallelSize *
    l.dataParallelSize;
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

/**
 * Transformer layers on each pipeline stage. Even by default; with
 * `decoderFirstPipelineNumLayers` / `decoderLastPipelineNumLayers` (Megatron's uneven
 * split, used to make room for the embedding and the output layer) the stages between
 * share the rest evenly. May be fractional for an invalid layout (see `layoutProblems`).
 *
 * @param model the model
 * @param layout the layout
 * @returns layers per stage, stage 0 first
 * @example
 * ```ts
 * import { layersPerStage } from "./layout.ts";
 * import { MODEL_PRESETS } from "./model.ts";
 * const l = layersPerStage(MODEL_PRESETS["llama3-405b"], { pipelineModelParallelSize: 16, decoderFirstPipelineNumLayers: 7, decoderLastPipelineNumLayers: 7 });
 * console.assert(l[0] === 7 && l[1] === 8 && l[15] === 7);
 * ```
 */
export function layersPerStage(model: ModelConfig, layout: ParallelLayout): number[] {
  const n = resolveModel(model).numLayers;
  const l = resolveLayout(layout);
  const p = l.pipelineModelParallelSize;
  const first = l.decoderFirstPipelineNumLayers;
  const last = l.decoderLastPipelineNumLayers;
  if (p === 1 || (first === 0 && last === 0)) return Array(p).fill(n / p);
  const fixed = (first > 0 ? 1 : 0) + (last > 0 ? 1 : 0);
  const middle = p > fixed ? (n - first - last) / (p - fixed) : 0;
  return Array.from(
    { length: p },
    (_, k) => (k === 0 && first > 0 ? first : k === p - 1 && last > 0 ? last : middle),
  );
}

/** First and last stage layers of a pipeline split; 0 for an even split. */
export interface PipelineSplit {
  /** Layers of the first stage (`decoderFirstPipelineNumLayers`), 0 when even. */
  first: number;
  /** Layers of the last stage (`decoderLastPipelineNumLayers`), 0 when even. */
  last: number;
}

/**
 * Uneven pipeline splits in Megatron's form: the first and/or the last stage hold up to
 * `maxShift` layers fewer than the k of every stage between (they also hold the embedding
 * and the output layer), and the rest divide evenly; for p = 2, the split point moves up
 * to `maxShift` layers either way from the middle. An end of k layers is given as 0, as
 * Megatron leaves it unset. The even split is left out.
 *
 * @param numLayers the layers L
 * @param p pipeline stages
 * @param maxShift how many layers an end stage may give up
 * @returns the splits, none for p = 1
 * @example
 * ```ts
 * import { unevenSplits } from "./layout.ts";
 * // Llama 3 405B's 126 layers over 16 stages: 7 + 14·8 + 7 is one of them
 * console.assert(unevenSplits(126, 16, 1).some((x) => x.first === 7 && x.last === 7));
 * console.assert(unevenSplits(12, 2, 2).length === 4); // 4+8, 5+7, 7+5, 8+4
 * ```
 */
export function unevenSplits(numLayers: number, p: number, maxShift: number): PipelineSplit[] {
  const out: PipelineSplit[] = [];
  if (p < 2) return out;
  if (p === 2) {
    const lo = Math.max(1, Math.ceil(numLayers / 2 - maxShift));
    const hi = Math.min(numLayers - 1, Math.floor(numLayers / 2 + maxShift));
    for (let first = lo; first <= hi; first++) {
      if (2 * first !== numLayers) out.push({ first, last: numLayers - first });
    }
    return out;
  }
  for (let k = Math.ceil(numLayers / p); k <= Math.floor((numLayers + 2 * maxShift) / p); k++) {
    const ends = numLayers - (p - 2) * k;
    const least = Math.max(1, k - maxShift);
    for (let first = Math.max(least, ends - k); first <= Math.min(k, ends - least); first++) {
      const last = ends - first;
      if (first === k && last === k) continue; // the even split
      out.push({ first: first === k ? 0 : first, last: last === k ? 0 : last });
    }
  }
  return out;
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
    ["contextParallelSize", l.contextParallelSize],
    ["pipelineModelParallelSize", p],
    ["virtualPipelineModelParallelSize", v],
    ["dataParallelSize", l.dataParallelSize],
    ["microBatchSize", l.microBatchSize],
    ["globalBatchSize", l.globalBatchSize],
  ];
  for (const [name, value] of sizes) {
    if (!isPositiveInteger(value)) problems.push(`${name} ${value} is not a positive integer`);
  }
  const encoder = m.encoder;
  if (encoder && !(encoder.maskedFraction > 0 && encoder.maskedFraction <= 1)) {
    problems.push(
      `encoder.maskedFraction ${encoder.maskedFraction} is not in (0, 1]; BERT masks 0.15 of the tokens`,
    );
  }
  if (encoder && !(Number.isInteger(encoder.tokenTypes) && encoder.tokenTypes >= 0)) {
    problems.push(`encoder.tokenTypes ${encoder.tokenTypes} is not a non-negative integer`);
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
  const c = l.contextParallelSize;
  if (c > 1 && m.seqLength % (2 * c) !== 0) {
    problems.push(
      `contextParallelSize ${c} needs seqLength ${m.seqLength} to divide into 2 x ${c} chunks (each rank takes one from each end, to balance the causal mask)`,
    );
  }
  if (c > 1 && !l.flashAttention) {
    problems.push(
      `contextParallelSize ${c} needs flash attention (ring attention is a fused kernel)`,
    );
  }
  if (l.sequenceParallel && t > 1 && m.seqLength % t !== 0) {
    problems.push(
      `sequenceParallel needs tensorModelParallelSize ${t} to divide seqLength ${m.seqLength}`,
    );
  }
  const uneven = l.decoderFirstPipelineNumLayers > 0 || l.decoderLastPipelineNumLayers > 0;
  if (uneven) problems.push(...unevenProblems(m.numLayers, l));
  else if (m.numLayers % (p * v) !== 0) problems.push(indivisibleLayers(m.numLayers, p, v));
  if (v > 1 && p === 1) {
    problems.push(`virtualPipelineModelParallelSize ${v} needs pipelineModelParallelSize > 1`);
  }
  const mb = numMicroBatches(l);
  if (l.dataParallelShardingStrategy === "optim_grads_params" && p > 1) {
    problems.push(
      `dataParallelShardingStrategy optim_grads_params (FSDP) with pipelineModelParallelSize ${p} is not modelled; use optim_grads or pipelineModelParallelSize 1`,
    );
  }
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

// The way out of layers that do not divide: the uneven split that moves the fewest
// layers (the first stage keeping the larger end), else a size that divides.
function indivisibleLayers(numLayers: number, p: number, v: number): string {
  const sizes = `a pipeline size that divides ${numLayers}`;
  if (v > 1) {
    return `pipelineModelParallelSize ${p} x virtualPipelineModelParallelSize ${v} does not divide numLayers ${numLayers}; choose sizes whose product divides ${numLayers} (an uneven split does not combine with virtual stages)`;
  }
  const head = `pipelineModelParallelSize ${p} does not divide numLayers ${numLayers}`;
  for (let shift = 1; shift < numLayers; shift++) {
    const splits = unevenSplits(numLayers, p, shift).filter((x) => x.first >= x.last);
    if (splits.length === 0) continue;
    const best = splits.reduce((
      a,
      x,
    ) => (Math.abs(x.first - x.last) < Math.abs(a.first - a.last) ? x : a));
    const flags = [
      best.first > 0 ? `--decoder-first-pipeline-num-layers ${best.first}` : "",
      best.last > 0 ? `--decoder-last-pipeline-num-layers ${best.last}` : "",
    ].filter((x) => x).join(" ");
    return `${head}; split it unevenly, e.g. ${flags} (decoderFirstPipelineNumLayers/decoderLastPipelineNumLayers), or use ${sizes}`;
  }
  return `${head}; use ${sizes}`;
}

function unevenProblems(numLayers: number, l: ResolvedLayout): string[] {
  const p = l.pipelineModelParallelSize;
  const first = l.decoderFirstPipelineNumLayers;
  const last = l.decoderLastPipelineNumLayers;
  const out: string[] = [];
  for (
    const [name, value] of [["decoderFirstPipelineNumLayers", first], [
      "decoderLastPipelineNumLayers",
      last,
    ]] as const
  ) {
    if (!Number.isInteger(value) || value < 0) out.push(`${name} ${value} is not a whole number`);
  }
  if (out.length > 0) return out;
  if (p === 1) {
    return [
      "decoderFirstPipelineNumLayers/decoderLastPipelineNumLayers need pipelineModelParallelSize > 1",
    ];
  }
  if (l.virtualPipelineModelParallelSize > 1) {
    return ["an uneven pipeline split with virtualPipelineModelParallelSize > 1 is not modelled"];
  }
  const fixed = (first > 0 ? 1 : 0) + (last > 0 ? 1 : 0);
  const rest = numLayers - first - last;
  const between = p - fixed;
  if (
    rest < 0 || (between === 0 && rest !== 0) ||
    (between > 0 && (rest % between !== 0 || rest === 0))
  ) {
    out.push(
      `numLayers ${numLayers} less the first stage's ${first} and the last stage's ${last} does not divide evenly over the ${between} stages between`,
    );
  }
  return out;
}
