/**
 * Layers and models.
 *
 * @module
 */
export { CausalSelfAttention, type SequenceLayout, sequenceLayout } from "./attention.ts";
export { Block, type BlockOptions } from "./block.ts";
export {
  dropoutDraws,
  GPT,
  GPT_PRESETS,
  type GPTConfig,
  gptConfigWithDefaults,
  type GPTOptions,
  isGpt2Architecture,
  type LayerPlan,
  LLAMA_ARCHITECTURE,
  paddedVocabSize,
  validateGPTConfig,
} from "./gpt.ts";
export { Embedding, LayerNorm, Linear, makeNorm, type Norm, RMSNorm } from "./layers.ts";
export { MLP } from "./mlp.ts";
export { FlatParameters, type Init, Module, type ParamSpec } from "./module.ts";
