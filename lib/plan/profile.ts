/**
 * Implementation profiles: what a training codebase does that the step time and memory
 * depend on, beyond the model, the layout and the hardware. Each profile is fixed from its source
 * before any published run is compared with it; none is tuned per run.
 *
 * defines: ImplementationProfile, MemoryModel, IMPLEMENTATION_PROFILES, profileProblems
 *
 * @module
 */

import type { ResolvedLayout } from "./layout.ts";

/**
 * How a codebase's memory is counted (memory.ts).
 *
 * - `megatron`: Megatron's bytes per parameter, Korthikanti et al.'s activations per
 *   layer (what backward reads), p − k micro-batches in flight on stage k, and a fixed
 *   reserve for the allocator, NCCL and workspaces.
 * - `denotron`: the tensors Denotron's pipeline engine allocates, one by one
 *   (held_tensors.ts): every forward tensor of the micro-batches in flight (each freed
 *   after its backward), one padded copy of each vocabulary table per step, the largest
 *   backward workspace, and the CPU caching allocator's size classes.
 */
export type MemoryModel = "megatron" | "denotron";

/** What one codebase does, as far as the planner's step time and memory are concerned. */
export interface ImplementationProfile {
  /** Name given to `--profile`. */
  name: string;
  /** Where each choice comes from. */
  source: string;
  /**
   * Pipeline sends split each activation over the TP ranks and all-gather it over
   * NVLink on arrival (Narayanan et al. 2021, §4.1, "scatter/gather"): each rank sends
   * b·s·h/t instead of b·s·h over the network.
   */
  pipelineScatterGather: boolean;
  /**
   * Memory traffic of the element-wise work per byte of kept activations (see
   * `MEMORY_TRAFFIC_PER_ACTIVATION_BYTE`); fused bias-GeLU, bias-dropout-add and
   * scale-mask-softmax kernels keep it at 2.
   */
  memoryTrafficPerActivationByte: number;
  /**
   * Whether communication overlap (`overlapCommunication`) also hides the TP all-reduces
   * behind the GEMMs (Megatron-Core's TP communication overlap); if not, overlap covers
   * the data-parallel and pipeline traffic only.
   */
  overlapsTensorParallel: boolean;
  /** Pipeline parallelism: whether the codebase has it. */
  hasPipeline: boolean;
  /** How its memory is counted. */
  memoryModel: MemoryModel;
}

/**
 * The profiles.
 *
 * - `megatron-lm`: Megatron-LM / Megatron-Core. Scatter/gather and fused kernels as in
 *   Narayanan et al. 2021 §4.1–4.2; the memory-traffic factor 2 is the one fitted once
 *   against the two Megatron tables (docs/planner.md).
 * - `deepspeed`: DeepSpeed's pipeline engine driving Megatron's layers (the
 *   Megatron-DeepSpeed codebase of MT-NLG, Smith et al. 2022): the same fused layers,
 *   but its `PipelineModule` sends each stage's whole activation from every TP rank
 *   (no scatter/gather). Its TP layers are Megatron's of 2021, whose all-reduces are not
 *   overlapped.
 * - `metaseq`: Meta's codebase of OPT-175B (Zhang et al. 2022 §2.4): Megatron-LM's
 *   tensor-parallel layers (not overlapped, as in 2021) inside FairScale's FSDP, whose
 *   gathers and reduce-scatters are prefetched and overlapped by design; no pipeline
 *   parallelism. Everything else as `megatron-lm`.
 * - `denotron`: this framework's own pipeline engine (lib/parallel/pipeline.ts
 *   `runPipeline`): every TP rank sends the whole (b, s, h) activation unless sequence
 *   parallelism splits it, and memory as `runPipeline` really holds it, checked against
 *   the CPU allocator's peak (bench/plan_memory.ts). Its time constants are Megatron's,
 *   not checked against our runs.
 *
 * @example
 * ```ts
 * import { IMPLEMENTATION_PROFILES } from "./profile.ts";
 * console.assert(!IMPLEMENTATION_PROFILES.deepspeed.pipelineScatterGather);
 * ```
 */
export const IMPLEMENTATION_PROFILES: Readonly<Record<string, ImplementationProfile>> = Object
  .freeze({
    "megatron-lm": {
      name: "megatron-lm",
      source: "Narayanan et al. 2021 §4.1 (scatter/gather), §4.2 (fused kernels)",
      pipelineScatterGather: true,
      memoryTrafficPerActivationByte: 2,
      overlapsTensorParallel: true,
      hasPipeline: true,
      memoryModel: "megatron",
    },
    deepspeed: {
      name: "deepspeed",
      source: "DeepSpeed PipelineModule p2p sends whole activations; Megatron's fused layers",
      pipelineScatterGather: false,
      memoryTrafficPerActivationByte: 2,
      overlapsTensorParallel: false,
      hasPipeline: true,
      memoryModel: "megatron",
    },
    metaseq: {
      name: "metaseq",
      source:
        "metaseq (OPT, Zhang et al. 2022 §2.4): Megatron-LM's TP layers inside FairScale's FSDP; no pipeline",
      pipelineScatterGather: false,
      memoryTrafficPerActivationByte: 2,
      overlapsTensorParallel: false,
      hasPipeline: false,
      memoryModel: "megatron",
    },
    denotron: {
      name: "denotron",
      source:
        "lib/parallel/pipeline.ts runPipeline (micro-batches freed after their backward, one vocabulary copy per table per step), kernels/cpu/runtime.c size classes",
      pipelineScatterGather: false,
      memoryTrafficPerActivationByte: 2,
      overlapsTensorParallel: false,
      hasPipeline: true,
      memoryModel: "denotron",
    },
  });

/**
 * What a layout asks of a codebase that the codebase does not do, as sentences; empty
 * when it can run the layout.
 *
 * @param profile the codebase
 * @param layout the layout, defaults filled in
 * @returns the problems
 * @example
 * ```ts
 * import { IMPLEMENTATION_PROFILES, profileProblems } from "./profile.ts";
 * import { resolveLayout } from "./layout.ts";
 * const p = profileProblems(IMPLEMENTATION_PROFILES.denotron, resolveLayout({ contextParallelSize: 2 }));
 * console.assert(p[0].startsWith("the denotron profile has no context parallelism"));
 * ```
 */
export function profileProblems(profile: ImplementationProfile, layout: ResolvedLayout): string[] {
  const out: string[] = [];
  if (!profile.hasPipeline && layout.pipelineModelParallelSize > 1) {
    out.push(
      `the ${profile.name} profile has no pipeline parallelism (pipelineModelParallelSize ${layout.pipelineModelParallelSize}); use 1 or another profile`,
    );
  }
  if (profile.memoryModel !== "denotron") return out;
  if (layout.contextParallelSize > 1) {
    out.push(
      `the denotron profile has no context parallelism (contextParallelSize ${layout.contextParallelSize}); use 1 or another profile`,
    );
  }
  const sharding = layout.dataParallelShardingStrategy;
  if (sharding === "optim_grads" || sharding === "optim_grads_params") {
    out.push(
      `the denotron profile shards only the optimizer state (ZeRO-1), not ${sharding}; use optim or no_shard`,
    );
  }
  if (layout.decoderFirstPipelineNumLayers > 0 || layout.decoderLastPipelineNumLayers > 0) {
    out.push(
      "the denotron profile splits the layers evenly over the pipeline; drop decoderFirstPipelineNumLayers/decoderLastPipelineNumLayers",
    );
  }
  return out;
}
