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
export { backward, isGradEnabled, type Node, noGrad } from "./lib/autograd.ts";
export { Generator, type GeneratorState } from "./lib/random.ts";
export {
  type KernelTime,
  NativeError,
  type NativeLibrary,
  Profile,
  type ProfileMode,
} from "./ffi/native.ts";
export { type NativeSymbols, symbols } from "./ffi/symbols.ts";

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
export {
  IndexedDataset,
  IndexedDatasetWriter,
  type TokenDType,
} from "./lib/data/indexed_dataset.ts";
export {
  type Batch,
  type BatchIteratorOptions,
  buildGptDatasets,
  GptBatchIterator,
  GptDataset,
  type GptSplitOptions,
  Rng,
  type SampleDataset,
  type SamplePacking,
} from "./lib/data/gpt_dataset.ts";
export * from "./lib/data/sft_dataset.ts";
export {
  BERT_BASE_UNCASED,
  loadBertBaseUncased,
  loadWordPiece,
  type WordPieceOptions,
  WordPieceTokenizer,
} from "./lib/data/wordpiece.ts";
export * from "./lib/data/bert_dataset.ts";
export * from "./lib/data/bert_masking.ts";
export { splitSentences } from "./lib/data/sentences.ts";
export * from "./lib/data/classification_dataset.ts";
export { loadSpamSplits, type SpamExample, type SpamSplits } from "./lib/data/spam_dataset.ts";
export { prepareEmailSubjects } from "./lib/data/email_subjects.ts";
export {
  bagOfWordsBaseline,
  type BaselineOptions,
  type BaselineResult,
} from "./lib/eval/bag_of_words.ts";
export { type BinaryMetrics, binaryMetrics } from "./lib/eval/classification.ts";
export { batchSource, type TrainingSamples } from "./lib/train/batches.ts";
export {
  BlendedDataset,
  type BlendOptions,
  buildBlendingIndices,
  type DataBlend,
  type DataSpec,
  openDatasets,
  type OpenedData,
  parseDataBlend,
} from "./lib/data/blended_dataset.ts";
export { preprocess, type PreprocessOptions, type PreprocessStats } from "./lib/data/preprocess.ts";
export { prepareSotuCorpus } from "./lib/data/sotu.ts";

// Files
export {
  readSafetensors,
  SAFETENSORS_DTYPE_SIZES,
  type SafetensorsDType,
  type SafetensorsFile,
  type TensorEntry,
  writeSafetensors,
} from "./lib/io/safetensors.ts";
export { loadHfGpt2, saveHfGpt2 } from "./lib/io/hf_gpt2.ts";
export { loadHfLlama, saveHfLlama } from "./lib/io/hf_llama.ts";
export { loadHfBert, type LoadHfBertOptions, saveHfBert } from "./lib/io/hf_bert.ts";
export { type HfModelType, hfModelType, loadHf, saveHf } from "./lib/io/hf.ts";
export type { SaveHfOptions, WriteHfWeightsOptions } from "./lib/io/hf_common.ts";

// Training
export {
  type CheckpointConfig,
  CONFIG_KEYS,
  ConfigError,
  type CurriculumConfig,
  type DataConfig,
  DEFAULT_CONFIG,
  type EvalConfig,
  type LayerDropConfig,
  loadConfig,
  type LoggingConfig,
  type ModelConfig,
  type ParallelConfig,
  type PrecisionConfig,
  type TrainConfig,
  type TrainingConfig,
} from "./lib/train/config.ts";
export type {
  KeyDecl,
  KeyKind,
  KeyOptions,
  KeySection,
  KeyValue,
  SectionType,
  ValueOf,
} from "./lib/key_table.ts";
export {
  LR_DECAY_STYLES,
  LR_WSD_DECAY_STYLES,
  type LrDecayStyle,
  LrSchedule,
  type LrScheduleOptions,
  type LrWsdDecayStyle,
} from "./lib/train/lr_schedule.ts";
export { curriculumFromConfig } from "./lib/train/step_plan.ts";
export {
  type EvalRecord,
  type MetricsRecord,
  ProgressLogger,
  type ProgressOptions,
  type TrainRecord,
} from "./lib/train/logging.ts";
export type { PlotOptions, Series } from "./lib/train/plot.ts";
export {
  loadCheckpoint,
  type LoadTargets,
  saveCheckpoint,
  type SaveOptions,
} from "./lib/train/checkpoint.ts";
export {
  type CheckpointContents,
  CheckpointError,
  type CheckpointRead,
  type CheckpointState,
  type HostTensor,
  type NamedTensors,
  readCheckpoint,
  writeCheckpoint,
} from "./lib/io/checkpoint.ts";
export {
  type EvalResult,
  type StepResult,
  train,
  Trainer,
  type TrainerOptions,
  type TrainHooks,
  type TrainOptions,
  type TrainSummary,
} from "./lib/train/trainer.ts";
export { type EngineStep, SingleModelEngine, type StepEngine } from "./lib/train/engine.ts";
export { ModelParallelEngine, pipelineOptionsFrom } from "./lib/train/pipeline_engine.ts";
export {
  type GradOwnership,
  type OptimizerState,
  type OptimizerStepResult,
  TrainOptimizer,
  type TrainOptimizerOptions,
} from "./lib/train/optimizer.ts";

// Curriculum: sequence-length warmup, progressive layer dropping, batch ramp-up, data difficulty
export * from "./lib/curriculum/mod.ts";

// Inference
export { generate, type GenerateOptions, generateStream } from "./lib/infer/generate.ts";
export type { SampleOptions } from "./lib/infer/sampling.ts";
export { forwardCached, forwardCachedRows, KVCache } from "./lib/infer/kv_cache.ts";
export {
  type ContinuationScore,
  continuationScore,
  type EvalModel,
  gptEvalModel,
  lambadaScore,
  multipleChoiceScore,
  perplexityFrom,
  type PerplexityResult,
  streamNll,
} from "./lib/eval/scoring.ts";
export {
  type EvalTask,
  evaluateTask,
  type FieldKind,
  formatTable,
  readJsonl,
  TASK_FIELDS,
  taskName,
  type TaskResult,
} from "./lib/eval/tasks.ts";
export {
  lcsLength,
  porterStem,
  rouge,
  rougeL,
  rougeN,
  type RougeScore,
  rougeTokens,
} from "./lib/eval/rouge.ts";
export {
  ContinuousBatcher,
  type FinishReason,
  Sequence,
  type SequenceRequest,
  type TokenEvent,
} from "./lib/serve/batcher.ts";
export { GenerationServer, isLoopback, type ServeOptions } from "./lib/serve/server.ts";
export {
  type ChatMessage,
  DEFAULT_LIMITS,
  type Job,
  RequestError,
  type ServeLimits,
} from "./lib/serve/protocol.ts";
export {
  type ChatTemplate,
  chatTemplate,
  FALLBACK_CHAT_TEMPLATE,
  loadChatTemplate,
} from "./lib/serve/chat.ts";

// Distributed runtime: processes, groups, data parallelism, the distributed optimizer
export {
  type Backend,
  newProcessGroup,
  type ProcessGroup,
  type ProcessGroupOptions,
  reduceNumber,
  type ReduceOp,
} from "./lib/parallel/process_group.ts";
export type { StoreAuth, StoreClient, StoreClientOptions } from "./lib/parallel/store.ts";
export type { DistributedEnv } from "./lib/parallel/env.ts";
export { distributedTimeoutMs, setDistributedTimeoutMinutes } from "./lib/parallel/timeouts.ts";
export { ExitSignalHandler, type ExitSignalOptions } from "./lib/parallel/signals.ts";
export {
  type Distributed,
  initDistributed,
  initParallelGroups,
  type ParallelGroups,
} from "./lib/parallel/init.ts";
export {
  type ParallelDim,
  parallelLayout,
  type ParallelSizes,
  RankGenerator,
  type RankLayout,
} from "./lib/parallel/layout.ts";
export { DataParallel, type DataParallelOptions, type GradBucket } from "./lib/parallel/ddp.ts";
export {
  distributedBytesPerParameter,
  DistributedOptimizer,
  type DistributedOptimizerOptions,
  type FlatOptimizerState,
  type Piece as OptimizerPiece,
} from "./lib/parallel/zero.ts";

// Model parallelism: TP/SP layers, pipeline stages and schedules, recomputation, full-tensor checkpoints
export * from "./lib/parallel/mod.ts";

// Planning
export { predictStep, searchLayouts } from "./lib/plan/mod.ts";
export type {
  ClusterConfig,
  GroupCommunication,
  ImplementationProfile,
  MemoryBreakdown,
  MemoryModel,
  MemoryReport,
  ModelConfig as PlanModelConfig,
  Normalization,
  ParallelLayout,
  PlanConfig,
  Precision,
  Recompute,
  Rejection,
  ResolvedLayout,
  ResolvedModel,
  SearchOptions,
  SearchResult,
  ShardingStrategy,
  StepPrediction,
} from "./lib/plan/mod.ts";

// Notebooks: rich display in Jupyter, text elsewhere
export * from "./lib/notebook/mod.ts";
