/**
 * Progressive layer dropping (Zhang & He 2020, "Accelerating Training of
 * Transformer-Based Language Models with Progressive Layer Dropping").
 *
 * defines: LayerDropOptions, LayerPlan, pldTheta, keepProbability, dropUniform,
 *          layerDropPlan, fullPlan
 *
 * 1. A global keep level falls from 1 towards theta_bar:
 *    theta(t) = (1 − theta_bar) · exp(−gamma · t) + theta_bar.
 * 2. Layer i of L (counted from 1, the layer nearest the embedding) is kept
 *    with probability 1 − (i / L) · (1 − theta(t)). Counting from 1 is the
 *    paper's convention: the top layer is kept with probability theta(t)
 *    exactly, and every layer, the first included, is sometimes dropped
 *    (counting from 0 would never drop the first layer and never reach theta).
 * 3. A kept layer's residual branches are scaled by 1 / p_i, so the expected
 *    output of the layer, x + p_i · f(x) / p_i, is x + f(x) as without dropping.
 *
 * The decision for (seed, step, layer) is a hash of those three numbers, not a
 * draw from a stateful stream: every rank of a tensor-parallel group and every
 * pipeline stage computes the same plan without communicating, and a resumed
 * run draws what the uninterrupted one did.
 *
 * @module
 */

import type { LayerPlan } from "../nn/gpt.ts";
export type { LayerPlan };

/** Settings of progressive layer dropping (DeepSpeed's names). */
export interface LayerDropOptions {
  /** theta_bar: the keep level theta approaches. @default 0.5 */
  theta?: number;
  /** How fast theta falls per step. @default 0.001 */
  gamma?: number;
}

/**
 * theta(t) = (1 − theta_bar) · exp(−gamma · t) + theta_bar.
 *
 * @param step t, optimizer steps taken
 * @param options theta_bar and gamma
 * @returns the keep level in [theta_bar, 1]
 * @example
 * ```ts
 * import { pldTheta } from "./layer_drop.ts";
 * pldTheta(0); // 1
 * pldTheta(1000); // 0.5 · e^-1 + 0.5 ≈ 0.684
 * ```
 */
export function pldTheta(step: number, options: LayerDropOptions = {}): number {
  const thetaBar = options.theta ?? 0.5;
  const gamma = options.gamma ?? 0.001;
  if (!(thetaBar > 0 && thetaBar <= 1)) {
    throw new Error(`progressive layer drop: theta must be in (0, 1], got ${thetaBar}`);
  }
  if (!(gamma >= 0)) throw new Error(`progressive layer drop: gamma must be >= 0, got ${gamma}`);
  return (1 - thetaBar) * Math.exp(-gamma * step) + thetaBar;
}

/**
 * The keep probability of one layer.
 *
 * @param layer i, counted from 1 (see the module notes)
 * @param numLayers L
 * @param theta the current keep level
 * @returns 1 − (i / L) · (1 − theta)
 */
export function keepProbability(layer: number, numLayers: number, theta: number): number {
  if (!(layer >= 1 && layer <= numLayers)) {
    throw new Error(`keepProbability: layer ${layer} is outside 1..${numLayers} (1-based)`);
  }
  return 1 - (layer / numLayers) * (1 - theta);
}

/** A 32-bit avalanche (the murmur3 finalizer). */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * A uniform number in [0, 1) that depends on (seed, step, layer) only.
 *
 * @param seed the run's seed
 * @param step the optimizer step
 * @param layer the layer (any fixed numbering)
 * @returns u in [0, 1)
 */
export function dropUniform(seed: number, step: number, layer: number): number {
  let h = mix32((seed >>> 0) ^ 0x9e3779b9);
  h = mix32(h ^ (step >>> 0));
  h = mix32(h ^ Math.floor(step / 2 ** 32)); // steps beyond 2^32 still differ
  h = mix32((h + Math.imul(layer + 1, 0x27d4eb2d)) >>> 0);
  return h / 2 ** 32;
}

/**
 * The layers one step keeps: layer i (1-based) is kept when
 * dropUniform(seed, step, i) < keepProbability(i, L, theta).
 *
 * @param seed the run's seed (the same on every rank)
 * @param step the optimizer step
 * @param numLayers L
 * @param theta the keep level for this step (see {@link pldTheta})
 * @returns the plan
 * @example
 * ```ts
 * import { layerDropPlan } from "./layer_drop.ts";
 * layerDropPlan(1234, 0, 4, 1).keep; // [true, true, true, true]: theta 1 keeps all
 * ```
 */
export function layerDropPlan(
  seed: number,
  step: number,
  numLayers: number,
  theta: number,
): LayerPlan {
  if (!(theta > 0 && theta <= 1)) {
    throw new Error(`layerDropPlan: theta must be in (0, 1], got ${theta}`);
  }
  const keep: boolean[] = [];
  const scale: number[] = [];
  for (let i = 1; i <= numLayers; i++) {
    const p = keepProbability(i, numLayers, theta);
    const kept = dropUniform(seed, step, i) < p;
    keep.push(kept);
    scale.push(kept ? 1 / p : 0);
  }
  return { keep, scale };
}

/**
 * The plan of a forward without dropping.
 *
 * @param numLayers L
 * @returns the plan that keeps every layer unscaled
 */
export function fullPlan(numLayers: number): LayerPlan {
  return { keep: Array(numLayers).fill(true), scale: Array(numLayers).fill(1) };
}
