/**
 * Layers and models.
 *
 * @module
 */
export {
  CausalSelfAttention,
  paddingLayout,
  type SequenceLayout,
  sequenceLayout,
} from "./attention.ts";
export { Block, type BlockOptions } from "./block.ts";
export {
  BERT_ARCHITECTURE,
  describeArchitecture,
  dropoutDraws,
  type ForwardOptions,
  GPT,
  GPT_PRESETS,
  type GPTConfig,
  gptConfigWithDefaults,
  type GPTOptions,
  isEncoder,
  isGpt2Architecture,
  type LayerPlan,
  LLAMA_ARCHITECTURE,
  paddedVocabSize,
  type PretrainingBatch,
  type PretrainingLoss,
  validateGPTConfig,
} from "./gpt.ts";
export { MaskedLMHead, Pooler } from "./heads.ts";
export { Embedding, LayerNorm, Linear, makeNorm, type Norm, RMSNorm } from "./layers.ts";
export { MLP } from "./mlp.ts";
export { FlatParameters, type Init, Module, type ParamSpec } from "./module.ts";
