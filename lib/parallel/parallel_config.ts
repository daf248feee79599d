/**
 * defines: ModelParallelSettings, DEFAULT_MODEL_PARALLEL, modelParallelProblems
 *
 * The model-parallel configuration keys (Megatron's names in camelCase) and their
 * checks, as pure data: lib/train/config.ts reads the keys and reports these problems
 * as configuration errors.
 *
 * @module
 */

/** Model-parallel settings beyond the tensor and pipeline sizes. */
export interface ModelParallelSettings {
  /** Tensor-parallel size. */
  tensorModelParallelSize: number;
  /** Pipeline-parallel size (stages). */
  pipelineModelParallelSize: number;
  /** Model chunks per pipeline stage (the interleaved schedule); null: one. */
  virtualPipelineModelParallelSize: number | null;
  /** Split the layernorm and dropout regions along the tokens (needs TP > 1 to matter). */
  sequenceParallel: boolean;
  /** Activation recomputation: "full" (whole layers) or "selective" (core attention). */
  recomputeGranularity: "full" | "selective" | null;
  /** With "full": "uniform" (groups of recomputeNumLayers) or "block" (the first N per stage). */
  recomputeMethod: "uniform" | "block" | null;
  /** With "full": layers per group (uniform) or layers recomputed per stage (block). */
  recomputeNumLayers: number | null;
}

/** Defaults: no interleaving, no sequence parallelism, no recomputation. */
export const DEFAULT_MODEL_PARALLEL: Omit<
  ModelParallelSettings,
  "tensorModelParallelSize" | "pipelineModelParallelSize"
> = {
  virtualPipelineModelParallelSize: null,
  sequenceParallel: false,
  recomputeGranularity: null,
  recomputeMethod: null,
  recomputeNumLayers: null,
};

/**
 * Every problem of `p` with a model of `m`, each a sentence naming the values and the
 * way out; empty when the settings are consistent.
 *
 * @example
 * ```ts
 * import { DEFAULT_MODEL_PARALLEL, modelParallelProblems } from "./parallel_config.ts";
 * const p = { ...DEFAULT_MODEL_PARALLEL, tensorModelParallelSize: 3, pipelineModelParallelSize: 1 };
 * console.log(modelParallelProblems({ nLayer: 4, nHead: 16, nEmbd: 64 }, p));
 * // ["tensorModelParallelSize 3 does not divide numAttentionHeads 16 ..."]
 * ```
 */
export function modelParallelProblems(
  m: { nLayer: number; nHead: number; nEmbd: number; vocabMultiple?: number },
  p: ModelParallelSettings,
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
