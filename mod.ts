/**
 * Denotron: Megatron-style transformer training from TypeScript, on a C kernel
 * library reached through Deno FFI. This module only re-exports; each symbol is
 * documented where it is defined.
 *
 * @example
 * ```ts
 * import { AdamW, GPT, GPT_PRESETS, Tensor, tidy } from "./mod.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * const opt = new AdamW(model.params, { lr: 1e-3 });
 * const x = Tensor.fromArray(new Int32Array(16).fill(1), [2, 8]);
 * const loss = tidy(() => {
 *   const l = model.loss(x, x);
 *   l.backward();
 *   return l.item();
 * });
 * opt.step();
 * console.log(loss);
 * ```
 *
 * @module
 */

// Devices, tensors, autograd
export { Device, device, type MemoryStats } from "./lib/device.ts";
export { DenotronError } from "./lib/errors.ts";
export { type DType, keep, Tensor, type TensorOptions, tidy } from "./lib/tensor.ts";
export { backward, isGradEnabled, noGrad } from "./lib/autograd.ts";
export { Generator, type GeneratorState } from "./lib/random.ts";
export { NativeError } from "./ffi/native.ts";

// Fused ops
export * from "./lib/ops/mod.ts";

// Layers and models
export * from "./lib/nn/mod.ts";

// Optimizers
export * from "./lib/optim/mod.ts";

// Data
export {
  BpeTokenizer,
  ByteTokenizer,
  loadTokenizer,
  type Tokenizer,
} from "./lib/data/tokenizer.ts";
export { IndexedDataset, IndexedDatasetWriter } from "./lib/data/indexed_dataset.ts";
export { buildGptDatasets, GptBatchIterator, GptDataset } from "./lib/data/gpt_dataset.ts";
export { preprocess } from "./lib/data/preprocess.ts";
export { prepareSotuCorpus } from "./lib/data/sotu.ts";

// Files
export { readSafetensors, writeSafetensors } from "./lib/io/safetensors.ts";
export { loadHfGpt2, saveHfGpt2 } from "./lib/io/hf_gpt2.ts";

// Training
export { DEFAULT_CONFIG, loadConfig, type TrainConfig } from "./lib/train/config.ts";
export { LrSchedule } from "./lib/train/lr_schedule.ts";
export { loadCheckpoint, saveCheckpoint } from "./lib/train/checkpoint.ts";
export { train, Trainer } from "./lib/train/trainer.ts";

// Curriculum: sequence-length warmup, progressive layer dropping, batch ramp-up, data difficulty
export * from "./lib/curriculum/mod.ts";

// Inference
export { generate, generateStream } from "./lib/infer/generate.ts";
export { forwardCached, KVCache } from "./lib/infer/kv_cache.ts";

// Model parallelism: TP/SP layers, pipeline stages and schedules, recomputation, full-tensor checkpoints
export * from "./lib/parallel/mod.ts";

// Planning
export { predictStep, searchLayouts } from "./lib/plan/mod.ts";
