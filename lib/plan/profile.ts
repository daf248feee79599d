/**
 * Implementation profiles: what a training codebase does that the step time depends on,
 * beyond the model, the layout and the hardware. Each profile is fixed from its source
 * before any published run is compared with it; none is tuned per run.
 *
 * defines: ImplementationProfile, IMPLEMENTATION_PROFILES
 *
 * @module
 */

/** What one codebase does, as far as the planner's step time is concerned. */
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
 *   (no scatter/gather).
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
    },
    deepspeed: {
      name: "deepspeed",
      source: "DeepSpeed PipelineModule p2p sends whole activations; Megatron's fused layers",
      pipelineScatterGather: false,
      memoryTrafficPerActivationByte: 2,
    },
  });
