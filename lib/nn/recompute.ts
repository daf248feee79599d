/**
 * defines: RecomputeOptions, checkpoint, recomputeGroups
 *
 * Activation recomputation: a checkpointed region keeps only its input during the
 * forward pass and runs again, with the graph recorded, when backward reaches it. The
 * dropout stream is put back to where the region started, so the masks — and the
 * gradients — are identical to the run without recomputation.
 *
 * @module
 */
import { backward, gradOf, isGradEnabled, needsGrad, noGrad, record } from "../autograd.ts";
import { DenotronError } from "../errors.ts";
import type { Generator } from "../random.ts";
import { type Tensor, tidy } from "../tensor.ts";
import { accumulateInto } from "../ops/elementwise.ts";

/** Megatron's recomputation settings. */
export interface RecomputeOptions {
  /** "full": whole layers; "selective": the core attention only. */
  granularity: "full" | "selective";
  /** With "full": "uniform" (every group of numLayers layers) or "block" (the first numLayers). */
  method?: "uniform" | "block";
  /** With "full": layers per group (uniform) or layers recomputed (block). @default 1 */
  numLayers?: number;
}

/**
 * Runs `fn(x)` without recording its graph, and records one node that reruns it in
 * backward. Forward: fn(x), only x kept. Backward: fn again (same dropout counters),
 * then backpropagation through it into the parameters and x.
 *
 * @param x the region's input
 * @param fn the region (its parameters are reached through the closure)
 * @param rng the dropout stream fn draws from, if any: restored for the rerun
 * @returns fn(x)
 */
export function checkpoint(x: Tensor, fn: (x: Tensor) => Tensor, rng?: Generator): Tensor {
  if (!isGradEnabled() || !needsGrad(x)) return fn(x);
  const start = rng?.offset ?? 0;
  // Everything fn allocates but its output is freed here, not at the end of the step.
  const out = tidy(() => noGrad(() => fn(x)));
  return record(out, {
    name: "checkpoint",
    inputs: [x],
    backward(g) {
      const resume = rng?.offset ?? 0;
      if (rng) rng.offset = start;
      // A view of x that is a leaf of the rerun's graph.
      const input = x.view(x.shape);
      input.requiresGrad = true;
      tidy(() => {
        const again = fn(input);
        if (rng) rng.offset = resume;
        if (!again.requiresGrad) {
          throw new DenotronError("checkpoint: the recomputed region does not depend on its input");
        }
        backward(again, g);
      });
      if (input.grad) accumulateInto(gradOf(x), input.grad);
      input.grad?.dispose();
      input.dispose();
    },
  });
}

/**
 * Which layers of a stage (or model chunk) of `n` layers run inside one checkpoint:
 * groups of consecutive layer positions; layers in no group keep their activations.
 *
 * @example
 * ```ts
 * import { recomputeGroups } from "./recompute.ts";
 * console.log(recomputeGroups(4, { granularity: "full", method: "uniform", numLayers: 2 }));
 * // [[0, 1], [2, 3]]
 * console.log(recomputeGroups(4, { granularity: "full", method: "block", numLayers: 3 }));
 * // [[0], [1], [2]]
 * ```
 */
export function recomputeGroups(n: number, o: RecomputeOptions | null | undefined): number[][] {
  if (!o || o.granularity !== "full") return [];
  const k = o.numLayers ?? 1;
  if (!Number.isInteger(k) || k < 1) {
    throw new DenotronError(`recomputeNumLayers must be a positive integer, got ${k}`);
  }
  const out: number[][] = [];
  if ((o.method ?? "uniform") === "uniform") {
    for (let i = 0; i < n; i += k) {
      out.push([...Array(Math.min(k, n - i)).keys()].map((j) => i + j));
    }
  } else {
    for (let i = 0; i < Math.min(k, n); i++) out.push([i]);
  }
  return out;
}
