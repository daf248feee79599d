/**
 * Model parallelism: tensor- and sequence-parallel layers and GPT, pipeline stages and
 * schedules, activation recomputation and layout-independent checkpoints.
 *
 * @module
 */
export { accumulateInto } from "../ops/elementwise.ts";
export {
  copyToTensorRegion,
  gatherFromLastDim,
  gatherFromSequenceRegion,
  reduceFromTensorRegion,
  scatterToLastDim,
  scatterToSequenceRegion,
  sequenceShard,
} from "./mappings.ts";
export {
  ColumnParallelLinear,
  initTensorParallelParams,
  type LayerOptions,
  localShape,
  RowParallelLinear,
  ShardedModule,
  shardIndices,
  shardOwner,
  type ShardSpec,
  syncTensorParallelGrads,
  type TensorParallelInfo,
  tensorParallelInfo,
  VocabParallelEmbedding,
} from "./tp_layers.ts";
export {
  PAD_LOGIT,
  padRows,
  vocabParallelCrossEntropy,
  vocabShardTargets,
} from "./cross_entropy.ts";
export {
  type Drop,
  type LayerOpts,
  ParallelAttention,
  ParallelBlock,
  ParallelMLP,
  validateTensorParallel,
  VocabParallelTable,
} from "./tp_gpt.ts";
export {
  type CommOp,
  interleavedOneFOneB,
  type Message,
  noPipelining,
  oneFOneB,
  type PipelineAction,
  planCommunication,
  virtualStage,
} from "./schedules.ts";
export {
  type ChunkOptions,
  type EncoderLoss,
  type MicroBatch,
  PipelineGPT,
  type PipelineGPTOptions,
  runPipeline,
  type RunPipelineOptions,
  TensorParallelGPT,
  type TensorParallelGPTOptions,
  type VocabTables,
} from "./pipeline.ts";
export { checkpoint, recomputeGroups, type RecomputeOptions } from "../nn/recompute.ts";
export {
  type FlatEntry,
  fullTensors,
  gatherFullTensors,
  shardOfFullTensors,
} from "./full_tensors.ts";
export {
  batchSizeProblem,
  DEFAULT_PARALLEL_CONFIG,
  modelParallelProblems,
  PARALLEL_KEYS,
  type ParallelConfig,
} from "./parallel_config.ts";
