/**
 * The model-parallel step engine: tensor, sequence and pipeline parallelism, with data
 * parallelism over the rest of the ranks.
 *
 * defines: ModelParallelEngine, pipelineOptionsFrom, recomputeFrom
 *
 * Each rank holds its part of a {@linkcode PipelineGPT}; a step runs the rank's
 * micro-batches through the pipeline schedule (1F1B, or interleaved with virtual
 * stages), sums the partial gradients over the tensor group and the tied embedding's over
 * the embedding group, then averages over the data-parallel group (all-reduce, or
 * reduce-scatter for ZeRO-1). Losses come from the last stage's tensor rank 0.
 *
 * Checkpoint tensors are the full tensors of the single-process model: shards are
 * all-gathered over the tensor group and put in place by `shardIndices`, so a checkpoint
 * loads under any layout.
 *
 * @module
 */
import type { Batch } from "../data/gpt_dataset.ts";
import type { NamedTensors } from "../io/checkpoint.ts";
import { dropoutDraws, type GPTConfig } from "../nn/gpt.ts";
import type { FlatParameters } from "../nn/module.ts";
import { DataParallel } from "../parallel/ddp.ts";
import type { ParallelGroups } from "../parallel/init.ts";
import { sequenceShard } from "../parallel/mappings.ts";
import {
  type EncoderLoss,
  type MicroBatch,
  PipelineGPT,
  runPipeline,
} from "../parallel/pipeline.ts";
import { gatherVocabShards } from "../parallel/cross_entropy.ts";
import type { RecomputeOptions } from "../nn/recompute.ts";
import { virtualStage } from "../parallel/schedules.ts";
import { gatherFullTensors, shardOfFullTensors } from "../parallel/full_tensors.ts";
import { shardOwner, tensorParallelInfo } from "../parallel/tp_layers.ts";
import { type ProcessGroup, reduceNumber } from "../parallel/process_group.ts";
import { noGrad } from "../autograd.ts";
import { Generator } from "../random.ts";
import { type DType, Tensor, tidy } from "../tensor.ts";
import type { TrainConfig } from "./config.ts";
import type { EngineStep, StepEngine } from "./engine.ts";
import { accuracyOf, batchLayout, expectShape } from "./engine.ts";
import type { GradOwnership } from "./optimizer.ts";

/**
 * The recomputation a configuration asks for (Megatron's three keys as one value).
 *
 * @param p the config's parallel section
 * @returns the options, or null for none
 */
export function recomputeFrom(p: TrainConfig["parallel"]): RecomputeOptions | null {
  return p.recomputeGranularity === "selective"
    ? { granularity: "selective" }
    : p.recomputeGranularity === "full"
    ? {
      granularity: "full",
      method: p.recomputeMethod ?? "uniform",
      numLayers: p.recomputeNumLayers ?? 1,
    }
    : null;
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
  return {
    sequenceParallel: p.sequenceParallel,
    virtualSize: p.virtualPipelineModelParallelSize ?? 1,
    recompute: recomputeFrom(p),
  };
}

/** This rank's stages of a tensor- and pipeline-parallel GPT; see the module documentation. */
export class ModelParallelEngine implements StepEngine {
  readonly model: PipelineGPT;
  readonly params: FlatParameters;
  readonly modelConfig: Required<GPTConfig>;
  readonly dataParallel: ProcessGroup;
  readonly zero: DataParallel | null;
  readonly gradOwnership: GradOwnership;
  /** Only its offset is used: where one process's dropout stream would be. */
  readonly rng: Generator;
  readonly isLogRank: boolean;
  readonly #groups: ParallelGroups;

  /**
   * Builds this rank's part of the model (the same full weights as the single-process
   * GPT of the seed).
   *
   * @param config the model's shape
   * @param groups this rank's groups
   * @param o seed, dtype, ZeRO-1 and the config's pipeline options
   */
  constructor(
    config: GPTConfig,
    groups: ParallelGroups,
    o: { seed: number; dtype: DType; zero: boolean } & ReturnType<typeof pipelineOptionsFrom>,
  ) {
    this.#groups = groups;
    const g = groups;
    this.model = new PipelineGPT(config, {
      seed: o.seed,
      tensor: g.tensor,
      pipeline: g.pipeline,
      embedding: g.embedding,
      dtype: o.dtype,
      sequenceParallel: o.sequenceParallel,
      virtualSize: o.virtualSize,
      recompute: o.recompute,
    });
    this.params = this.model.params;
    this.modelConfig = this.model.config;
    this.rng = new Generator(o.seed);
    this.dataParallel = g.data;
    this.isLogRank = g.rank === 0;
    // ZeRO-1: gradients reduce-scattered over the data-parallel group after the pipeline
    // (overlap off: the tensor-parallel reductions come first).
    this.zero = o.zero && g.data.size > 1
      ? new DataParallel(this.params, g.data, { reduceScatter: true, overlap: false })
      : null;
    this.gradOwnership = {
      ranges: this.#countedRanges(),
      // data-parallel replicas hold equal gradients, except ZeRO's disjoint shards
      group: this.zero ? g.world : g.modelParallel,
    };
  }

  /**
   * The flat-buffer ranges this rank counts in the global norm: each element of the
   * single-process model once (sharded tensors on every tensor rank, replicated ones on
   * tensor rank 0, the tied embedding on the first stage only).
   */
  #countedRanges(): { offset: number; length: number }[] {
    const m = this.model;
    const out: { offset: number; length: number }[] = [];
    for (const e of m.params.entries) {
      if (m.config.tieEmbeddings && m.out && e.tensor === m.out.weight) continue;
      const info = tensorParallelInfo(e.tensor);
      if (info.spec.kind === "replicated" && shardOwner(e.tensor).rank !== 0) continue;
      out.push({ offset: e.offset, length: e.tensor.numel });
    }
    return out;
  }

  forwardBackward(
    step: EngineStep,
  ): { lossSum: number; gradDivisor: number; partSums?: Record<string, number> } {
    const g = this.#groups, dp = g.data.size;
    const k = step.batches.length;
    const model = this.model;
    model.train();
    const partSums: Record<string, number> = {};
    const losses = tidy(() =>
      // the sampler gives data-parallel rank r micro-batches r, r + dp, ... of the step
      runPipeline(model, step.batches.map((b) => this.#microBatch(b)), {
        // the gradients come out averaged over the k · dp micro-batches (ZeRO's
        // reduce-scatter averages over the ranks itself; the all-reduce below only sums)
        lossScale: this.zero ? step.lossScale / k : step.lossScale / (k * dp),
        firstMicroBatch: g.data.rank,
        microBatchStride: dp,
        rngOffset: this.rng.offset,
        layers: step.layers,
        partSums,
      })
    );
    // the dropout stream of one process after this step's k · dp micro-batches
    const b = step.batches[0];
    this.rng.offset += k * dp * dropoutDraws(model.config, b.batchSize, b.seqLength, step.layers);
    model.syncGrads();
    if (this.zero) this.zero.finishGradSync();
    else if (dp > 1) g.data.allReduce(model.params.grad);
    const lossSum = losses.reduce((a, x) => a + x, 0);
    return { lossSum, gradDivisor: 1, ...(Object.keys(partSums).length ? { partSums } : {}) };
  }

  reduceLoss(localSum: number): number {
    const g = this.#groups;
    const holds = g.pipeline.rank === g.pipeline.size - 1 && g.tensor.rank === 0;
    return reduceNumber(g.world, holds ? localSum : 0);
  }

  evalLoss(batch: Batch): number {
    return this.evalBatch(batch).loss;
  }

  /**
   * One micro-batch through every virtual stage in order; on the last stage the loss and,
   * for an encoder, its parts and their accuracies (the masked-LM logits gathered over the
   * tensor group). 0 and no parts on the other stages.
   */
  evalBatch(batch: Batch): { loss: number; parts?: Record<string, number> } {
    const m = this.model;
    const p = m.pipeline.size, r = m.pipeline.rank;
    const C = m.config.nEmbd;
    const B = batch.batchSize, T = batch.seqLength;
    const shape = m.sequenceParallel ? [sequenceShard(B * T, m.tensor).rows, C] : [B, T, C];
    const parts: Record<string, number> = {};
    const onEncoderLoss = (e: EncoderLoss) => {
      for (const [n, t] of Object.entries(e.parts)) parts[n] = t.item();
      if (e.mlmLogits) {
        const V = m.config.vocabSize;
        const z = gatherVocabShards(e.mlmLogits, m.tensor, V);
        parts.mlm_acc = accuracyOf(z, V, e.mlmLabels!, V);
      }
      if (e.binaryLogits) {
        const z = e.binaryLogits.toArray() as Float32Array;
        parts.sop_acc = accuracyOf(z, 2, batch.rowLabels!, 2);
      }
    };
    const loss = noGrad(() =>
      tidy(() => {
        const mb = this.#microBatch(batch);
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
          const out = m.forwardChunk(chunk, x, mb, new Generator(m.seed), {
            onEncoderLoss,
            withLogits: true,
          });
          if (m.isLast(chunk)) loss = out.item();
          else if (p > 1) m.pipeline.send(out, (s + 1) % p);
          else x = out;
        }
        return loss;
      })
    );
    return { loss, ...(Object.keys(parts).length ? { parts } : {}) };
  }

  #microBatch(b: Batch): MicroBatch {
    const shape = [b.batchSize, b.seqLength];
    const device = this.params.data.device;
    const layout = batchLayout(b, device);
    const i32 = (a: Int32Array, s: number[]) => Tensor.fromArray(a, s, { dtype: "i32", device });
    const types = b.tokenTypes && this.modelConfig.numTokenTypes > 0;
    return {
      tokens: i32(b.inputs, shape),
      targets: i32(b.targets, shape),
      ...(layout ? { layout } : {}),
      ...(types ? { tokenTypes: i32(b.tokenTypes!, shape) } : {}),
      ...(b.rowLabels ? { rowLabels: i32(b.rowLabels, [b.batchSize]) } : {}),
    };
  }

  fullTensors(flats: Record<string, Float32Array>): { tensors: NamedTensors; writes: boolean } {
    const g = this.#groups;
    const tensors = gatherFullTensors(this.params.entries, g.tensor, flats);
    // one writer per pipeline stage
    return { tensors, writes: g.tensor.rank === 0 && g.data.rank === 0 };
  }

  shardOf(full: NamedTensors, prefix: string, file: string): Float32Array {
    return shardOfFullTensors(
      this.params.entries,
      this.params.data.numel,
      (name, shape) => expectShape(full, prefix + name, shape, file),
    );
  }

  dispose(): void {
    this.zero?.dispose();
    this.model.dispose();
  }
}
