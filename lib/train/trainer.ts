/**
 * The training loop, as an API for scripts and notebooks.
 *
 * defines: Trainer, TrainerOptions, StepResult, EvalResult, TrainHooks, TrainOptions,
 *          TrainSummary, train, gptConfigFrom, textBytes
 *
 * One optimizer step (Trainer.step):
 *
 * 1. Micro-batches: globalBatchSize / microBatchSize forward-backward passes;
 *    gradients add up in the flat gradient buffer.
 * 2. The accumulated buffer is k times the batch gradient (each pass
 *    differentiates its own micro-batch mean), so the norm is divided by k and
 *    the optimizer is told to scale by clip / k: no extra pass over the buffer.
 * 3. AdamW at the schedule's rate for this iteration (weight decay on the
 *    matrices only), then the gradients are zeroed.
 *
 * Under the launcher, pass the data-parallel group: each rank then reads its own
 * slice of every global batch, DataParallel averages the gradients (communicating on
 * the last micro-batch only), `useDistributedOptimizer` shards the optimizer state
 * (ZeRO-1), evaluation and losses are averaged over the ranks, and only rank 0 logs.
 *
 * `train()` adds the cadence around it: logging, evaluation, checkpoints, the
 * loss plot, and a yield to the event loop between steps so a notebook or a
 * server stays responsive.
 *
 * @module
 */

import { noGrad } from "../autograd.ts";
import { GptBatchIterator, type GptDataset } from "../data/gpt_dataset.ts";
import type { Tokenizer } from "../data/tokenizer.ts";
import { dropoutDraws, GPT, type GPTConfig } from "../nn/gpt.ts";
import type { FlatParameters } from "../nn/module.ts";
import { AdamW } from "../optim/adamw.ts";
import { clipFactor, gradNorm } from "../optim/clip.ts";
import { ConstantGradScaler, DynamicGradScaler, type GradScaler } from "../optim/grad_scaler.ts";
import {
  type FoundInfReducer,
  MixedPrecisionAdamW,
  mixedPrecisionStep,
} from "../optim/mixed_precision.ts";
import { DataParallel } from "../parallel/ddp.ts";
import type { ProcessGroup } from "../parallel/process_group.ts";
import { DistributedOptimizer, saveOptimizerShards } from "../parallel/zero.ts";
import { type Curriculum, curriculumFromConfig, type StepPlan } from "../curriculum/curriculum.ts";
import type { BatchSource } from "../curriculum/data.ts";
import { truncateBatch } from "../curriculum/seqlen.ts";
import { flopsPerStep } from "../plan/flops.ts";
import { Tensor, tidy } from "../tensor.ts";
import {
  CheckpointError,
  checkpointName,
  type CheckpointState,
  loadCheckpoint,
  readOptimizerState,
  saveCheckpoint,
} from "./checkpoint.ts";
import type { TrainConfig } from "./config.ts";
import {
  type EvalRecord,
  MetricsWriter,
  ProgressLogger,
  readMetrics,
  type TrainRecord,
} from "./logging.ts";
import { LrSchedule } from "./lr_schedule.ts";
import {
  checkMicroBatches,
  composeStepPlan,
  gptStepFlops,
  planResultFields,
  replayConsumedTokens,
} from "./step_plan.ts";
import { writeLossPlot } from "./plot.ts";
import type { ModelParallelTrainer } from "./mp_trainer.ts";

/**
 * The fp16 loss scaler a configuration asks for (constant with lossScale, else dynamic);
 * null for fp32 and bf16.
 */
export function gradScalerFrom(p: TrainConfig["precision"]): GradScaler | null {
  if (!p.fp16) return null;
  return p.lossScale !== null ? new ConstantGradScaler(p.lossScale) : new DynamicGradScaler({
    initialScale: p.initialLossScale,
    minScale: p.minLossScale,
    growthInterval: p.lossScaleWindow,
    hysteresis: p.hysteresis,
  });
}

/**
 * The optimizer a configuration asks for: ZeRO-1 over `ddp` when it reduce-scatters, else
 * AdamW (fp32 model) or MixedPrecisionAdamW with fp32 main weights (16-bit model).
 */
export function optimizerFrom(
  t: TrainConfig["training"],
  params: FlatParameters,
  ddp: DataParallel | null,
): AdamW | DistributedOptimizer {
  const adam = {
    lr: t.lr,
    beta1: t.adamBeta1,
    beta2: t.adamBeta2,
    eps: t.adamEps,
    weightDecay: t.weightDecay,
  };
  if (ddp?.reduceScatter) return new DistributedOptimizer(ddp, adam);
  return params.data.dtype === "f32"
    ? new AdamW(params, adam)
    : new MixedPrecisionAdamW(params, adam);
}

/** The learning-rate schedule of a configuration (warmup, then decay to minLr). */
export function lrScheduleFrom(t: TrainConfig["training"]): LrSchedule {
  return new LrSchedule({
    lr: t.lr,
    minLr: t.minLr,
    warmupIters: t.lrWarmupIters,
    decayIters: t.lrDecayIters ?? t.trainIters,
    decayStyle: t.lrDecayStyle,
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
  return {
    vocabSize: m.vocabSize ?? tokenizer.vocabSize,
    blockSize: m.maxPositionEmbeddings ?? m.seqLength,
    nLayer: m.nLayer,
    nHead: m.nHead,
    nEmbd: m.nEmbd,
    dropout: m.dropout,
    ...(m.vocabMultiple ? { vocabMultiple: m.vocabMultiple } : {}),
  };
}

/**
 * UTF-8 bytes of the text that some tokens stand for, end-of-text tokens
 * excluded (they stand for no text).
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
    if (ids[i] === tokenizer.eotId) flush();
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
  train: GptDataset;
  /** Validation samples; without them evaluate() throws. */
  valid?: GptDataset;
  /** The data's tokenizer (vocabulary size, bits per byte). */
  tokenizer: Tokenizer;
  /** A model to train; built from the config when absent (and then owned). */
  model?: GPT;
  /**
   * Schedules for sequence length, layer dropping, LR and batch size (lib/curriculum).
   * null: none. @default the one the config's curriculum keys ask for
   */
  curriculum?: Curriculum | null;
  /**
   * Where training batches come from, e.g. a data curriculum's DifficultyBatchIterator.
   * `load()` goes back to the dataset's own order. @default the dataset's shuffled order
   */
  batches?: BatchSource;
  /**
   * bf16/fp16 runs: combines this rank's gradient-overflow flag over the model-parallel
   * group (MAX). The distributed runtime supplies it. @default the rank's own flag
   */
  reduceFoundInf?: FoundInfReducer;
  /**
   * The data-parallel group (under the launcher). Absent: one process trains on the
   * whole batch, as without the distributed runtime.
   */
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
  flops?: number;
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
  /** The model being trained. */
  readonly model: GPT;
  /** AdamW (or its mixed-precision form); with `useDistributedOptimizer`, ZeRO-1. */
  readonly optimizer: AdamW | DistributedOptimizer;
  /** Gradient averaging over the data-parallel group; null in a single process. */
  readonly ddp: DataParallel | null;
  /** The learning rate of each step (`at(iteration)` is read once per step). */
  readonly schedule: LrSchedule;
  /** The data's tokenizer. */
  readonly tokenizer: Tokenizer;
  /** Training samples. */
  readonly trainData: GptDataset;
  /** Validation samples, if any. */
  readonly validData?: GptDataset;
  /** Optimizer steps completed. */
  iteration = 0;
  /** The fp16 loss scaler; null for fp32 and bf16. */
  readonly scaler: GradScaler | null;
  /** Steps skipped because their gradients overflowed. */
  skippedSteps = 0;
  readonly #reduceFoundInf?: FoundInfReducer;
  /** Model FLOPs of one optimizer step (forward and backward). */
  readonly flopsPerStep: number;
  /** Per-step schedules (lib/curriculum); set or replace it between steps. */
  curriculum: Curriculum | null;
  /** Training tokens consumed, at each step's own length (token-based LR schedules). */
  consumedTokens = 0;
  #batches: BatchSource;
  /** The batches come from options.batches (saved and restored through its stateDict). */
  #customBatches = false;
  readonly #ownsModel: boolean;
  readonly #x: Tensor; // (B, T) int32 inputs
  readonly #y: Tensor; // (B, T) int32 targets
  #evalBytes = new Map<number, number>();

  /**
   * Builds the optimizer, schedule and batch buffers (and the model when none is given).
   *
   * @param options configuration, data, tokenizer and optionally a model
   */
  constructor(options: TrainerOptions) {
    const c = options.config;
    this.config = c;
    this.tokenizer = options.tokenizer;
    this.trainData = options.train;
    this.validData = options.valid;
    const t = c.training;
    if (t.globalBatchSize % t.microBatchSize !== 0) {
      throw new Error(
        `globalBatchSize ${t.globalBatchSize} is not a multiple of microBatchSize ${t.microBatchSize}`,
      );
    }
    const dpGroup = options.dataParallelGroup;
    const dp = dpGroup?.size ?? 1;
    if (t.globalBatchSize % (t.microBatchSize * dp) !== 0) {
      throw new Error(
        `globalBatchSize ${t.globalBatchSize} is not a multiple of microBatchSize ` +
          `${t.microBatchSize} × data-parallel size ${dp}; choose a global batch of ` +
          `${
            t.microBatchSize * dp *
            Math.max(1, Math.round(t.globalBatchSize / (t.microBatchSize * dp)))
          }`,
      );
    }
    if (options.train.seqLength !== c.model.seqLength) {
      throw new Error(
        `the training data has samples of ${options.train.seqLength} tokens, the config's ` +
          `seqLength is ${c.model.seqLength}`,
      );
    }
    this.#ownsModel = !options.model;
    const p = c.precision;
    const dtype = p.bf16 ? "bf16" : p.fp16 ? "f16" : "f32";
    this.model = options.model ??
      new GPT(gptConfigFrom(c, this.tokenizer), { seed: t.seed, dtype });
    if (this.model.params.data.dtype !== dtype) {
      throw new Error(
        `the model's parameters are ${this.model.params.data.dtype} but the config asks for ${dtype}`,
      );
    }
    this.ddp = dpGroup
      ? new DataParallel(this.model.params, dpGroup, {
        reduceScatter: c.parallel.useDistributedOptimizer,
      })
      : null;
    // Every replica starts from rank 0's weights.
    this.ddp?.broadcastParameters();
    this.optimizer = optimizerFrom(t, this.model.params, this.ddp);
    this.scaler = gradScalerFrom(p);
    const ddpGroup = this.ddp?.group;
    this.#reduceFoundInf = ddpGroup && !this.ddp!.reduceScatter
      ? (f) => maxOverGroup(ddpGroup, (options.reduceFoundInf ?? ((x) => x))(f))
      : options.reduceFoundInf;
    this.schedule = lrScheduleFrom(t);
    this.#batches = new GptBatchIterator(this.trainData, this.#batchOptions(0));
    if (options.batches) {
      this.#batches = options.batches;
      this.#customBatches = true;
    }
    this.curriculum = options.curriculum !== undefined
      ? options.curriculum
      : curriculumFromConfig(c, this.schedule);
    const shape = [t.microBatchSize, c.model.seqLength];
    const device = this.model.device;
    this.#x = Tensor.zeros(shape, { dtype: "i32", device });
    this.#y = Tensor.zeros(shape, { dtype: "i32", device });
    const g = this.model.config;
    this.flopsPerStep = flopsPerStep({
      numLayers: g.nLayer,
      hiddenSize: g.nEmbd,
      numAttentionHeads: g.nHead,
      ffnHiddenSize: g.ffnHidden,
      vocabSize: g.vocabSize,
      seqLength: c.model.seqLength,
    }, t.globalBatchSize).model;
  }

  /** This rank's place in the data-parallel group (0 of 1 in a single process). */
  get dataParallelRank(): number {
    return this.ddp?.group.rank ?? 0;
  }

  /** Ranks that share each global batch. */
  get dataParallelSize(): number {
    return this.ddp?.group.size ?? 1;
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

  /** Tokens in one optimizer step. */
  get tokensPerStep(): number {
    return this.config.training.globalBatchSize * this.config.model.seqLength;
  }

  /**
   * What the next step will do: the config's length, batch and LR schedule,
   * then the curriculum's schedules, then `overrides`.
   *
   * @param overrides fields to force for this step
   * @returns the plan, checked
   */
  nextPlan(overrides: Partial<StepPlan> = {}): StepPlan {
    const c = this.config;
    const plan = composeStepPlan(c, this.schedule, this.curriculum, this.model.config.nLayer, {
      iteration: this.iteration,
      consumedSamples: this.consumedSamples,
      consumedTokens: this.consumedTokens,
    }, overrides);
    checkMicroBatches(plan, c.training.microBatchSize, this.dataParallelSize, this.iteration);
    return plan;
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
    keptLayers: number = this.model.config.nLayer,
  ): number {
    return gptStepFlops(this.model.config, seqLength, globalBatchSize, keptLayers);
  }

  /**
   * Tokens consumed by `iterations` steps, replayed from the curriculum's
   * schedules (the checkpoint stores samples, not tokens; the schedules are
   * functions of the step and of what was consumed before it).
   */
  #replayConsumedTokens(iterations: number): number {
    return replayConsumedTokens(this.config, this.curriculum, this.model.config.nLayer, iterations);
  }

  /** (B, T) input and target tensors: the reusable buffers at full length, else new ones. */
  #batchTensors(inputs: Int32Array, targets: Int32Array, T: number): [Tensor, Tensor] {
    if (T === this.config.model.seqLength) {
      this.#x.copyFromHost(inputs);
      this.#y.copyFromHost(targets);
      return [this.#x, this.#y];
    }
    const shape = [inputs.length / T, T];
    const device = this.model.device;
    return [
      Tensor.fromArray(inputs, shape, { dtype: "i32", device }),
      Tensor.fromArray(targets, shape, { dtype: "i32", device }),
    ];
  }

  /**
   * One optimizer step over a global batch.
   *
   * @returns the step's loss, learning rate and gradient norm
   */
  step(overrides: Partial<StepPlan> = {}): StepResult {
    const t0 = performance.now();
    const t = this.config.training;
    const plan = this.nextPlan(overrides);
    // micro-batches per rank
    const k = plan.globalBatchSize / (t.microBatchSize * this.dataParallelSize);
    const lr = plan.lr;
    const ddp = this.ddp;
    this.model.train();
    let lossSum = 0;
    // fp16: backward starts from the loss scale instead of 1
    const scale = this.scaler?.scale ?? 1;
    // Data parallelism: rank r's micro-batch i is micro-batch i·ranks + r of the global
    // batch (the sampler's order); it takes the dropout counters that one process running
    // them all in that order would, so masks (and losses) do not depend on the DP size.
    const rng = this.model.rng, base = rng.offset;
    const draws = ddp && this.model.config.dropout > 0
      ? dropoutDraws(this.model.config, t.microBatchSize, plan.seqLength, plan.layers)
      : 0;
    for (let i = 0; i < k; i++) {
      // Only the last micro-batch's backward averages gradients over the ranks.
      if (ddp) ddp.isLastMicroBatch = i === k - 1;
      if (draws) rng.offset = base + (i * ddp!.group.size + ddp!.group.rank) * draws;
      const batch = truncateBatch(this.#batches.next(), plan.seqLength);
      lossSum += tidy(() => {
        const [x, y] = this.#batchTensors(batch.inputs, batch.targets, plan.seqLength);
        const loss = this.model.loss(x, y, plan.layers ?? undefined);
        loss.backward(scale === 1 ? undefined : Tensor.full([1], scale, { device: loss.device }));
        return loss.item();
      });
    }
    if (ddp) {
      ddp.finishGradSync();
      lossSum = sumOverGroup(ddp.group, lossSum) / ddp.group.size;
      if (draws) rng.offset = base + ddp.group.size * k * draws;
    }
    const opt = this.optimizer;
    if (opt instanceof MixedPrecisionAdamW || (opt instanceof DistributedOptimizer && opt.main)) {
      const r = mixedPrecisionStep(opt, {
        lr,
        scaler: this.scaler,
        microBatches: k,
        clipGrad: t.clipGrad,
        reduceFoundInf: this.#reduceFoundInf,
      });
      if (r.skipped) this.skippedSteps++;
      this.model.params.zeroGrad();
      this.consumedTokens += plan.globalBatchSize * plan.seqLength;
      this.iteration++;
      return {
        iteration: this.iteration,
        loss: lossSum / k,
        lr,
        gradNorm: r.gradNorm,
        seconds: (performance.now() - t0) / 1000,
        ...planResultFields(this.model.config, plan),
        ...(this.scaler ? { lossScale: r.lossScale, skipped: r.skipped } : {}),
      };
    }
    const norm =
      (opt instanceof DistributedOptimizer ? opt.gradNorm() : gradNorm(this.model.params.grad)) / k;
    const clip = t.clipGrad > 0 ? clipFactor(norm, t.clipGrad) : 1;
    opt.step(lr, clip / k);
    this.model.params.zeroGrad();
    this.consumedTokens += plan.globalBatchSize * plan.seqLength;
    this.iteration++;
    return {
      iteration: this.iteration,
      loss: lossSum / k,
      lr,
      gradNorm: norm,
      seconds: (performance.now() - t0) / 1000,
      ...planResultFields(this.model.config, plan),
    };
  }

  /**
   * Mean validation loss over the first `iters` micro-batches of the
   * validation data (the same batches every time, so evaluations compare).
   *
   * @param iters micro-batches @default config.eval.evalIters
   * @returns loss, perplexity and bits per byte
   */
  evaluate(iters: number = this.config.eval.evalIters): EvalResult {
    if (!this.validData) throw new Error("evaluate(): this trainer has no validation data");
    if (!(iters >= 1)) throw new Error(`evaluate(): need at least one batch, got ${iters}`);
    const batches = new GptBatchIterator(this.validData, {
      microBatchSize: this.config.training.microBatchSize,
    });
    const countBytes = !this.#evalBytes.has(iters);
    let lossSum = 0;
    let bytes = 0;
    this.model.eval();
    try {
      for (let i = 0; i < iters; i++) {
        const batch = batches.next();
        // Data-parallel ranks split the micro-batches and add up their sums below.
        if (i % this.dataParallelSize !== this.dataParallelRank) continue;
        this.#x.copyFromHost(batch.inputs);
        this.#y.copyFromHost(batch.targets);
        lossSum += noGrad(() => tidy(() => this.model.loss(this.#x, this.#y).item()));
        if (countBytes) bytes += textBytes(this.tokenizer, batch.targets);
      }
    } finally {
      this.model.train();
    }
    if (this.ddp) {
      lossSum = sumOverGroup(this.ddp.group, lossSum);
      if (countBytes) bytes = sumOverGroup(this.ddp.group, bytes);
    }
    if (countBytes) this.#evalBytes.set(iters, bytes);
    bytes = this.#evalBytes.get(iters)!;
    const loss = lossSum / iters;
    const tokens = iters * this.config.training.microBatchSize * this.config.model.seqLength;
    return {
      loss,
      perplexity: Math.exp(loss),
      bitsPerByte: bytes > 0 ? (loss / Math.LN2) * (tokens / bytes) : NaN,
      tokens,
      bytes,
    };
  }

  /**
   * Saves a checkpoint of the current state.
   *
   * @param dir save directory @default config.checkpoints.save
   * @returns the checkpoint's path
   */
  async save(dir: string | null = this.config.checkpoints.save): Promise<string> {
    if (dir === null) throw new Error("save(): no save directory (set checkpoints.save)");
    if (this.ddp) return await this.#saveDataParallel(dir);
    return await saveCheckpoint(dir, {
      model: this.model,
      optimizer: this.optimizer as AdamW,
      ...this.#scalerState(),
      ...this.#dataState(),
      iteration: this.iteration,
      consumedSamples: this.consumedSamples,
      config: this.config,
      keepLast: this.config.checkpoints.keepLast,
    });
  }

  /**
   * Restores a checkpoint: weights, optimizer moments and step, dropout
   * stream, iteration and data position.
   *
   * @param path a checkpoint directory, or a save directory (its latest)
   * @returns the saved state
   */
  async load(path: string): Promise<CheckpointState> {
    const opt = this.optimizer;
    const zero = opt instanceof DistributedOptimizer ? opt : null;
    // The fp32 main parameters come from the checkpoint when it has them, else from
    // the loaded 16-bit weights.
    const state = await loadCheckpoint(path, {
      model: this.model,
      optimizer: zero ? undefined : opt as AdamW,
    });
    // Shards of any data-parallel size, or a single-process optimizer file.
    if (zero) zero.loadFlatState(await readOptimizerState(path, this.model));
    if (state.lossScaler && this.scaler) this.scaler.loadStateDict(state.lossScaler);
    this.skippedSteps = state.skippedSteps ?? this.skippedSteps;
    this.iteration = state.iteration;
    this.consumedTokens = this.#replayConsumedTokens(state.iteration);
    if (this.#customBatches) {
      const src = this.#batches;
      if (!src.loadStateDict || state.dataState === undefined) {
        throw new CheckpointError(
          `${path}: ${
            src.loadStateDict
              ? "the checkpoint has no batch-source position (dataState)"
              : "the trainer's batch source has no loadStateDict()"
          }, so the run cannot continue where it stopped; resume with the batch source ` +
            `the run was saved with`,
        );
      }
      src.loadStateDict(state.dataState);
    } else {
      this.#batches = new GptBatchIterator(
        this.trainData,
        this.#batchOptions(state.consumedSamples),
      );
    }
    return state;
  }

  /** A custom batch source's position for the checkpoint. */
  #dataState(): { dataState?: unknown } {
    const state = this.#customBatches ? this.#batches.stateDict?.() : undefined;
    return state === undefined ? {} : { dataState: state };
  }

  /** The fp16 scaler's state and skipped-step count, for the checkpoint. */
  #scalerState() {
    return this.scaler
      ? { lossScaler: this.scaler.stateDict(), skippedSteps: this.skippedSteps }
      : {};
  }

  /**
   * A checkpoint written by a data-parallel group: rank 0 writes the model and state
   * (and, without ZeRO, the whole optimizer state, the same on every rank); with ZeRO
   * every rank stages its optimizer shard first and rank 0 moves the shards into the
   * checkpoint before it is renamed into place.
   */
  async #saveDataParallel(dir: string): Promise<string> {
    const g = this.ddp!.group;
    const name = checkpointName(this.iteration);
    const stage = `${dir}/.shards-${name}`;
    const zero = this.optimizer instanceof DistributedOptimizer ? this.optimizer : null;
    if (zero) await saveOptimizerShards(stage, zero);
    g.barrier();
    let path = `${dir}/${name}`;
    if (g.rank === 0) {
      path = await saveCheckpoint(dir, {
        model: this.model,
        optimizer: zero ? undefined : this.optimizer as AdamW,
        optimizerStepCount: this.optimizer.stepCount,
        writeExtra: zero
          ? async (tmp) => {
            for (const e of Deno.readDirSync(stage)) {
              await Deno.rename(`${stage}/${e.name}`, `${tmp}/${e.name}`);
            }
            await Deno.remove(stage);
          }
          : undefined,
        ...this.#scalerState(),
        ...this.#dataState(),
        iteration: this.iteration,
        consumedSamples: this.consumedSamples,
        config: this.config,
        keepLast: this.config.checkpoints.keepLast,
      });
    }
    // Nobody goes on (or reads the checkpoint) before it is in place.
    g.barrier();
    return path;
  }

  /** Frees the optimizer state, the batch buffers and an owned model. Safe to call twice. */
  dispose(): void {
    if (this.#x.disposed) return;
    this.#x.dispose();
    this.#y.dispose();
    this.optimizer.dispose();
    this.ddp?.dispose();
    if (this.#ownsModel) this.model.dispose();
  }

  /** Same as {@linkcode Trainer.dispose} (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A number summed over the group's ranks (in fp32, the same on every rank). */
function sumOverGroup(group: ProcessGroup, x: number): number {
  using t = Tensor.fromArray([x], [1]);
  group.allReduce(t);
  return t.item();
}

function maxOverGroup(group: ProcessGroup, flag: boolean): boolean {
  using t = Tensor.fromArray([flag ? 1 : 0], [1]);
  group.allReduce(t, "max");
  return t.item() !== 0;
}

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
  /** Stop after this much wall time (the loop's own, in seconds). @default no limit */
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
  /** Why the loop ended. */
  stoppedBy: "iterations" | "time" | "signal";
}

/**
 * Trains up to `config.training.trainIters` iterations from wherever the
 * trainer stands, with logging, evaluation, checkpoints and the loss plot.
 *
 * @param trainer the trainer (possibly resumed with `load()`), or its model-parallel form
 * @param options run directory, logger, hooks and stop conditions
 * @returns what happened
 */
export async function train(
  trainer: Trainer | ModelParallelTrainer,
  options: TrainOptions = {},
): Promise<TrainSummary> {
  const c = trainer.config;
  const total = c.training.trainIters;
  const runDir = options.runDir === undefined ? c.checkpoints.save : options.runDir;
  // Under data parallelism only rank 0 logs and writes metrics and the plot (under
  // model parallelism world rank 0).
  const lead = "isLogRank" in trainer ? trainer.isLogRank : trainer.dataParallelRank === 0;
  // Hooks see the trainer as the single-process/data-parallel type they are declared with.
  const hookTrainer = trainer as Trainer;
  const logger = options.logger ??
    new ProgressLogger({ totalIterations: total, ...(lead ? {} : { write: () => {} }) });
  const hooks = options.hooks ?? {};
  const metricsPath = runDir && lead ? `${runDir}/metrics.jsonl` : undefined;
  if (metricsPath && trainer.iteration === 0) await Deno.remove(metricsPath).catch(() => {});
  using metrics = metricsPath ? await MetricsWriter.open(metricsPath) : undefined;
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
  const window = { loss: 0, steps: 0, seconds: 0, tokens: 0, flops: 0 };

  const evaluate = async (iteration: number) => {
    const r = trainer.evaluate();
    const rec: EvalRecord = {
      kind: "eval",
      iteration,
      loss: r.loss,
      perplexity: r.perplexity,
      bitsPerByte: r.bitsPerByte,
      elapsed: elapsed(),
    };
    logger.eval(rec);
    metrics?.write(rec);
    summary.lastEval = r;
    await hooks.afterEval?.(hookTrainer, r);
  };

  while (trainer.iteration < total) {
    await hooks.beforeStep?.(hookTrainer);
    const r = trainer.step();
    await hooks.afterStep?.(hookTrainer, r);
    stepSeconds += r.seconds;
    stepTokens += r.tokens;
    window.loss += r.loss;
    window.steps++;
    window.seconds += r.seconds;
    window.tokens += r.tokens;
    window.flops += r.flops ?? trainer.flopsPerStep;
    summary.lastLoss = r.loss;

    const it = r.iteration;
    let stop: TrainSummary["stoppedBy"] | undefined;
    if (options.signal?.aborted) stop = "signal";
    else if (options.maxSeconds !== undefined && elapsed() >= options.maxSeconds) stop = "time";
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
        tokensPerSecond: window.tokens / window.seconds,
        flopsPerSecond: window.flops / window.seconds,
        ...(trainer.curriculum
          ? { seqLength: r.seqLength, globalBatchSize: r.globalBatchSize, keptLayers: r.keptLayers }
          : {}),
        elapsed: elapsed(),
      };
      logger.train(rec, (window.seconds / window.steps) * (total - it));
      metrics?.write(rec);
      Object.assign(window, { loss: 0, steps: 0, seconds: 0, tokens: 0, flops: 0 });
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
