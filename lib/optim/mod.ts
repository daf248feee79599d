/**
 * Optimizers and gradient utilities.
 *
 * @module
 */
export { AdamW, type AdamWOptions } from "./adamw.ts";
export { clipFactor, clipGradNorm, gradNorm } from "./clip.ts";
