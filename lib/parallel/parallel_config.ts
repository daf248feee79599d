/**
 * defines: PARALLEL_KEYS, ParallelConfig, DEFAULT_PARALLEL_CONFIG, modelParallelProblems,
 *          batchSizeProblem
 *
 * The parallel section of the training configuration, declared here once (Megatron's
 * names in camelCase, their flags, defaults and bounds; see lib/key_table.ts), and the
 * rules a layout must obey, as pure functions returning sentences. lib/train/config.ts
 * gathers this section into its table and reports these problems as configuration
 * errors; the trainers ask {@link batchSizeProblem} once they know the data-parallel size.
 *
 * @module
 */

import { type KeySection, sectionDefaults, type SectionType } from "../key_table.ts";

/** The parallel section's keys. */
export const PARALLEL_KEYS = {
  /** Ranks each layer is split over (Megatron's tensor parallelism). */
  tensorModelParallelSize: {
    kind: "int",
    default: 1,
    flag: "--tensor-model-parallel-size",
    min: 1,
  },
  /** Pipeline stages the layers are divided into. */
  pipelineModelParallelSize: {
    kind: "int",
    default: 1,
    flag: "--pipeline-model-parallel-size",
    min: 1,
  },
  /** Model chunks per pipeline stage (interleaved 1F1B); null: one. */
  virtualPipelineModelParallelSize: {
    kind: "int",
    default: null,
    flag: "--virtual-pipeline-model-parallel-size",
    min: 1,
    nullable: true,
  },
  /** Split the layernorm and dropout regions along the tokens across the TP group. */
  sequenceParallel: { kind: "bool", default: false, flag: "--sequence-parallel" },
  /** Activation recomputation: whole layers ("full") or core attention ("selective"); null: off. */
  recomputeGranularity: {
    kind: "string",
    choices: ["full", "selective"],
    default: null,
    flag: "--recompute-granularity",
    nullable: true,
  },
  /** With "full": groups of recomputeNumLayers ("uniform") or the first N per stage ("block"). */
  recomputeMethod: {
    kind: "string",
    choices: ["uniform", "block"],
    default: null,
    flag: "--recompute-method",
    nullable: true,
  },
  /** With "full": layers per recomputed group (uniform) or per stage (block). */
  recomputeNumLayers: {
    kind: "int",
    default: null,
    flag: "--recompute-num-layers",
    min: 1,
    nullable: true,
  },
  /** ZeRO-1: under the launcher each data-parallel rank keeps optimizer state for its shard only. */
  useDistributedOptimizer: { kind: "bool", default: false, flag: "--use-distributed-optimizer" },
  /**
   * Minutes a rank waits for its peers in a collective or store wait before the job fails
   * (Megatron's name); null: DENOTRON_DISTRIBUTED_TIMEOUT_MINUTES, else two minutes.
   */
  distributedTimeoutMinutes: {
    kind: "number",
    default: null,
    flag: "--distributed-timeout-minutes",
    min: 0,
    exclusiveMin: true,
    max: 7 * 24 * 60,
    nullable: true,
  },
} as const satisfies KeySection;

/** The parallel layout, as the training configuration's `parallel` section holds it. */
export type ParallelConfig = SectionType<typeof PARALLEL_KEYS>;

/** No model parallelism, no interleaving, no sequence parallelism, no recomputation. Frozen. */
export const DEFAULT_PARALLEL_CONFIG: Readonly<ParallelConfig> = Object.freeze(
  sectionDefaults(PARALLEL_KEYS),
);

/**
 * Every problem of `p` with a model of `m`, each a sentence naming the values and the
 * way out; empty when the settings are consistent.
 *
 * @param m the model's shape
 * @param p the layout
 * @returns the problems
 * @example
 * ```ts
 * import { DEFAULT_PARALLEL_CONFIG, modelParallelProblems } from "./parallel_config.ts";
 * const p = { ...DEFAULT_PARALLEL_CONFIG, tensorModelParallelSize: 3 };
 * modelParallelProblems({ nLayer: 4, nHead: 16, nEmbd: 64 }, p);
 * // ["tensorModelParallelSize 3 does not divide numAttentionHeads 16; pick a divisor ..."]
 * ```
 */
export function modelParallelProblems(
  m: { nLayer: number; nHead: number; nEmbd: number; vocabMultiple?: number },
  p: Readonly<ParallelConfig>,
): string[] {
  const out: string[] = [];
  const tp = p.tensorModelParallelSize, pp = p.pipelineModelParallelSize;
  if ((tp > 1 || pp > 1) && (m.vocabMultiple ?? 1) !== 1) {
    out.push(
      `vocabMultiple ${m.vocabMultiple} applies to single-device models; tensor and pipeline ` +
        `parallelism split (and pad) the vocabulary themselves: leave it at 1`,
    );
  }
  if (m.nHead % tp !== 0) {
    out.push(
      `tensorModelParallelSize ${tp} does not divide numAttentionHeads ${m.nHead}; pick a divisor of the head count`,
    );
  }
  const vpp = p.virtualPipelineModelParallelSize;
  if (vpp !== null) {
    if (pp < 2) {
      out.push(
        `virtualPipelineModelParallelSize ${vpp} needs pipelineModelParallelSize > 1 (it is ${pp})`,
      );
    }
    if (m.nLayer % (pp * vpp) !== 0) {
      out.push(
        `pipelineModelParallelSize ${pp} × virtualPipelineModelParallelSize ${vpp} does not divide numLayers ${m.nLayer}`,
      );
    }
  } else if (m.nLayer % pp !== 0) {
    // The way out: our pipeline splits layers evenly (no decoder-first/last-pipeline-num-layers).
    const sizes = [...Array(m.nLayer).keys()].map((k) => k + 1).filter((k) => m.nLayer % k === 0);
    out.push(
      `pipelineModelParallelSize ${pp} does not divide numLayers ${m.nLayer}; the trainer splits ` +
        `the layers evenly over the stages: use one of ${sizes.join(", ")}`,
    );
  }
  const g = p.recomputeGranularity;
  if (g === "full") {
    if (p.recomputeMethod === null) {
      out.push(`recomputeGranularity "full" needs recomputeMethod "uniform" or "block"`);
    }
    if (p.recomputeNumLayers === null) {
      out.push(`recomputeGranularity "full" needs recomputeNumLayers (layers per group or stage)`);
    } else if (p.recomputeNumLayers > m.nLayer / pp) {
      out.push(
        `recomputeNumLayers ${p.recomputeNumLayers} exceeds the ${
          m.nLayer / pp
        } layers of a pipeline stage`,
      );
    }
  } else if (p.recomputeMethod !== null || p.recomputeNumLayers !== null) {
    out.push(
      `recomputeMethod and recomputeNumLayers apply to recomputeGranularity "full" only (it is ${
        g === null ? "unset" : `"${g}"`
      })`,
    );
  }
  return out;
}

/**
 * Why a global batch does not split into whole micro-batches on every data-parallel
 * rank (globalBatchSize must be a positive multiple of microBatchSize × dp), with the
 * nearest batch that does; null when it splits. The one statement of this rule: the
 * configuration checks it with dp = 1, the trainers with their data-parallel size, and
 * every step again (batch-size ramp-up, one-off plans).
 *
 * @param globalBatchSize samples per optimizer step
 * @param microBatchSize samples per forward-backward pass
 * @param dataParallelSize data-parallel ranks @default 1
 * @returns the problem as a sentence, or null
 * @example
 * ```ts
 * import { batchSizeProblem } from "./parallel_config.ts";
 * batchSizeProblem(10, 4); // "globalBatchSize 10 is not a positive multiple of microBatchSize 4; choose 8 or 12"
 * batchSizeProblem(16, 4, 2); // null
 * ```
 */
export function batchSizeProblem(
  globalBatchSize: number,
  microBatchSize: number,
  dataParallelSize = 1,
): string | null {
  const unit = microBatchSize * dataParallelSize;
  if (
    Number.isInteger(globalBatchSize) && globalBatchSize >= unit && globalBatchSize % unit === 0
  ) {
    return null;
  }
  const of = dataParallelSize === 1
    ? `microBatchSize ${microBatchSize}`
    : `microBatchSize ${microBatchSize} × data-parallel size ${dataParallelSize}`;
  const below = Math.floor(globalBatchSize / unit) * unit;
  const choose = below >= unit ? `${below} or ${below + unit}` : `${unit}`;
  return `globalBatchSize ${globalBatchSize} is not a positive multiple of ${of}; choose ${choose}`;
}
