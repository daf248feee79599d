/**
 * Optimizers and gradient utilities.
 *
 * @module
 */
export { AdamW, type AdamWOptions } from "./adamw.ts";
export { clipFactor, clipGradNorm, gradNorm } from "./clip.ts";
export {
  ConstantGradScaler,
  DynamicGradScaler,
  type DynamicGradScalerOptions,
  type GradScaler,
  type GradScalerState,
} from "./grad_scaler.ts";
export { MixedPrecisionAdamW, type ParameterBytes, parameterBytes } from "./mixed_precision.ts";
