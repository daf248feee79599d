/**
 * The fused ops, one file per family, each with forward and backward.
 *
 * @module
 */
export { attention, documentSpans } from "./attention.ts";
export { crossEntropy } from "./crossentropy.ts";
export { add, addScaled, dropout } from "./elementwise.ts";
export { embedding, gatherRows } from "./embedding.ts";
export { type Activation, biasActivation, biasGelu, biasTanh } from "./activation.ts";
export { layernorm } from "./layernorm.ts";
export { linear, linearActivation, linearGelu, matmul, type MatmulOptions } from "./matmul.ts";
export { rmsnorm } from "./rmsnorm.ts";
export { rope, ropeInvFreq, type RopeOptions, type RopeScaling } from "./rope.ts";
export { swiglu } from "./swiglu.ts";
