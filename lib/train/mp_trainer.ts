/**
 * The training loop's model-parallel form: tensor, sequence and pipeline parallelism
 * (with data parallelism over the rest of the ranks) for `tools/train.ts`.
 *
 * defines: ModelParallelTrainer, ModelParallelTrainerOptions, pipelineOptionsFrom
 *
 * Each rank holds its part of a {@linkcode PipelineGPT}; one optimizer step runs the
 * rank's micro-batches of the global batch through the pipeline schedule, sums the
 * partial gradients over the tensor group and the tied embedding's over the embedding
 * group, averages over the data-parallel group, clips by the global norm over the
 * model-parallel group (each element of the single-process model counted once) and
 * steps AdamW on the local shards. Losses and evaluations come from the last pipeline
 * stage and reach every rank.
 *
 * The sequence-length curriculum and progressive layer dropping work as in the
 * single-process trainer: every rank computes the step's plan from (seed, step) alone,
 * so all ranks of a tensor group and all pipeline stages truncate to the same length
 * and drop the same layers (each stage skipping the dropped layers it owns and scaling
 * its kept layers' residual branches); evaluation runs every layer at full length.
 * Batch-size ramp-up and token-based LR schedules are not supported here.
 *
 * Checkpoints use the trainer's format (lib/train/checkpoint.ts) with full tensors:
 * the shards and their AdamW moments are gathered into the single-process model's
 * parameters by name, so a checkpoint loads under any layout, in one process
 * (`deno task train --load`, `deno task generate --checkpoint`) or under another
 * TP×PP×DP layout.
 *
 * @module
 */

import { noGrad } from "../autograd.ts";
import { type Curriculum, curriculumFromConfig, type StepPlan } from "../curriculum/curriculum.ts";
import { truncateBatch } from "../curriculum/seqlen.ts";
import { GptBatchIterator, type GptDataset } from "../data/gpt_dataset.ts";
import type { Tokenizer } from "../data/tokenizer.ts";
import {
  readSafetensors,
  type TensorEntry,
  tensorEntry,
  typedView,
  writeSafetensors,
} from "../io/safetensors.ts";
import { dropoutDraws, GPT } from "../nn/gpt.ts";
import { AdamW } from "../optim/adamw.ts";
import { MixedPrecisionAdamW } from "../optim/mixed_precision.ts";
import { DataParallel } from "../parallel/ddp.ts";
import { DistributedOptimizer } from "../parallel/zero.ts";
import { clipFactor } from "../optim/clip.ts";
import { sequenceShard } from "../parallel/mappings.ts";
import type { ParallelGroups } from "../parallel/init.ts";
import { type MicroBatch, PipelineGPT, runPipeline } from "../parallel/pipeline.ts";
import type { RecomputeOptions } from "../parallel/recompute.ts";
import { virtualStage } from "../parallel/schedules.ts";
import { shardIndices, shardOwner, tensorParallelInfo } from "../parallel/tp_layers.ts";
import { Generator } from "../random.ts";
import { Tensor, tidy } from "../tensor.ts";
import { type CheckpointState, resolveCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import type { TrainConfig } from "./config.ts";
import type { LrSchedule } from "./lr_schedule.ts";
import {
  checkMicroBatches,
  composeStepPlan,
  gptStepFlops,
  planResultFields,
  replayConsumedTokens,
} from "./step_plan.ts";
import {
  type EvalResult,
  gptConfigFrom,
  gradScalerFrom,
  lrScheduleFrom,
  optimizerFrom,
  type StepResult,
  textBytes,
} from "./trainer.ts";
import type { GradScaler } from "../optim/grad_scaler.ts";
import { flopsPerStep } from "../plan/flops.ts";

/** What a {@link ModelParallelTrainer} works with. */
export interface ModelParallelTrainerOptions {
  /** The run's configuration (fp32, no ZeRO, no batch ramp-up, no token-based LR). */
  config: TrainConfig;
  /** Training samples. */
  train: GptDataset;
  /** Validation samples; without them evaluate() throws. */
  valid?: GptDataset;
  /** The data's tokenizer. */
  tokenizer: Tokenizer;
  /** This rank's groups of the config's layout. */
  groups: ParallelGroups;
}

/**
 * The {@linkcode PipelineGPT} options a configuration asks for.
 *
 * @param config the run's configuration
 * @returns sequence parallelism, virtual stages and recomputation
 */
export function pipelineOptionsFrom(config: TrainConfig): {
  sequenceParallel: boolean;
  virtualSize: number;
  recompute: RecomputeOptions | null;
} {
  const p = config.parallel;
  const recompute: RecomputeOptions | null = p.recomputeGranularity === "selective"
    ? { granularity: "selective" }
    : p.recomputeGranularity === "full"
    ? {
      granularity: "full",
      method: p.recomputeMethod ?? "uniform",
      numLayers: p.recomputeNumLayers ?? 1,
    }
    : null;
  return {
    sequenceParallel: p.sequenceParallel,
    virtualSize: p.virtualPipelineModelParallelSize ?? 1,
    recompute,
  };
}

/** A full tensor of the single-process model on the host. */
type Full = { shape: number[]; data: Float32Array };

/**
 * A model-parallel trainer with the interface `train()` drives: `step()`,
 * `evaluate()`, `save()`, `load()`.
 */
export class ModelParallelTrainer {
  /** The run's configuration. */
  readonly config: TrainConfig;
  /** This rank's part of the model. */
  readonly model: PipelineGPT;
  /** AdamW over this rank's shards (MixedPrecisionAdamW with fp32 main weights in bf16). */
  readonly optimizer: AdamW | DistributedOptimizer;
  /** ZeRO-1 over the data-parallel group (useDistributedOptimizer with DP > 1), else null. */
  readonly ddp: DataParallel | null;
  /** The model's parameter and activation dtype. */
  readonly dtype: "f32" | "bf16" | "f16";
  /** Where one process's dropout stream would be: saved in checkpoints as its offset. */
  #rngOffset = 0;
  #counted: Uint8Array | null = null;
  /** This rank's groups. */
  readonly groups: ParallelGroups;
  /** The learning rate of each step. */
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
  /** Per-step sequence length and layer dropping (lib/curriculum), or null for none. */
  curriculum: Curriculum | null;
  /** Training tokens consumed so far (truncated lengths counted as trained). */
  consumedTokens = 0;
  /** Steps skipped because their gradients overflowed (fp16). */
  skippedSteps = 0;
  /** Model FLOPs of one optimizer step. */
  readonly flopsPerStep: number;
  #batches: GptBatchIterator;
  #evalBytes = new Map<number, number>();

  /**
   * Builds this rank's part of the model (the same full weights as the single-process
   * GPT of the config's seed), the optimizer and the batch iterator.
   *
   * @param options configuration, data, tokenizer and groups
   */
  constructor(options: ModelParallelTrainerOptions) {
    const c = this.config = options.config;
    this.tokenizer = options.tokenizer;
    this.trainData = options.train;
    this.validData = options.valid;
    this.groups = options.groups;
    const t = c.training;
    const dp = this.groups.data.size;
    if (t.globalBatchSize % (t.microBatchSize * dp) !== 0) {
      throw new Error(
        `globalBatchSize ${t.globalBatchSize} is not a multiple of microBatchSize ` +
          `${t.microBatchSize} × data-parallel size ${dp}`,
      );
    }
    const g = this.groups;
    this.dtype = c.precision.bf16 ? "bf16" : c.precision.fp16 ? "f16" : "f32";
    this.scaler = gradScalerFrom(c.precision);
    this.model = new PipelineGPT(gptConfigFrom(c, this.tokenizer), {
      seed: t.seed,
      tensor: g.tensor,
      pipeline: g.pipeline,
      embedding: g.embedding,
      dtype: this.dtype,
      ...pipelineOptionsFrom(c),
    });
    // bf16/fp16: the model computes in 16 bits, the optimizer keeps fp32 main weights
    // (the gradients are fp32 main gradients already). ZeRO-1: gradients reduce-scattered over the data-parallel group after the pipeline
    // (overlap off: the tensor-parallel reductions come first), each DP rank updating its
    // shard of this model-parallel rank's parameters
    const zero = c.parallel.useDistributedOptimizer && g.data.size > 1;
    this.ddp = zero
      ? new DataParallel(this.model.params, g.data, { reduceScatter: true, overlap: false })
      : null;
    this.optimizer = optimizerFrom(t, this.model.params, this.ddp);
    this.schedule = lrScheduleFrom(t);
    this.curriculum = curriculumFromConfig(c, this.schedule);
    this.#batches = this.#iterator(0);
    const m = this.model.config;
    this.flopsPerStep = flopsPerStep({
      numLayers: m.nLayer,
      hiddenSize: m.nEmbd,
      numAttentionHeads: m.nHead,
      ffnHiddenSize: m.ffnHidden,
      vocabSize: m.vocabSize,
      seqLength: c.model.seqLength,
    }, t.globalBatchSize).model;
  }

  #iterator(consumedSamples: number): GptBatchIterator {
    return new GptBatchIterator(this.trainData, {
      microBatchSize: this.config.training.microBatchSize,
      consumedSamples,
      dataParallelRank: this.groups.data.rank,
      dataParallelSize: this.groups.data.size,
    });
  }

  /** Whether this rank logs and writes metrics (world rank 0). */
  get isLogRank(): boolean {
    return this.groups.rank === 0;
  }

  /** This rank's place in the data-parallel group. */
  get dataParallelRank(): number {
    return this.groups.data.rank;
  }

  /** Ranks that share each global batch. */
  get dataParallelSize(): number {
    return this.groups.data.size;
  }

  /** Training samples consumed so far. */
  get consumedSamples(): number {
    return this.#batches.consumedSamples;
  }

  /** Whether this rank computes the loss (last pipeline stage). */
  get #lastStage(): boolean {
    return this.groups.pipeline.rank === this.groups.pipeline.size - 1;
  }

  #microBatch(
    inputs: Int32Array,
    targets: Int32Array,
    T: number = this.config.model.seqLength,
  ): MicroBatch {
    const shape = [this.config.training.microBatchSize, T];
    const device = this.model.params.data.device;
    return {
      tokens: Tensor.fromArray(inputs, shape, { dtype: "i32", device }),
      targets: Tensor.fromArray(targets, shape, { dtype: "i32", device }),
    };
  }

  /**
   * What the next step will do: the config's length, batch and LR schedule, then the
   * curriculum's schedules, then `overrides`. A pure function of the step (and the
   * seed) on every rank, so every rank gets the same plan without communicating.
   *
   * @param overrides fields to force for this step (the same on every rank)
   * @returns the plan, checked
   */
  nextPlan(overrides: Partial<StepPlan> = {}): StepPlan {
    const c = this.config;
    const plan = composeStepPlan(c, this.schedule, this.curriculum, this.model.config.nLayer, {
      iteration: this.iteration,
      consumedSamples: this.consumedSamples,
      consumedTokens: this.consumedTokens,
    }, overrides);
    checkMicroBatches(plan, c.training.microBatchSize, this.groups.data.size, this.iteration);
    return plan;
  }

  /**
   * Model FLOPs of one step at a length and number of layers run (the planner's
   * formula is linear in the layer count).
   *
   * @param seqLength tokens per sample
   * @param keptLayers layers run @default all
   * @returns FLOPs
   */
  stepFlops(seqLength: number, keptLayers: number = this.model.config.nLayer): number {
    return gptStepFlops(
      this.model.config,
      seqLength,
      this.config.training.globalBatchSize,
      keptLayers,
    );
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
    const c = this.config, t = c.training, g = this.groups;
    const dp = g.data.size;
    const plan = this.nextPlan(overrides);
    // micro-batches per data-parallel rank (batch-size ramp-up changes it)
    const k = plan.globalBatchSize / (t.microBatchSize * dp);
    const lr = plan.lr, T = plan.seqLength;
    const model = this.model;
    model.train();
    // fp16: backward starts from the loss scale; the gradients are unscaled in the update
    const scale = this.scaler?.scale ?? 1;
    const losses = tidy(() => {
      const batches: MicroBatch[] = [];
      for (let i = 0; i < k; i++) {
        const b = truncateBatch(this.#batches.next(), T);
        batches.push(this.#microBatch(b.inputs, b.targets, T));
      }
      // the sampler gives data-parallel rank r micro-batches r, r + dp, ... of the step
      return runPipeline(model, batches, {
        // DataParallel averages over the ranks itself; the all-reduce below only sums
        lossScale: this.ddp ? scale / k : scale / (k * dp),
        firstMicroBatch: g.data.rank,
        microBatchStride: dp,
        rngOffset: this.#rngOffset,
        layers: plan.layers,
      });
    });
    // the dropout stream of one process after this step's k · dp micro-batches
    this.#rngOffset += k * dp * dropoutDraws(model.config, t.microBatchSize, T, plan.layers);
    model.syncGrads();
    if (this.ddp) this.ddp.finishGradSync();
    else if (dp > 1) g.data.allReduce(model.params.grad);
    const lossSum = this.#fromLastStage(losses.reduce((a, b) => a + b, 0));
    // fp16: an overflow on any rank skips the step on every rank (a MAX vote over the
    // world, whose ranks together hold every gradient), and the scaler backs off
    let skipped = false;
    if (this.scaler) {
      const opt = this.optimizer as MixedPrecisionAdamW | DistributedOptimizer;
      const local = opt.checkGrads(1 / scale).foundInf;
      using f = Tensor.fromArray([local ? 1 : 0], [1]);
      g.world.allReduce(f, "max");
      skipped = f.item() > 0;
      this.scaler.update(skipped);
    }
    const norm = skipped ? Infinity : this.#gradNorm() / scale;
    if (skipped) {
      this.skippedSteps++;
    } else {
      const clip = t.clipGrad > 0 ? clipFactor(norm, t.clipGrad) : 1;
      this.optimizer.step(lr, clip / scale);
    }
    model.params.zeroGrad();
    this.consumedTokens += plan.globalBatchSize * T;
    this.iteration++;
    return {
      iteration: this.iteration,
      loss: lossSum / (k * dp),
      lr,
      gradNorm: norm,
      seconds: (performance.now() - t0) / 1000,
      ...planResultFields(model.config, plan),
      ...(this.scaler ? { lossScale: scale, skipped } : {}),
    };
  }

  /** A sum over the world of values held on the last stage's tensor rank 0 (others: 0). */
  #fromLastStage(x: number): number {
    using s = Tensor.fromArray([this.#lastStage && this.groups.tensor.rank === 0 ? x : 0], [1]);
    this.groups.world.allReduce(s);
    return s.item();
  }

  /**
   * The global gradient norm of the single-process model: each element counted once
   * (sharded parameters on every tensor rank, replicated ones on rank 0, the tied
   * embedding on the first stage only), summed over the model-parallel group, and under
   * ZeRO over the data-parallel shards as well.
   */
  #gradNorm(): number {
    const grads = this.model.params.grad.toArray() as Float32Array;
    const counts = this.#countedElements();
    const ranges = this.optimizer instanceof DistributedOptimizer
      ? this.optimizer.pieces
      : [{ offset: 0, length: grads.length }];
    let sq = 0;
    for (const { offset, length } of ranges) {
      for (let j = offset; j < offset + length; j++) if (counts[j]) sq += grads[j] * grads[j];
    }
    using s = Tensor.fromArray([sq], [1]);
    (this.ddp ? this.groups.world : this.groups.modelParallel).allReduce(s);
    return Math.sqrt(s.item());
  }

  /** 1 for the flat-buffer elements this rank counts in the global norm (see #gradNorm). */
  #countedElements(): Uint8Array {
    if (this.#counted) return this.#counted;
    const m = this.model;
    const out = new Uint8Array(m.params.grad.numel);
    for (const e of m.params.entries) {
      if (m.out && e.tensor === m.out.wte) continue;
      const info = tensorParallelInfo(e.tensor);
      const { rank, size } = shardOwner(e.tensor);
      if (info.spec.kind === "replicated" && rank !== 0) continue;
      const idx = shardIndices(info.fullShape, info.spec, rank, size);
      for (let i = 0; i < e.tensor.numel; i++) if (idx[i] >= 0) out[e.offset + i] = 1;
    }
    return this.#counted = out;
  }

  /**
   * Mean validation loss over the first `iters` micro-batches of the validation data,
   * split over the data-parallel ranks, forward passes only.
   *
   * @param iters micro-batches @default config.eval.evalIters
   * @returns loss, perplexity and bits per byte (the same on every rank)
   */
  evaluate(iters: number = this.config.eval.evalIters): EvalResult {
    if (!this.validData) throw new Error("evaluate(): this trainer has no validation data");
    if (!(iters >= 1)) throw new Error(`evaluate(): need at least one batch, got ${iters}`);
    const batches = new GptBatchIterator(this.validData, {
      microBatchSize: this.config.training.microBatchSize,
    });
    const countBytes = !this.#evalBytes.has(iters);
    const dp = this.groups.data;
    let lossSum = 0;
    let bytes = 0;
    this.model.eval();
    try {
      for (let i = 0; i < iters; i++) {
        const batch = batches.next();
        if (countBytes) bytes += textBytes(this.tokenizer, batch.targets);
        if (i % dp.size !== dp.rank) continue;
        lossSum += noGrad(() =>
          tidy(() => this.#forwardOnly(this.#microBatch(batch.inputs, batch.targets)))
        );
      }
    } finally {
      this.model.train();
    }
    if (countBytes) this.#evalBytes.set(iters, bytes);
    bytes = this.#evalBytes.get(iters)!;
    const loss = this.#fromLastStage(lossSum) / iters;
    const tokens = iters * this.config.training.microBatchSize * this.config.model.seqLength;
    return {
      loss,
      perplexity: Math.exp(loss),
      bitsPerByte: bytes > 0 ? (loss / Math.LN2) * (tokens / bytes) : NaN,
      tokens,
      bytes,
    };
  }

  /** One micro-batch through every virtual stage in order; the loss on the last stage. */
  #forwardOnly(mb: MicroBatch): number {
    const m = this.model;
    const p = m.pipeline.size, r = m.pipeline.rank;
    const [b, T] = mb.tokens.shape;
    const C = m.config.nEmbd;
    const shape = m.sequenceParallel ? [sequenceShard(b * T, m.tensor).rows, C] : [b, T, C];
    let x: Tensor | null = null;
    let loss = 0;
    for (let s = 0; s < p * m.virtualSize; s++) {
      if (s % p !== r) continue;
      const chunk = Math.floor(s / p);
      if (virtualStage(r, chunk, p) !== s) throw new Error(`stage ${s} is not chunk ${chunk}`);
      if (s > 0 && p > 1) {
        x = Tensor.empty(shape, { dtype: m.params.data.dtype, device: m.params.data.device });
        m.pipeline.recv(x, (s - 1) % p);
      }
      const out = m.forwardChunk(chunk, x, mb, new Generator(m.seed));
      if (m.isLast(chunk)) loss = out.item();
      else if (p > 1) m.pipeline.send(out, (s + 1) % p);
      else x = out;
    }
    return loss;
  }

  /**
   * Every parameter and both AdamW moments of this rank as full tensors of the
   * single-process model (gathered over the tensor group; every rank calls it).
   */
  #fullState(): Map<string, Full> {
    const m = this.model;
    const tp = this.groups.tensor;
    const opt = this.optimizer;
    // ZeRO: the shards of the data-parallel ranks put together first
    const state = opt instanceof DistributedOptimizer ? opt.flatState() : {
      m: opt.m.toArray() as Float32Array,
      v: opt.v.toArray() as Float32Array,
      main: opt instanceof MixedPrecisionAdamW ? opt.main.toArray() as Float32Array : null,
    };
    const flat: Record<string, Float32Array> = {
      "": m.params.data.toArray() as Float32Array,
      "m.": state.m,
      "v.": state.v,
      ...(state.main ? { "main.": state.main } : {}),
    };
    const out = new Map<string, Full>();
    for (const e of m.params.entries) {
      const info = tensorParallelInfo(e.tensor);
      const { size } = shardOwner(e.tensor);
      const n = e.tensor.numel;
      for (const [prefix, all] of Object.entries(flat)) {
        const local = all.slice(e.offset, e.offset + n);
        let gathered: Float32Array = local;
        if (size > 1) {
          using mine = Tensor.fromArray(local, [n]);
          using every = Tensor.zeros([n * size]);
          tp.allGather(mine, every);
          gathered = every.toArray() as Float32Array;
        }
        const full = new Float32Array(info.fullShape.reduce((a, b) => a * b, 1));
        for (let q = 0; q < size; q++) {
          const idx = shardIndices(info.fullShape, info.spec, q, size);
          for (let i = 0; i < n; i++) if (idx[i] >= 0) full[idx[i]] = gathered[q * n + i];
        }
        out.set(prefix + e.name, { shape: [...info.fullShape], data: full });
      }
    }
    return out;
  }

  /**
   * Saves a checkpoint in the trainer's format with full tensors: each stage's first
   * rank stages its tensors, world rank 0 puts them into a single-process GPT and AdamW
   * and writes the checkpoint.
   *
   * @param dir save directory @default config.checkpoints.save
   * @returns the checkpoint's path
   */
  async save(dir: string | null = this.config.checkpoints.save): Promise<string> {
    if (dir === null) throw new Error("save(): no save directory (set checkpoints.save)");
    const g = this.groups;
    const full = this.#fullState();
    const stage = `${dir}/.mp-stage-${this.iteration}`;
    const writer = g.tensor.rank === 0 && g.data.rank === 0;
    if (g.rank === 0) await Deno.mkdir(stage, { recursive: true });
    g.world.barrier();
    if (writer) { // one binary staging file per pipeline stage
      const tensors = new Map<string, TensorEntry>();
      for (const [n, t] of full) tensors.set(n, tensorEntry("F32", t.shape, t.data));
      await writeSafetensors(`${stage}/${g.pipeline.rank}.safetensors`, { tensors, metadata: {} });
    }
    g.world.barrier();
    let path = "";
    if (g.rank === 0) {
      const merged = new Map<string, Full>();
      for (let s = 0; s < g.pipeline.size; s++) {
        const part = await readSafetensors(`${stage}/${s}.safetensors`);
        for (const [n, t] of part.tensors) {
          if (!merged.has(n)) merged.set(n, { shape: t.shape, data: typedView(t) as Float32Array });
        }
      }
      await Deno.remove(stage, { recursive: true });
      using gpt = new GPT(this.model.config, {
        seed: this.config.training.seed,
        dtype: this.dtype,
      });
      const adam = this.dtype !== "f32"
        ? new MixedPrecisionAdamW(gpt.params)
        : new AdamW(gpt.params);
      const main = adam instanceof MixedPrecisionAdamW
        ? new Float32Array(gpt.params.data.numel)
        : null;
      const weights: Record<string, Full> = {};
      const m = new Float32Array(gpt.params.data.numel);
      const v = new Float32Array(gpt.params.data.numel);
      for (const e of gpt.params.entries) {
        const get = (n: string) => {
          const t = merged.get(n);
          if (!t) throw new Error(`save(): no stage holds '${n}'`);
          return t;
        };
        weights[e.name] = get(e.name);
        m.set(get(`m.${e.name}`).data, e.offset);
        v.set(get(`v.${e.name}`).data, e.offset);
        main?.set(get(`main.${e.name}`).data, e.offset);
      }
      gpt.loadStateDict(weights, "model-parallel shards");
      gpt.rng.offset = this.#rngOffset;
      adam.m.copyFromHost(m);
      adam.v.copyFromHost(v);
      if (main && adam instanceof MixedPrecisionAdamW) adam.main.copyFromHost(main);
      adam.stepCount = this.optimizer.stepCount;
      try {
        path = await saveCheckpoint(dir, {
          model: gpt,
          optimizer: adam,
          ...(this.scaler
            ? { lossScaler: this.scaler.stateDict(), skippedSteps: this.skippedSteps }
            : {}),
          iteration: this.iteration,
          consumedSamples: this.consumedSamples,
          config: this.config,
          keepLast: this.config.checkpoints.keepLast,
        });
      } finally {
        adam.dispose();
      }
    }
    g.world.barrier();
    return path || `${dir}/iter_${String(this.iteration).padStart(7, "0")}`;
  }

  /**
   * Restores a trainer checkpoint saved under any layout (or by one process): each
   * parameter and its moments take this rank's shard of the full tensors.
   *
   * @param path a checkpoint directory, or a save directory (its latest)
   * @returns the saved state
   */
  async load(path: string): Promise<CheckpointState> {
    const dir = await resolveCheckpoint(path);
    const state = JSON.parse(await Deno.readTextFile(`${dir}/state.json`)) as CheckpointState;
    const weights = (await readSafetensors(`${dir}/model.safetensors`)).tensors;
    const moments = (await readSafetensors(`${dir}/optimizer.safetensors`).catch(() => {
      throw new Error(
        `${dir}: model-parallel runs resume from optimizer.safetensors (not ZeRO shards)`,
      );
    })).tensors;
    const m = this.model;
    const n = m.params.data.numel;
    const opt = this.optimizer;
    const mixed = opt instanceof MixedPrecisionAdamW ? opt : null;
    const zero = opt instanceof DistributedOptimizer ? opt : null;
    // 16-bit runs continue from the saved fp32 main weights when the checkpoint has them
    const withMain = (mixed !== null || zero?.main != null) &&
      [...moments.keys()].some((k) => k.startsWith("main."));
    const flat = {
      m: new Float32Array(n),
      v: new Float32Array(n),
      main: withMain ? new Float32Array(n) : null,
    };
    for (const e of m.params.entries) {
      const info = tensorParallelInfo(e.tensor);
      const { rank, size } = shardOwner(e.tensor);
      const idx = shardIndices(info.fullShape, info.spec, rank, size);
      const shard = (file: typeof weights, name: string) => {
        const entry = file.get(name);
        if (!entry) throw new Error(`${dir}: the checkpoint has no tensor '${name}'`);
        if (entry.shape.join(",") !== info.fullShape.join(",")) {
          throw new Error(
            `${dir}: '${name}' has shape [${entry.shape}], the model's is [${info.fullShape}]`,
          );
        }
        const values = typedView(entry) as Float32Array;
        return Float32Array.from(idx, (i) => (i < 0 ? 0 : values[i]));
      };
      e.tensor.copyFromHost(shard(weights, e.name));
      flat.m.set(shard(moments, `m.${e.name}`), e.offset);
      flat.v.set(shard(moments, `v.${e.name}`), e.offset);
      flat.main?.set(shard(moments, `main.${e.name}`), e.offset);
    }
    if (zero) {
      zero.loadFlatState({ ...flat, stepCount: state.optimizerStepCount, dataParallelSize: 1 });
    } else {
      opt.m.copyFromHost(flat.m);
      opt.v.copyFromHost(flat.v);
      if (mixed && flat.main) mixed.main.copyFromHost(flat.main);
      else mixed?.syncMainFromModel();
      opt.stepCount = state.optimizerStepCount;
    }
    this.iteration = state.iteration;
    this.#rngOffset = state.rng.offset;
    if (state.lossScaler && this.scaler) this.scaler.loadStateDict(state.lossScaler);
    this.skippedSteps = state.skippedSteps ?? this.skippedSteps;
    this.#batches = this.#iterator(state.consumedSamples);
    this.consumedTokens = this.#replayConsumedTokens(state.iteration);
    return state;
  }

  /** Tokens consumed by `iterations` steps, replayed from the curriculum's lengths. */
  #replayConsumedTokens(iterations: number): number {
    return replayConsumedTokens(this.config, this.curriculum, this.model.config.nLayer, iterations);
  }

  /** Frees the optimizer state and the model. */
  dispose(): void {
    this.optimizer.dispose();
    this.ddp?.dispose();
    this.model.dispose();
  }

  /** Same as {@linkcode ModelParallelTrainer.dispose} (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
