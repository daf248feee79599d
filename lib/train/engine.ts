/**
 * The step engine: what differs between parallel layouts, behind one small interface
 * that the {@linkcode Trainer} drives. Everything else — the step plan, batches, the
 * optimizer step, evaluation, checkpoints, logging — is the same code for every layout.
 *
 * defines: StepEngine, EngineStep, SingleModelEngine, batchLayout, microBatchLoss,
 *          lossPartNames, accuracyOf, namedFromFlat, flatFromNamed, expectShape
 *
 * Two engines:
 * - {@linkcode SingleModelEngine}: one whole GPT per rank, data parallelism with
 *   gradient buckets averaged while backward runs (and ZeRO-1 by reduce-scatter);
 * - `ModelParallelEngine` (lib/train/pipeline_engine.ts): this rank's pipeline stages of
 *   a tensor-parallel `PipelineGPT`, run by the 1F1B or interleaved schedule.
 *
 * @module
 */
import type { Batch } from "../data/gpt_dataset.ts";
import { CheckpointError, type HostTensor, type NamedTensors } from "../io/checkpoint.ts";
import { dropoutDraws, type GPT, type GPTConfig, type LayerPlan } from "../nn/gpt.ts";
import type { FlatParameters } from "../nn/module.ts";
import { DataParallel } from "../parallel/ddp.ts";
import { type ProcessGroup, reduceNumber } from "../parallel/process_group.ts";
import type { Generator } from "../random.ts";
import { noGrad } from "../autograd.ts";
import { Tensor, tidy } from "../tensor.ts";
import type { PipelineGPT } from "../parallel/pipeline.ts";
import type { Device } from "../device.ts";
import { paddingLayout, type SequenceLayout, sequenceLayout } from "../nn/attention.ts";
import { isEncoder } from "../nn/gpt_config.ts";
import { DenotronError } from "../errors.ts";
import type { GradOwnership } from "./optimizer.ts";

/** One step's work for an engine: this rank's micro-batches at the step's length. */
export interface EngineStep {
  /** This rank's micro-batches, already truncated to the step's length. */
  batches: Batch[];
  /** The step's layer plan (progressive layer dropping); null runs every layer. */
  layers: LayerPlan | null;
  /** fp16: backward starts from this loss scale. 1 otherwise. */
  lossScale: number;
}

/**
 * What a layout does for the trainer. Collective methods are called by every rank of
 * the job, in the same order.
 */
export interface StepEngine {
  /** This rank's model: a whole GPT, or its pipeline stages. */
  readonly model: GPT | PipelineGPT;
  /** This rank's parameters (what the optimizer updates). */
  readonly params: FlatParameters;
  /** The model's shape (the single-process model's). */
  readonly modelConfig: Required<GPTConfig>;
  /** The ranks that split each global batch; null in a single process. */
  readonly dataParallel: ProcessGroup | null;
  /** ZeRO-1: the reduce-scattering data parallelism the optimizer shards over; else null. */
  readonly zero: DataParallel | null;
  /** Which gradient elements this rank counts in the global norm. */
  readonly gradOwnership: GradOwnership;
  /** The dropout stream of the single-process run: its offset is saved in checkpoints. */
  readonly rng: Generator;
  /** Whether this rank logs and writes the run's files (world rank 0). */
  readonly isLogRank: boolean;

  /**
   * Forward and backward of the step's micro-batches, then the gradient reductions of
   * the layout (data-parallel buckets, tensor-parallel partial sums, tied embeddings).
   *
   * @returns this rank's sum of micro-batch losses (0 on ranks that hold no loss), the
   *   factor left in the gradients besides the loss scale (see TrainOptimizer.step), and
   *   the sums of the loss's named parts where it has them (BERT: mlm, sop)
   */
  forwardBackward(
    step: EngineStep,
  ): { lossSum: number; gradDivisor: number; partSums?: Record<string, number> };
  /**
   * A loss sum over the ranks that hold losses, the same on every rank (collective).
   *
   * @param localSum this rank's sum (0 where it holds none)
   */
  reduceLoss(localSum: number): number;
  /** One validation micro-batch's mean loss on this rank (0 where it holds none). */
  evalLoss(batch: Batch): number;
  /** The same with the loss's named parts, where the model has them (BERT: mlm, sop). */
  evalBatch?(batch: Batch): { loss: number; parts?: Record<string, number> };
  /**
   * Full tensors of the single-process model by name, from arrays laid out like this
   * rank's flat parameter buffer, keyed by name prefix ("" for the weights, "m." ...).
   * Collective over the tensor-parallel group.
   *
   * @returns the named tensors, and whether this rank writes them into a checkpoint
   *   (one rank per distinct set)
   */
  fullTensors(flats: Record<string, Float32Array>): { tensors: NamedTensors; writes: boolean };
  /**
   * This rank's flat-buffer layout of `prefix + name` full tensors, checked against the
   * model's full shapes (a CheckpointError names the file and tensor).
   */
  shardOf(full: NamedTensors, prefix: string, file: string): Float32Array;
  /** Frees what the engine built (the model only when it owns it). */
  dispose(): void;
}

/**
 * The packed documents of a batch as the model reads them (positions and attention
 * ranges), or undefined for one sequence per row. The tensors are new: create them inside
 * the tidy scope that runs the micro-batch.
 *
 * @param batch the micro-batch
 * @param device where the model runs
 */
export function batchLayout(batch: Batch, device: Device): SequenceLayout | undefined {
  if (batch.validLengths) return paddingLayout([...batch.validLengths], batch.seqLength, device);
  return batch.documentStarts
    ? sequenceLayout(batch.documentStarts, batch.seqLength, device)
    : undefined;
}

/** One micro-batch's loss, and (encoder pretraining) its parts for logging. */
export interface MicroBatchLoss {
  /** What backward starts from. */
  loss: Tensor;
  /** Named one-element parts of the loss: "mlm" and "sop" for BERT pretraining. */
  parts?: Record<string, Tensor>;
}

/**
 * The loss the model's config trains, on one micro-batch: a decoder's next-token loss; an
 * encoder's masked-LM loss plus its binary head's (BERT pretraining); or, for an encoder
 * with a classification head, the classification loss of the row labels.
 *
 * @param model the whole model
 * @param batch the micro-batch (token types, valid lengths and row labels for encoders)
 * @param x its inputs on the model's device (B,T)
 * @param y its targets (B,T)
 * @param layers the step's layer plan
 * @param withAccuracy also the masked-LM and binary-head accuracies (evaluation)
 *   @default false
 */
export function microBatchLoss(
  model: GPT,
  batch: Batch,
  x: Tensor,
  y: Tensor,
  layers?: LayerPlan,
  withAccuracy = false,
): MicroBatchLoss {
  const c = model.config, device = model.device;
  const layout = batchLayout(batch, device);
  if (!isEncoder(c)) return { loss: model.loss(x, y, layers, layout) };
  const B = batch.batchSize, T = batch.seqLength;
  const i32 = (a: Int32Array, shape: number[]) =>
    Tensor.fromArray(a, shape, { dtype: "i32", device });
  const tokenTypes = batch.tokenTypes && c.numTokenTypes > 0
    ? i32(batch.tokenTypes, [B, T])
    : undefined;
  const labels = batch.rowLabels ? i32(batch.rowLabels, [B]) : undefined;
  const o = { tokenTypes, layout, layers };
  if (c.numLabels > 0) {
    if (!labels) throw new DenotronError("a classification model needs row labels in its batches");
    return { loss: model.classificationLoss(x, labels, o) };
  }
  if (c.binaryHead && !labels) {
    throw new DenotronError("an encoder with a binary head needs sentence labels in its batches");
  }
  const r = model.pretrainingLoss(
    {
      tokens: x,
      tokenTypes,
      layout,
      mlmTargets: y,
      mlmTargetValues: batch.targets,
      sentenceLabels: c.binaryHead ? labels : undefined,
    },
    layers,
    withAccuracy,
  );
  const parts: Record<string, Tensor> = { mlm: r.mlm, ...(r.sop ? { sop: r.sop } : {}) };
  if (withAccuracy) {
    parts.mlm_acc = accuracy(r.mlmLogits!, r.mlmLabels!, c.vocabSize, device);
    if (r.binaryLogits) parts.sop_acc = accuracy(r.binaryLogits, batch.rowLabels!, 2, device);
  }
  return { loss: r.loss, parts };
}

/**
 * The names of the parts {@linkcode microBatchLoss} reports for a model of `c`, in a fixed
 * order (every rank reduces them in it): BERT pretraining's mlm and sop (and in evaluation
 * their accuracies); none for decoders and classifiers.
 *
 * @param c the model's config
 * @param evaluation the evaluation's parts (with accuracies) @default false
 */
export function lossPartNames(c: Required<GPTConfig>, evaluation = false): string[] {
  if (!isEncoder(c) || c.numLabels > 0) return [];
  const names = c.binaryHead ? ["mlm", "sop"] : ["mlm"];
  if (!evaluation) return names;
  return [...names, ...names.map((n) => `${n}_acc`)];
}

/**
 * The fraction of counted targets (not -1) whose logit is the row's largest among the
 * first `classes` columns, as a one-element tensor (read on the host: evaluation only).
 */
function accuracy(logits: Tensor, targets: Int32Array, classes: number, device: Device): Tensor {
  const width = logits.shape[logits.shape.length - 1];
  const a = accuracyOf(logits.toArray() as Float32Array, width, targets, classes);
  return Tensor.fromArray([a], [1], { device });
}

/**
 * The fraction of counted targets (not -1) whose logit is the row's largest among the
 * first `classes` columns (ties go to the lower column).
 *
 * @param z the logits on the host, rows of `width`
 * @param width each row's length
 * @param targets one per row
 * @param classes the columns that are classes (the rest are padding)
 * @returns in [0, 1]; 0 when nothing counts
 */
export function accuracyOf(
  z: Float32Array,
  width: number,
  targets: Int32Array,
  classes: number,
): number {
  let right = 0, counted = 0;
  targets.forEach((t, i) => {
    if (t === -1) return;
    counted++;
    let best = 0;
    for (let j = 1; j < classes; j++) if (z[i * width + j] > z[i * width + best]) best = j;
    if (best === t) right++;
  });
  return counted ? right / counted : 0;
}

/**
 * Named full tensors of flat-buffer-shaped arrays of a model that is not tensor-parallel.
 *
 * @param entries the flat layout (names, offsets, shapes)
 * @param flats arrays laid out like the flat buffer, by name prefix
 * @returns `prefix + name` → a copy of the parameter's slice
 */
export function namedFromFlat(
  entries: FlatParameters["entries"],
  flats: Record<string, Float32Array>,
): NamedTensors {
  const out: NamedTensors = new Map();
  for (const [prefix, flat] of Object.entries(flats)) {
    for (const e of entries) {
      out.set(prefix + e.name, {
        shape: [...e.tensor.shape],
        data: flat.slice(e.offset, e.offset + e.tensor.numel),
      });
    }
  }
  return out;
}

/**
 * The flat-buffer layout of named tensors (padding left at zero), each checked for its
 * presence and shape.
 *
 * @param entries the flat layout
 * @param full tensors by name
 * @param prefix the names' prefix ("" for weights, "m." ...)
 * @param numel the flat buffer's length
 * @param file for messages
 * @returns the flat array
 */
export function flatFromNamed(
  entries: FlatParameters["entries"],
  full: NamedTensors,
  prefix: string,
  numel: number,
  file: string,
): Float32Array {
  const flat = new Float32Array(numel);
  for (const e of entries) {
    flat.set(expectShape(full, prefix + e.name, e.tensor.shape, file), e.offset);
  }
  return flat;
}

/** The data of `name` in `full`, which must have `shape`. */
export function expectShape(
  full: NamedTensors,
  name: string,
  shape: readonly number[],
  file: string,
): Float32Array {
  const t: HostTensor | undefined = full.get(name);
  if (!t) throw new CheckpointError(`${file}: missing tensor '${name}'`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new CheckpointError(
      `${file}: tensor '${name}' has shape [${t.shape.join(", ")}], the model expects ` +
        `[${shape.join(", ")}]`,
    );
  }
  return t.data;
}

/**
 * One whole GPT per rank. Under data parallelism each rank runs its share of the
 * micro-batches and the gradient buckets are averaged during the last micro-batch's
 * backward ({@linkcode DataParallel}); with ZeRO-1 they are reduce-scattered instead.
 */
export class SingleModelEngine implements StepEngine {
  readonly model: GPT;
  readonly params: FlatParameters;
  readonly modelConfig: Required<GPTConfig>;
  readonly dataParallel: ProcessGroup | null;
  readonly zero: DataParallel | null;
  readonly gradOwnership: GradOwnership;
  readonly rng: Generator;
  readonly isLogRank: boolean;
  readonly #ddp: DataParallel | null;
  readonly #ownsModel: boolean;
  readonly #x: Tensor; // (B, T) int32 inputs at full length, reused every step
  readonly #y: Tensor; // (B, T) int32 targets

  /**
   * Wraps `model`; with a data-parallel group every replica starts from rank 0's weights.
   *
   * @param model the model (owned when `ownsModel`)
   * @param o the full-length micro-batch shape [B, T], the data-parallel group, ZeRO-1,
   *   ownership of the model
   */
  constructor(
    model: GPT,
    o: {
      batchShape: [number, number];
      dataParallel?: ProcessGroup | null;
      zero?: boolean;
      ownsModel?: boolean;
    },
  ) {
    this.model = model;
    this.params = model.params;
    this.modelConfig = model.config;
    this.rng = model.rng;
    this.#ownsModel = o.ownsModel ?? false;
    this.#x = Tensor.zeros(o.batchShape, { dtype: "i32", device: model.device });
    this.#y = Tensor.zeros(o.batchShape, { dtype: "i32", device: model.device });
    const dp = o.dataParallel && o.dataParallel.size > 1 ? o.dataParallel : null;
    this.dataParallel = o.dataParallel ?? null;
    this.isLogRank = (o.dataParallel?.rank ?? 0) === 0;
    this.#ddp = dp ? new DataParallel(model.params, dp, { reduceScatter: o.zero ?? false }) : null;
    this.#ddp?.broadcastParameters();
    this.zero = this.#ddp?.reduceScatter ? this.#ddp : null;
    // Replicas hold the same averaged gradient: each counts it all (ZeRO: its shard).
    this.gradOwnership = {
      ranges: [{ offset: 0, length: model.params.grad.numel }],
      group: this.zero ? dp : null,
    };
  }

  forwardBackward(
    step: EngineStep,
  ): { lossSum: number; gradDivisor: number; partSums?: Record<string, number> } {
    const { batches, layers, lossScale } = step;
    const k = batches.length;
    const ddp = this.#ddp;
    const model = this.model;
    model.train();
    // Data parallelism: rank r's micro-batch i is micro-batch i·ranks + r of the global
    // batch (the sampler's order); it takes the dropout counters that one process running
    // them all in that order would, so masks (and losses) do not depend on the DP size.
    const rng = this.rng, base = rng.offset;
    const T = batches[0].seqLength;
    const draws = ddp && model.config.dropout > 0
      ? dropoutDraws(model.config, batches[0].batchSize, T, layers)
      : 0;
    let lossSum = 0;
    const partSums: Record<string, number> = {};
    for (let i = 0; i < k; i++) {
      // Only the last micro-batch's backward averages gradients over the ranks.
      if (ddp) ddp.isLastMicroBatch = i === k - 1;
      if (draws) rng.offset = base + (i * ddp!.group.size + ddp!.group.rank) * draws;
      lossSum += tidy(() => {
        const [x, y] = this.#tensors(batches[i]);
        const { loss, parts } = microBatchLoss(model, batches[i], x, y, layers ?? undefined);
        loss.backward(
          lossScale === 1 ? undefined : Tensor.full([1], lossScale, { device: loss.device }),
        );
        for (const [name, t] of Object.entries(parts ?? {})) {
          partSums[name] = (partSums[name] ?? 0) + t.item();
        }
        return loss.item();
      });
    }
    if (ddp) {
      ddp.finishGradSync();
      if (draws) rng.offset = base + ddp.group.size * k * draws;
    }
    // Each pass differentiated its own micro-batch mean: the buffer holds k batch gradients.
    return { lossSum, gradDivisor: k, ...(Object.keys(partSums).length ? { partSums } : {}) };
  }

  reduceLoss(localSum: number): number {
    return reduceNumber(this.#ddp?.group ?? null, localSum);
  }

  evalLoss(batch: Batch): number {
    return this.evalBatch(batch).loss;
  }

  evalBatch(batch: Batch): { loss: number; parts?: Record<string, number> } {
    return noGrad(() =>
      tidy(() => {
        const [x, y] = this.#tensors(batch);
        const r = microBatchLoss(this.model, batch, x, y, undefined, true);
        const parts = r.parts &&
          Object.fromEntries(Object.entries(r.parts).map(([k, t]) => [k, t.item()]));
        return { loss: r.loss.item(), ...(parts ? { parts } : {}) };
      })
    );
  }

  fullTensors(flats: Record<string, Float32Array>): { tensors: NamedTensors; writes: boolean } {
    return { tensors: namedFromFlat(this.params.entries, flats), writes: this.isLogRank };
  }

  shardOf(full: NamedTensors, prefix: string, file: string): Float32Array {
    return flatFromNamed(this.params.entries, full, prefix, this.params.data.numel, file);
  }

  /** (B, T) input and target tensors: the reusable buffers at full length, else new ones. */
  #tensors(batch: Batch): [Tensor, Tensor] {
    const x = this.#x, y = this.#y;
    if (x.shape[0] === batch.batchSize && x.shape[1] === batch.seqLength) {
      x.copyFromHost(batch.inputs);
      y.copyFromHost(batch.targets);
      return [x, y];
    }
    const shape = [batch.batchSize, batch.seqLength];
    const device = this.model.device;
    return [
      Tensor.fromArray(batch.inputs, shape, { dtype: "i32", device }),
      Tensor.fromArray(batch.targets, shape, { dtype: "i32", device }),
    ];
  }

  dispose(): void {
    if (this.#x.disposed) return;
    this.#x.dispose();
    this.#y.dispose();
    this.#ddp?.dispose();
    if (this.#ownsModel) this.model.dispose();
  }
}
