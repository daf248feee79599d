/**
 * The planner: will a model fit, which layout is fastest, and what step time, model
 * FLOP/s and MFU to expect, on any number of accelerators. Pure arithmetic, no I/O.
 *
 * @example
 * ```ts
 * import { CLUSTER_PRESETS, MODEL_PRESETS, predictStep } from "./mod.ts";
 * const p = predictStep({
 *   model: MODEL_PRESETS["gpt3-175b"],
 *   layout: { tensorModelParallelSize: 8, pipelineModelParallelSize: 8, dataParallelSize: 16, globalBatchSize: 1536, useDistributedOptimizer: true, recomputeGranularity: "selective" },
 *   cluster: CLUSTER_PRESETS.h100,
 * });
 * console.assert(p.memory.fits);
 * ```
 *
 * @module
 */

export * from "./cluster.ts";
export * from "./comm.ts";
export * from "./flops.ts";
export * from "./held_tensors.ts";
export * from "./layout.ts";
export * from "./memory.ts";
export * from "./model.ts";
export * from "./predict.ts";
export * from "./profile.ts";
export * from "./published.ts";
export * from "./search.ts";
