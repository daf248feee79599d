/**
 * The training loop, as an API for scripts and notebooks: one loop for every layout.
 *
 * defines: Trainer, TrainerOptions, StepResult, EvalResult, TrainHooks, TrainOptions,
 *          TrainSummary, TrainingDivergedError, train, gptConfigFrom, lrScheduleFrom,
 *          textBytes
 *
 * One optimizer step (Trainer.step):
 *
 * 1. The plan: the step's length, batch size, learning rate and layers, from the config
 *    and the curriculum (a pure function of the step, the same on every rank).
 * 2. This rank's micro-batches of the global batch, truncated to the plan's length.
 * 3. The step engine runs their forward and backward passes and the layout's gradient
 *    reductions (lib/train/engine.ts: one whole model with data-parallel buckets, or
 *    pipeline stages of a tensor-parallel model), and reduces the loss.
 * 4. The optimizer owns the rest (lib/train/optimizer.ts): global norm over the
 *    elements each rank owns, fp16 overflow vote and loss scale, clipping, the update.
 *    A loss or gradient norm that is not finite (fp16's skipped steps aside) stops the
 *    run there with a {@linkcode TrainingDivergedError}, before the update
 *    (`checkForNanInLossAndGrad`, on by default as in Megatron).
 *
 * Every layout — one process, DP, ZeRO-1, TP, SP, PP (1F1B, interleaved) in any
 * combination — runs this code; what differs sits behind {@linkcode StepEngine}.
 * Checkpoints hold the single-process model's full tensors (lib/train/checkpoint.ts),
 * so a run saved under one layout resumes under any other.
 *
 * `train()` adds the cadence around it: logging, evaluation, checkpoints, the
 * loss plot, and a yield to the event loop between steps so a notebook or a
 * server stays responsive.
 *
 * @module
 */

import { batchSource, type TrainingSamples } from "./batches.ts";
import { BertDataset } from "../data/bert_dataset.ts";
import { ClassificationDataset } from "../data/classification_dataset.ts";
import { isEncoder } from "../nn/gpt_config.ts";
import { DenotronError } from "../errors.ts";
import type { Tokenizer } from "../data/tokenizer.ts";
import {
  CheckpointError,
  type CheckpointState,
  expectTensors,
  type NamedTensors,
  prepareSaveDirectory,
  readCheckpoint,
} from "../io/checkpoint.ts";
import { GPT, type GPTConfig, gptConfigWithDefaults } from "../nn/gpt.ts";
import { gptEvalModel } from "../eval/scoring.ts";
import {
  type EvalTask,
  evaluateTask,
  greedyFirstLine,
  readJsonl,
  TASK_FIELDS,
} from "../eval/tasks.ts";
import type { GradScaler } from "../optim/grad_scaler.ts";
import type { ParallelGroups } from "../parallel/init.ts";
import { batchSizeProblem } from "../parallel/parallel_config.ts";
import type { PipelineGPT } from "../parallel/pipeline.ts";
import { type ProcessGroup, reduceNumber } from "../parallel/process_group.ts";
import { readOptimizerShards } from "../parallel/zero.ts";
import type { Curriculum, StepPlan } from "../curriculum/curriculum.ts";
import type { BatchSource } from "../curriculum/data.ts";
import { truncateBatch } from "../curriculum/seqlen.ts";
import { flopsPerStep } from "../plan/flops.ts";
import { modelConfigOf } from "../plan/model.ts";
import { saveRunCheckpoint } from "./checkpoint.ts";
import { ConfigError, type TrainConfig } from "./config.ts";
import { lossPartNames, namedFromFlat, SingleModelEngine, type StepEngine } from "./engine.ts";
import {
  type EvalRecord,
  MetricsWriter,
  ProgressLogger,
  readMetrics,
  type TrainRecord,
} from "./logging.ts";
import { TensorBoardWriter } from "./tensorboard.ts";
import { LrSchedule } from "./lr_schedule.ts";
import { gradScalerFrom, type OptimizerState, TrainOptimizer } from "./optimizer.ts";
import { ModelParallelEngine, pipelineOptionsFrom, recomputeFrom } from "./pipeline_engine.ts";
import {
  checkMicroBatches,
  composeStepPlan,
  curriculumFromConfig,
  gptStepFlops,
  planResultFields,
  replayConsumedTokens,
} from "./step_plan.ts";
import { writeLossPlot } from "./plot.ts";

/** The learning-rate schedule of a configuration (warmup, then decay to minLr). */
export function lrScheduleFrom(t: TrainConfig["training"]): LrSchedule {
  return new LrSchedule({
    lr: t.lr,
    minLr: t.minLr,
    warmupIters: t.lrWarmupIters,
    decayIters: t.lrDecayIters ?? t.trainIters,
    decayStyle: t.lrDecayStyle,
    wsdDecayIters: t.lrWsdDecayIters,
    wsdDecayStyle: t.lrWsdDecayStyle,
  });
}

/**
 * The model shape a configuration asks for.
 *
 * @param config the run's configuration
 * @param tokenizer supplies the vocabulary when `vocabSize` is null
 * @returns the GPT config
 */
export function gptConfigFrom(config: TrainConfig, tokenizer: Tokenizer): GPTConfig {
  const m = config.model;
  const rope = m.positionEmbeddingType === "rope";
  return {
    vocabSize: m.vocabSize ?? tokenizer.vocabSize,
    blockSize: m.maxPositionEmbeddings ?? m.seqLength,
    nLayer: m.nLayer,
    nHead: m.nHead,
    nEmbd: m.nEmbd,
    dropout: m.dropout,
    ...(m.vocabMultiple ? { vocabMultiple: m.vocabMultiple } : {}),
    ...(m.ffnHiddenSize ? { ffnHidden: m.ffnHiddenSize } : {}),
    ...(m.numQueryGroups ? { nKvHead: m.numQueryGroups } : {}),
    layerNormEps: m.normEpsilon ?? 1e-5,
    normalization: m.normalization ?? "layernorm",
    positionEmbedding: rope ? "rope" : "learned",
    ropeTheta: m.rotaryBase ?? 10000,
    ropeScaling: rope && m.useRopeScaling
      ? {
        ropeType: "llama3",
        factor: m.ropeScalingFactor ?? 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      }
      : null,
    activation: m.swiglu ? "swiglu" : "gelu",
    bias: !m.disableBiasLinear,
    tieEmbeddings: !m.untieEmbeddingsAndOutputWeights,
    attentionMask: m.attentionMaskType ?? "causal",
    normPosition: m.normPosition ?? "pre",
    numTokenTypes: m.numTokentypes ?? 0,
    gelu: m.geluApproximation ?? "tanh",
    pooler: m.pooler ?? false,
    outputTransform: m.outputTransform ?? false,
    binaryHead: m.bertBinaryHead ?? false,
    numLabels: m.numLabels ?? 0,
  };
}

/**
 * Refuses, with a sentence, a model and data that do not go together: an encoder needs
 * BERT or classification samples and a decoder token rows; encoders train without the
 * sequence-length curriculum (which would cut their padded rows).
 */
function checkModelAndData(
  shape: Required<GPTConfig>,
  c: TrainConfig,
  data: TrainingSamples,
): void {
  if (isEncoder(shape) && c.curriculum?.curriculumLearning) {
    throw new ConfigError(
      "the sequence-length curriculum cuts decoder rows; an encoder's padded rows keep their length",
    );
  }
  const rows = data instanceof BertDataset || data instanceof ClassificationDataset;
  if (isEncoder(shape) !== rows) {
    throw new ConfigError(
      isEncoder(shape)
        ? "an encoder trains on BERT samples or classification rows, not next-token rows"
        : "a decoder trains on next-token rows, not BERT samples or classification rows",
    );
  }
}

/**
 * UTF-8 bytes of the text that some tokens stand for, end-of-text tokens and -1 (a
 * target that does not count) excluded (they stand for no text).
 *
 * @param tokenizer the tokenizer that produced the ids
 * @param ids token ids
 * @returns the byte count
 * @example
 * ```ts
 * import { ByteTokenizer } from "../data/tokenizer.ts";
 * import { textBytes } from "./trainer.ts";
 * textBytes(new ByteTokenizer(), [104, 105, 256]); // 2
 * ```
 */
export function textBytes(tokenizer: Tokenizer, ids: ArrayLike<number>): number {
  const encoder = new TextEncoder();
  let bytes = 0;
  let run: number[] = [];
  const flush = () => {
    if (run.length) bytes += encoder.encode(tokenizer.decode(run)).length;
    run = [];
  };
  for (let i = 0; i < ids.length; i++) {
    // -1 (a target that does not count) and end-of-text both end a run of text
    if (ids[i] === tokenizer.eotId || ids[i] === -1) flush();
    else run.push(ids[i]);
  }
  flush();
  return bytes;
}

/** What a {@link Trainer} works with. */
export interface TrainerOptions {
  /** The run's configuration (see lib/train/config.ts). */
  config: TrainConfig;
  /** Training samples. */
  train: TrainingSamples;
  /** Validation samples; without them evaluate() throws. */
  valid?: TrainingSamples;
  /** The data's tokenizer (vocabulary size, bits per byte). */
  tokenizer: Tokenizer;
  /**
   * The starting model, e.g. Hugging Face weights. In one process or under data
   * parallelism it is the model trained (not owned: the caller disposes it); under
   * tensor or pipeline parallelism each rank takes its shards of its weights.
   * @default a model built from the config's shape and seed
   */
  model?: GPT;
  /**
   * Full tensors of the single-process model by name (a pretrained checkpoint's weights)
   * that replace the initial weights before the optimizer starts, under any layout; `source`
   * names them in messages.
   */
  initialWeights?: {
    tensors: NamedTensors;
    source: string;
    /**
     * Name prefixes of parameters the source does not have that keep their fresh
     * initialisation (a classification head on a pretrained encoder). @default none
     */
    fresh?: readonly string[];
  };
  /**
   * Schedules for sequence length, layer dropping, LR and batch size (lib/curriculum).
   * null: none. @default the one the config's curriculum keys ask for
   */
  curriculum?: Curriculum | null;
  /**
   * Where this rank's training batches come from, e.g. a data curriculum's
   * DifficultyBatchIterator; checkpoints save and restore its position.
   * @default the dataset's shuffled order
   */
  batches?: BatchSource;
  /**
   * This rank's groups (under the launcher): the config's tensor and pipeline sizes pick
   * the engine. Absent: one process trains on the whole batch.
   */
  groups?: ParallelGroups;
  /** Data parallelism alone, without the other groups (the data-parallel group). */
  dataParallelGroup?: ProcessGroup;
}

/** The outcome of one optimizer step. */
export interface StepResult {
  /** Steps completed, this one included. */
  iteration: number;
  /** Mean loss over the step's micro-batches (nats per token). */
  loss: number;
  /** Learning rate applied. */
  lr: number;
  /** Global gradient norm of the batch gradient, before clipping. */
  gradNorm: number;
  /** Tokens processed. */
  tokens: number;
  /** Wall time of the step. */
  seconds: number;
  /** The loss scale this step used (fp16 runs). */
  lossScale?: number;
  /** True when the gradients overflowed and the update was skipped (fp16 runs). */
  skipped?: boolean;
  /** Tokens per sample this step (the sequence-length curriculum's length). */
  seqLength?: number;
  /** Samples this step (batch-size ramp-up). */
  globalBatchSize?: number;
  /** Blocks run this step (progressive layer dropping). */
  keptLayers?: number;
  /** Model FLOPs of this step at its length, batch and kept layers. */
  flops: number;
  /** The loss's named parts, each a mean like `loss` (BERT: mlm, sop). */
  parts?: Record<string, number>;
}

/** The outcome of an evaluation. */
export interface EvalResult {
  /** Mean loss per token (nats). */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  /** Total loss in bits divided by the UTF-8 bytes of the evaluated text. */
  bitsPerByte: number;
  /** Tokens evaluated. */
  tokens: number;
  /** Bytes of text they stand for. */
  bytes: number;
  /** The loss's named parts and accuracies (BERT: mlm, sop, mlm_acc, sop_acc). */
  parts?: Record<string, number>;
}

/**
 * A model, its optimizer, schedule and data position: call `step()` to train,
 * `evaluate()` to measure, `save()`/`load()` to checkpoint.
 *
 * @example
 * ```ts ignore
 * const trainer = new Trainer({ config, train, valid, tokenizer });
 * for (let i = 0; i < 10; i++) console.log(trainer.step().loss);
 * console.log(trainer.evaluate().bitsPerByte);
 * trainer.dispose();
 * ```
 */
export class Trainer {
  /** The run's configuration. */
  readonly config: TrainConfig;
  /** What the layout does: forward/backward, reductions, full tensors for checkpoints. */
  readonly engine: StepEngine;
  /** The optimizer; it owns the step (norm, overflow vote, loss scale, clip, update). */
  readonly optimizer: TrainOptimizer;
  /** The learning rate of each step (`at(iteration)` is read once per step). */
  readonly schedule: LrSchedule;
  /** The data's tokenizer. */
  readonly tokenizer: Tokenizer;
  /** Training samples. */
  readonly trainData: TrainingSamples;
  /** Validation samples, if any. */
  readonly validData?: TrainingSamples;
  /** Optimizer steps completed. */
  iteration = 0;
  /** Model FLOPs of one full-size optimizer step (forward and backward). */
  readonly flopsPerStep: number;
  /** Per-step schedules (lib/curriculum); set or replace it between steps. */
  curriculum: Curriculum | null;
  /** Training tokens consumed, at each step's own length (token-based LR schedules). */
  consumedTokens = 0;
  #batches: BatchSource;
  /** The batches come from options.batches (saved and restored through its stateDict). */
  readonly #customBatches: boolean;
  readonly #world: ProcessGroup | null;
  #evalBytes = new Map<number, number>();

  /**
   * Builds the engine of the config's layout, the optimizer, schedule and batches.
   *
   * @param options configuration, data, tokenizer, and optionally a model and groups
   */
  constructor(options: TrainerOptions) {
    const c = options.config;
    this.config = c;
    this.tokenizer = options.tokenizer;
    this.trainData = options.train;
    this.validData = options.valid;
    const t = c.training;
    const groups = options.groups;
    const dpGroup = groups?.data ?? options.dataParallelGroup ?? null;
    const dp = dpGroup?.size ?? 1;
    const problem = batchSizeProblem(t.globalBatchSize, t.microBatchSize, dp);
    if (problem) throw new ConfigError(problem);
    if (options.train.seqLength !== c.model.seqLength) {
      throw new Error(
        `the training data has samples of ${options.train.seqLength} tokens, the config's ` +
          `seqLength is ${c.model.seqLength}`,
      );
    }
    const p = c.precision;
    const dtype = p.bf16 ? "bf16" : p.fp16 ? "f16" : "f32";
    const given = options.model;
    if (given && given.params.data.dtype !== dtype) {
      throw new Error(
        `the model's parameters are ${given.params.data.dtype} but the config asks for ${dtype}`,
      );
    }
    const { tensorModelParallelSize: tp, pipelineModelParallelSize: pp } = c.parallel;
    const zero = c.parallel.useDistributedOptimizer;
    if (groups && (groups.tensor.size !== tp || groups.pipeline.size !== pp)) {
      throw new ConfigError(
        `the parallel groups are TP ${groups.tensor.size} × PP ${groups.pipeline.size}, the ` +
          `config asks for tensorModelParallelSize ${tp} × pipelineModelParallelSize ${pp}; ` +
          `open the groups with the config's sizes`,
      );
    }
    const arch = gptConfigWithDefaults(options.model?.config ?? gptConfigFrom(c, this.tokenizer));
    checkModelAndData(arch, c, options.train);
    if (tp * pp > 1) {
      if (!groups) {
        throw new Error(
          `tensorModelParallelSize ${tp} × pipelineModelParallelSize ${pp} needs the ` +
            `parallel groups of ${tp * pp} or more ranks (TrainerOptions.groups)`,
        );
      }
      const shape = given?.config ?? gptConfigFrom(c, this.tokenizer);
      this.engine = new ModelParallelEngine(shape, groups, {
        seed: t.seed,
        dtype,
        zero,
        ...pipelineOptionsFrom(c),
      });
      if (given) this.#copyWeights(this.#fullWeights(given), "the starting model");
    } else {
      const model = given ??
        new GPT(gptConfigFrom(c, this.tokenizer), { seed: t.seed, dtype });
      model.recompute = recomputeFrom(c.parallel);
      this.engine = new SingleModelEngine(model, {
        batchShape: [t.microBatchSize, c.model.seqLength],
        dataParallel: dpGroup,
        zero,
        ownsModel: !given,
      });
    }
    const init = options.initialWeights;
    if (init) this.#copyWeights(this.#withFresh(init.tensors, init.fresh ?? []), init.source);
    this.#world = groups?.world ?? dpGroup;
    this.optimizer = new TrainOptimizer(this.engine.params, {
      training: t,
      scaler: gradScalerFrom(p),
      zero: this.engine.zero,
      ownership: this.engine.gradOwnership,
    });
    this.schedule = lrScheduleFrom(t);
    this.#customBatches = options.batches !== undefined;
    this.#batches = options.batches ?? batchSource(this.trainData, this.#batchOptions(0));
    this.curriculum = options.curriculum !== undefined
      ? options.curriculum
      : curriculumFromConfig(c, this.schedule);
    const g = this.engine.modelConfig;
    this.flopsPerStep = flopsPerStep(modelConfigOf(g, c.model.seqLength), t.globalBatchSize).model;
  }

  /** This rank's model: a whole GPT, or its pipeline stages under TP/PP. */
  get model(): GPT | PipelineGPT {
    return this.engine.model;
  }

  /** The fp16 loss scaler; null for fp32 and bf16. */
  get scaler(): GradScaler | null {
    return this.optimizer.scaler;
  }

  /** Steps skipped because their gradients overflowed. */
  get skippedSteps(): number {
    return this.optimizer.skippedSteps;
  }

  /**
   * The largest of `x` over every rank of the job (the same on all of them): a collective
   * that every rank calls at the same point. Alone: `x`.
   *
   * @param x this rank's value (a small integer: sent as fp32)
   * @returns the maximum
   */
  maxOverJob(x: number): number {
    return reduceNumber(this.#world, x, "max");
  }

  /** Whether this rank logs and writes metrics and the plot (world rank 0). */
  get isLogRank(): boolean {
    return this.engine.isLogRank;
  }

  /** This rank's place in the data-parallel group (0 of 1 in a single process). */
  get dataParallelRank(): number {
    return this.engine.dataParallel?.rank ?? 0;
  }

  /** Ranks that share each global batch. */
  get dataParallelSize(): number {
    return this.engine.dataParallel?.size ?? 1;
  }

  #batchOptions(consumedSamples: number) {
    return {
      microBatchSize: this.config.training.microBatchSize,
      consumedSamples,
      dataParallelRank: this.dataParallelRank,
      dataParallelSize: this.dataParallelSize,
    };
  }

  /** Training samples consumed so far: the data position a checkpoint saves. */
  get consumedSamples(): number {
    return this.#batches.consumedSamples;
  }

  /** Tokens in one full-size optimizer step. */
  get tokensPerStep(): number {
    return this.config.training.globalBatchSize * this.config.model.seqLength;
  }

  /**
   * What the next step will do: the config's length, batch and LR schedule, then the
   * curriculum's schedules, then `overrides`. A pure function of the step (and the
   * seed), so every rank gets the same plan without communicating.
   *
   * @param overrides fields to force for this step (the same on every rank)
   * @returns the plan, checked
   */
  nextPlan(overrides: Partial<StepPlan> = {}): StepPlan {
    const c = this.config;
    const plan = composeStepPlan(c, this.schedule, this.curriculum, this.#numLayers, {
      iteration: this.iteration,
      consumedSamples: this.consumedSamples,
      consumedTokens: this.consumedTokens,
    }, overrides);
    checkMicroBatches(plan, c.training.microBatchSize, this.dataParallelSize, this.iteration);
    return plan;
  }

  get #numLayers(): number {
    return this.engine.modelConfig.nLayer;
  }

  /**
   * Model FLOPs of one step (forward and backward) at a length, batch size and
   * number of blocks run: the logits' share plus that many blocks' (the
   * planner's formula is linear in the layer count).
   *
   * @param seqLength tokens per sample
   * @param globalBatchSize samples
   * @param keptLayers blocks run @default all
   * @returns FLOPs
   */
  stepFlops(
    seqLength: number,
    globalBatchSize: number,
    keptLayers: number = this.#numLayers,
  ): number {
    return gptStepFlops(this.engine.modelConfig, seqLength, globalBatchSize, keptLayers);
  }

  /**
   * One optimizer step over a global batch, truncated to the plan's length, with the
   * plan's layers.
   *
   * @param overrides fields of the plan to force (the same on every rank)
   * @returns the step's loss (the same on every rank), learning rate and gradient norm
   */
  step(overrides: Partial<StepPlan> = {}): StepResult {
    const t0 = performance.now();
    const t = this.config.training;
    const plan = this.nextPlan(overrides);
    // micro-batches per data-parallel rank (batch-size ramp-up changes it)
    const k = plan.globalBatchSize / (t.microBatchSize * this.dataParallelSize);
    const batches = [];
    for (let i = 0; i < k; i++) batches.push(truncateBatch(this.#batches.next(), plan.seqLength));
    const lossScale = this.scaler?.scale ?? 1;
    const { lossSum, gradDivisor, partSums } = this.engine.forwardBackward({
      batches,
      layers: plan.layers,
      lossScale,
    });
    const loss = this.engine.reduceLoss(lossSum) / (k * this.dataParallelSize);
    const names = lossPartNames(this.engine.modelConfig);
    const parts = names.length
      ? Object.fromEntries(
        names.map((n) => [
          n,
          this.engine.reduceLoss(partSums?.[n] ?? 0) / (k * this.dataParallelSize),
        ]),
      )
      : undefined;
    // The loss is the same on every rank, and so is the optimizer's verdict: all stop together.
    const guard = this.config.training.checkForNanInLossAndGrad !== false && !this.scaler;
    if (guard && !Number.isFinite(loss)) this.#diverged(`the loss is ${loss}`);
    const r = this.optimizer.step(plan.lr, gradDivisor);
    if (r.refused) this.#diverged(`the gradient norm is ${r.gradNorm}`);
    this.engine.params.zeroGrad();
    this.consumedTokens += plan.globalBatchSize * plan.seqLength;
    this.iteration++;
    return {
      iteration: this.iteration,
      loss,
      lr: plan.lr,
      gradNorm: r.gradNorm,
      seconds: (performance.now() - t0) / 1000,
      ...planResultFields(this.engine.modelConfig, plan),
      ...(this.scaler ? { lossScale: r.lossScale, skipped: r.skipped } : {}),
      ...(parts ? { parts } : {}),
    };
  }

  /** Stops a step whose loss or gradients are not finite, before any update. */
  #diverged(what: string): never {
    this.engine.params.zeroGrad();
    throw new TrainingDivergedError(
      `iteration ${this.iteration + 1}: ${what}; training stopped before the update reached ` +
        `the weights (--check-for-nan-in-loss-and-grad; --no-check-for-nan-in-loss-and-grad ` +
        `goes on). The checkpoints saved so far are kept: resume from the last one with a ` +
        `lower learning rate`,
    );
  }

  /**
   * Mean validation loss over the first `iters` micro-batches of the validation data
   * (the same batches every time, so evaluations compare), split over the data-parallel
   * ranks, forward passes only.
   *
   * @param iters micro-batches @default config.eval.evalIters
   * @returns loss, perplexity and bits per byte (the same on every rank)
   */
  evaluate(iters: number = this.config.eval.evalIters): EvalResult {
    if (!this.validData) throw new Error("evaluate(): this trainer has no validation data");
    if (!(iters >= 1)) throw new Error(`evaluate(): need at least one batch, got ${iters}`);
    const batches = batchSource(this.validData, {
      microBatchSize: this.config.training.microBatchSize,
    });
    const countBytes = !this.#evalBytes.has(iters);
    let lossSum = 0;
    let bytes = 0, tokens = 0;
    const partSums: Record<string, number> = {};
    const model = this.engine.model;
    model.eval();
    try {
      for (let i = 0; i < iters; i++) {
        const batch = batches.next();
        if (countBytes) bytes += textBytes(this.tokenizer, batch.targets);
        for (const t of batch.targets) tokens += t === -1 ? 0 : 1;
        // Data-parallel ranks split the micro-batches; their sums add up below.
        if (i % this.dataParallelSize !== this.dataParallelRank) continue;
        const r = this.engine.evalBatch?.(batch) ?? { loss: this.engine.evalLoss(batch) };
        lossSum += r.loss;
        for (const [n, v] of Object.entries(r.parts ?? {})) partSums[n] = (partSums[n] ?? 0) + v;
      }
    } finally {
      model.train();
    }
    if (countBytes) this.#evalBytes.set(iters, bytes);
    bytes = this.#evalBytes.get(iters)!;
    const loss = this.engine.reduceLoss(lossSum) / iters;
    // every rank reduces the same names, in the same order
    const names = lossPartNames(this.engine.modelConfig, true);
    const parts = Object.fromEntries(
      names.map((n) => [n, this.engine.reduceLoss(partSums[n] ?? 0) / iters]),
    );
    return {
      loss,
      perplexity: Math.exp(loss),
      bitsPerByte: bytes > 0 ? (loss / Math.LN2) * (tokens / bytes) : NaN,
      tokens,
      bytes,
      ...(names.length ? { parts } : {}),
    };
  }

  /**
   * Saves a checkpoint of the current state (every rank calls it): the full tensors of
   * the single-process model, whatever the layout.
   *
   * @param dir save directory @default config.checkpoints.save
   * @returns the checkpoint's path
   */
  async save(dir: string | null = this.config.checkpoints.save): Promise<string> {
    if (dir === null) throw new Error("save(): no save directory (set checkpoints.save)");
    const e = this.engine;
    const s = this.optimizer.state();
    const weights = e.fullTensors({ "": e.params.data.toArray() as Float32Array });
    const moments = e.fullTensors({
      "m.": s.m,
      "v.": s.v,
      ...(s.main ? { "main.": s.main } : {}),
    });
    const scaler = this.scaler;
    const dataState = this.#customBatches ? this.#batches.stateDict?.() : undefined;
    return await saveRunCheckpoint(dir, {
      weights: weights.tensors,
      optimizer: moments.tensors,
      writes: weights.writes,
      group: this.#world,
      state: {
        iteration: this.iteration,
        optimizerStepCount: s.stepCount,
        rng: e.rng.state(),
        consumedSamples: this.consumedSamples,
        config: this.config,
        modelConfig: { ...this.engine.modelConfig },
        ...(scaler ? { lossScaler: scaler.stateDict(), skippedSteps: this.skippedSteps } : {}),
        ...(dataState !== undefined ? { dataState } : {}),
      },
      keepLast: this.config.checkpoints.keepLast,
    });
  }

  /**
   * Restores a checkpoint saved under any layout (or by one process): weights,
   * optimizer moments and step, dropout stream, loss scale, iteration and data position.
   * Every file is read and checked before anything changes.
   *
   * @param path a checkpoint directory, or a save directory (its latest)
   * @returns the saved state
   */
  async load(path: string): Promise<CheckpointState> {
    const ck = await readCheckpoint(path, {
      optimizer: true,
      note: this.isLogRank ? console.error : () => {},
    });
    const e = this.engine;
    const weightsFile = `${ck.dir}/model.safetensors`;
    // a checkpoint of the other family would only fail on a tensor's shape: say what it is
    const saved = ck.state.modelConfig as GPTConfig | undefined;
    if (saved && isEncoder(saved) !== isEncoder(e.modelConfig)) {
      const kind = (encoder: boolean) => encoder ? "an encoder (BERT)" : "a decoder (GPT)";
      throw new CheckpointError(
        `${ck.dir}: the checkpoint holds ${kind(isEncoder(saved))}, and this run trains ` +
          `${kind(isEncoder(e.modelConfig))}; load a checkpoint of the same family`,
      );
    }
    const weights = e.shardOf(ck.weights, "", weightsFile);
    const opt = ck.optimizer
      ? this.#optimizerShard(ck.optimizer, ck.optimizerFile, ck.state)
      : await this.#oldShards(ck.dir, ck.state);
    if (this.#customBatches) {
      const src = this.#batches;
      if (!src.loadStateDict || ck.state.dataState === undefined) {
        throw new CheckpointError(
          `${path}: ${
            src.loadStateDict
              ? "the checkpoint has no batch-source position (dataState)"
              : "the trainer's batch source has no loadStateDict()"
          }, so the run cannot continue where it stopped; resume with the batch source ` +
            `the run was saved with`,
        );
      }
    }
    // Everything is checked: from here on nothing can fail half way.
    this.#copyFlat(weights);
    this.optimizer.loadState(opt);
    e.rng.setState(ck.state.rng);
    const state = ck.state;
    if (state.lossScaler && this.scaler) this.scaler.loadStateDict(state.lossScaler);
    this.optimizer.skippedSteps = state.skippedSteps ?? this.optimizer.skippedSteps;
    this.iteration = state.iteration;
    this.consumedTokens = replayConsumedTokens(
      this.config,
      this.curriculum,
      this.#numLayers,
      state.iteration,
    );
    if (this.#customBatches) this.#batches.loadStateDict!(state.dataState);
    else {
      this.#batches = batchSource(
        this.trainData,
        this.#batchOptions(state.consumedSamples),
      );
    }
    return state;
  }

  /** This rank's optimizer state from a checkpoint's full tensors. */
  #optimizerShard(full: NamedTensors, file: string, state: CheckpointState): OptimizerState {
    const e = this.engine;
    // 16-bit runs continue from the saved fp32 main weights when the checkpoint has them.
    const withMain = e.params.data.dtype !== "f32" &&
      [...full.keys()].some((k) => k.startsWith("main."));
    return {
      m: e.shardOf(full, "m.", file),
      v: e.shardOf(full, "v.", file),
      main: withMain ? e.shardOf(full, "main.", file) : null,
      stepCount: state.optimizerStepCount,
    };
  }

  /**
   * The optimizer state of a checkpoint whose distributed optimizer saved shards (before
   * every layout saved full tensors): laid out like one whole model's flat buffer.
   */
  async #oldShards(dir: string, state: CheckpointState): Promise<OptimizerState> {
    const e = this.engine;
    const { tensorModelParallelSize: tp, pipelineModelParallelSize: pp } = this.config.parallel;
    if (tp * pp > 1) {
      throw new CheckpointError(
        `${dir}: its optimizer state is in distributed-optimizer shards of an older format; ` +
          `resume it once without tensor or pipeline parallelism (the next save writes full ` +
          `tensors)`,
      );
    }
    const flat = await readOptimizerShards(dir, e.params.data.numel).catch((err) => {
      throw new CheckpointError((err as Error).message);
    });
    if (!flat) throw new CheckpointError(`${dir}: no optimizer.safetensors`);
    return {
      m: flat.m,
      v: flat.v,
      main: e.params.data.dtype !== "f32" ? flat.main : null,
      stepCount: state.optimizerStepCount,
    };
  }

  /** The full tensors of a whole model (a starting point under TP/PP). */
  #fullWeights(model: GPT): NamedTensors {
    const named = namedFromFlat(model.params.entries, {
      "": model.params.data.toArray() as Float32Array,
    });
    expectTensors(
      named,
      model.params.entries.map((x) => [x.name, x.tensor.shape]),
      "the starting model",
      [""],
    );
    return named;
  }

  /** `full` with this model's own values under the `fresh` prefixes, where it has none. */
  #withFresh(full: NamedTensors, fresh: readonly string[]): NamedTensors {
    if (!fresh.length) return full;
    const own = this.engine.fullTensors({ "": this.engine.params.data.toArray() as Float32Array });
    const out: NamedTensors = new Map(full);
    for (const [name, t] of own.tensors) {
      if (!out.has(name) && fresh.some((p) => name.startsWith(p))) out.set(name, t);
    }
    return out;
  }

  #copyWeights(full: NamedTensors, source: string): void {
    this.#copyFlat(this.engine.shardOf(full, "", source));
  }

  /** Copies a flat-layout array into this rank's parameters (cast to their dtype). */
  #copyFlat(flat: Float32Array): void {
    for (const x of this.engine.params.entries) {
      x.tensor.copyFromHost(flat.subarray(x.offset, x.offset + x.tensor.numel));
    }
  }

  /** Frees the optimizer state, the engine and an owned model. Safe to call twice. */
  dispose(): void {
    if (this.optimizer.update.m.disposed) return;
    this.optimizer.dispose();
    this.engine.dispose();
  }

  /** Same as {@linkcode Trainer.dispose} (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * A step whose loss or gradient norm is not finite, under `checkForNanInLossAndGrad`
 * (the message names the iteration): nothing was updated, and nothing more is saved.
 */
export class TrainingDivergedError extends DenotronError {
  /** "TrainingDivergedError". */
  override name = "TrainingDivergedError";
}

/** Reasons to stop early, as numbers the ranks agree on with a MAX (the signal wins). */
const STOP_TIME = 1, STOP_SIGNAL = 2;

/** Callbacks around each step. Both may be async; the loop awaits them. */
export interface TrainHooks {
  /** Before each optimizer step. */
  beforeStep?: (trainer: Trainer) => void | Promise<void>;
  /** After each optimizer step, with its result. */
  afterStep?: (trainer: Trainer, result: StepResult) => void | Promise<void>;
  /** After each evaluation. */
  afterEval?: (trainer: Trainer, result: EvalResult) => void | Promise<void>;
}

/** Options of {@link train}. */
export interface TrainOptions {
  /** Where metrics.jsonl, the plot and checkpoints go. @default config.checkpoints.save */
  runDir?: string | null;
  /** Progress output. @default a ProgressLogger on standard output */
  logger?: ProgressLogger;
  /** Callbacks around steps and evaluations. @default none */
  hooks?: TrainHooks;
  /** Stops the loop after the current step (a checkpoint is still written). */
  signal?: AbortSignal;
  /**
   * Stop after the first step at which the loop has run longer than this (its own wall
   * time, in seconds). @default config.training.exitDurationInMins × 60; none when null
   */
  maxSeconds?: number;
}

/** What a {@link train} call did. */
export interface TrainSummary {
  /** Iteration reached. */
  iterations: number;
  /** Wall time of the loop (evaluation and checkpoints included). */
  seconds: number;
  /** Training tokens per second over the steps only. */
  tokensPerSecond: number;
  /** The last evaluation, if any. */
  lastEval?: EvalResult;
  /** The last step's loss. */
  lastLoss?: number;
  /** Files written: checkpoint, metrics, plot. */
  checkpoint?: string;
  /** The `metrics.jsonl` path. */
  metrics?: string;
  /** The loss plot's files. */
  plot?: { svg: string; png?: string };
  /**
   * Why the loop ended: trainIters reached, the time limit, a signal, or an iteration that
   * is a multiple of exitInterval.
   */
  stoppedBy: "iterations" | "time" | "signal" | "interval";
}

/**
 * Trains up to `config.training.trainIters` iterations from wherever the
 * trainer stands, with logging, evaluation, checkpoints and the loss plot. A signal, the
 * time limit (`exitDurationInMins`) or an iteration that is a multiple of `exitInterval`
 * ends the loop early, after the step, with a checkpoint on every rank (Megatron's exits).
 *
 * @param trainer the trainer (possibly resumed with `load()`)
 * @param options run directory, logger, hooks and stop conditions
 * @returns what happened
 */
export async function train(
  trainer: Trainer,
  options: TrainOptions = {},
): Promise<TrainSummary> {
  const c = trainer.config;
  const total = c.training.trainIters;
  const runDir = options.runDir === undefined ? c.checkpoints.save : options.runDir;
  // Under the launcher only world rank 0 logs and writes metrics and the plot.
  const lead = trainer.isLogRank;
  const logger = options.logger ??
    new ProgressLogger({ totalIterations: total, ...(lead ? {} : { write: () => {} }) });
  const hooks = options.hooks ?? {};
  // A save path that is a file fails now, not at the first checkpoint.
  if (runDir && lead) await prepareSaveDirectory(runDir);
  const metricsPath = runDir && lead ? `${runDir}/metrics.jsonl` : undefined;
  // A resumed run replays the steps after its checkpoint: their old records go.
  using metrics = metricsPath
    ? await MetricsWriter.open(metricsPath, { keepThrough: trainer.iteration })
    : undefined;
  const tbDir = c.logging.tensorboardDir;
  using tensorboard = tbDir && lead ? await TensorBoardWriter.open(tbDir, c) : undefined;
  const exitMinutes = c.training.exitDurationInMins;
  const maxSeconds = options.maxSeconds ?? (exitMinutes == null ? undefined : exitMinutes * 60);
  const exitInterval = c.training.exitInterval;
  const start = performance.now();
  const elapsed = () => (performance.now() - start) / 1000;
  const summary: TrainSummary = {
    iterations: trainer.iteration,
    seconds: 0,
    tokensPerSecond: 0,
    stoppedBy: "iterations",
  };
  let stepSeconds = 0;
  let stepTokens = 0;
  const window = {
    loss: 0,
    steps: 0,
    seconds: 0,
    tokens: 0,
    flops: 0,
    parts: {} as Record<string, number>,
  };

  const tasks = evalTasksOf(c, trainer);
  if (tasks.length && !(trainer.model instanceof GPT)) {
    throw new ConfigError(
      "--eval-lambada, --eval-hellaswag and --eval-rouge run in one process or under data " +
        "parallelism, not yet under tensor or pipeline parallelism",
    );
  }
  // A bad task file is said now, not at the first evaluation.
  for (const t of tasks) {
    if (t.kind === "lambada" || t.kind === "hellaswag" || t.kind === "rouge") {
      await readJsonl(t.path, TASK_FIELDS[t.kind]);
    }
  }
  const evaluate = async (iteration: number) => {
    const r = trainer.evaluate();
    const rec: EvalRecord = {
      kind: "eval",
      iteration,
      loss: r.loss,
      perplexity: r.perplexity,
      bitsPerByte: r.bitsPerByte,
      ...(r.parts ? { parts: r.parts } : {}),
      elapsed: elapsed(),
    };
    // The tasks score the whole model on the logging rank; the other ranks wait at the
    // next step's gradient reduction.
    if (tasks.length && lead) {
      const model = trainer.model as GPT;
      model.eval();
      rec.tasks = {};
      for (const task of tasks) {
        const result = await evaluateTask(gptEvalModel(model), trainer.tokenizer, task);
        for (const [k, v] of Object.entries(result.metrics)) rec.tasks[`${task.kind}/${k}`] = v;
      }
      model.train();
    }
    logger.eval(rec);
    metrics?.write(rec);
    tensorboard?.write(rec);
    summary.lastEval = r;
    await hooks.afterEval?.(trainer, r);
  };

  while (trainer.iteration < total) {
    await hooks.beforeStep?.(trainer);
    const r = trainer.step();
    await hooks.afterStep?.(trainer, r);
    stepSeconds += r.seconds;
    stepTokens += r.tokens;
    window.loss += r.loss;
    window.steps++;
    window.seconds += r.seconds;
    window.tokens += r.tokens;
    window.flops += r.flops;
    for (const [n, v] of Object.entries(r.parts ?? {})) {
      window.parts[n] = (window.parts[n] ?? 0) + v;
    }
    summary.lastLoss = r.loss;

    const it = r.iteration;
    // Ranks see a signal or the clock at different moments: they stop after the step the
    // first of them asks for (a MAX over the job), or the others would wait in a collective.
    const asked = options.signal?.aborted
      ? STOP_SIGNAL
      : maxSeconds !== undefined && elapsed() > maxSeconds
      ? STOP_TIME
      : 0;
    const agreed = trainer.maxOverJob(asked);
    // The iteration is the same on every rank: exitInterval needs no vote.
    const stop: TrainSummary["stoppedBy"] | undefined = agreed === STOP_SIGNAL
      ? "signal"
      : agreed === STOP_TIME
      ? "time"
      : exitInterval && it < total && it % exitInterval === 0
      ? "interval"
      : undefined;
    const last = it === total || stop !== undefined;

    if (it % c.logging.logInterval === 0 || last) {
      const rec: TrainRecord = {
        kind: "train",
        iteration: it,
        loss: window.loss / window.steps,
        lr: r.lr,
        gradNorm: r.gradNorm,
        ...(trainer.scaler
          ? { lossScale: r.lossScale ?? trainer.scaler.scale, skippedSteps: trainer.skippedSteps }
          : {}),
        ...(Object.keys(window.parts).length
          ? {
            lossParts: Object.fromEntries(
              Object.entries(window.parts).map(([n, v]) => [n, v / window.steps]),
            ),
          }
          : {}),
        tokensPerSecond: window.tokens / window.seconds,
        flopsPerSecond: window.flops / window.seconds,
        ...(trainer.curriculum
          ? { seqLength: r.seqLength, globalBatchSize: r.globalBatchSize, keptLayers: r.keptLayers }
          : {}),
        elapsed: elapsed(),
      };
      logger.train(rec, (window.seconds / window.steps) * (total - it));
      metrics?.write(rec);
      tensorboard?.write(rec);
      Object.assign(window, { loss: 0, steps: 0, seconds: 0, tokens: 0, flops: 0, parts: {} });
    }
    if (trainer.validData && c.eval.evalIters > 0 && (it % c.eval.evalInterval === 0 || last)) {
      await evaluate(it);
    }
    if (runDir && (it % c.checkpoints.saveInterval === 0 || last)) {
      summary.checkpoint = await trainer.save(runDir);
    }
    if (stop) {
      summary.stoppedBy = stop;
      break;
    }
    // Let timers, I/O and notebook messages run between steps.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  logger.close();
  summary.iterations = trainer.iteration;
  summary.seconds = elapsed();
  summary.tokensPerSecond = stepSeconds > 0 ? stepTokens / stepSeconds : 0;
  if (runDir && metricsPath) {
    metrics?.close();
    summary.metrics = metricsPath;
    summary.plot = await writeLossPlot(runDir, await readMetrics(metricsPath));
  }
  return summary;
}

/**
 * The evaluation tasks a configuration names (eval.evalLambada, evalHellaswag, evalRouge);
 * generation reads the trainer's model when it runs (a whole GPT: checked by the caller).
 */
function evalTasksOf(c: TrainConfig, trainer: Trainer): EvalTask[] {
  const limit = c.eval.evalTaskLimit ?? 100;
  const tasks: EvalTask[] = [];
  if (c.eval.evalLambada) tasks.push({ kind: "lambada", path: c.eval.evalLambada, limit });
  if (c.eval.evalHellaswag) tasks.push({ kind: "hellaswag", path: c.eval.evalHellaswag, limit });
  if (c.eval.evalRouge) {
    const n = c.eval.evalMaxNewTokens ?? 32;
    tasks.push({
      kind: "rouge",
      path: c.eval.evalRouge,
      limit,
      generate: (prompt) => greedyFirstLine(trainer.model as GPT, trainer.tokenizer, n)(prompt),
    });
  }
  return tasks;
}
