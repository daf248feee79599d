/**
 * defines: curriculumFromConfig, composeStepPlan, checkMicroBatches, gptStepFlops,
 * planResultFields, replayConsumedTokens — the curriculum a config asks for, the
 * per-step plan and its accounting, shared by {@linkcode Trainer} and
 * {@linkcode ModelParallelTrainer}. Pure functions of the config, the curriculum and
 * the step.
 *
 * @module
 */
import { rampupBatchSizeAt } from "../curriculum/batch_rampup.ts";
import {
  Curriculum,
  type CurriculumSchedules,
  type StepPlan,
  type StepProgress,
} from "../curriculum/curriculum.ts";
import { pldTheta } from "../curriculum/layer_drop.ts";
import { seqLenAt, seqLenCurriculumFor } from "../curriculum/seqlen.ts";
import type { GPTConfig } from "../nn/gpt.ts";
import { batchSizeProblem } from "../parallel/parallel_config.ts";
import { flopsPerStep } from "../plan/flops.ts";
import type { TrainConfig } from "./config.ts";
import type { LrSchedule } from "./lr_schedule.ts";

/**
 * The curriculum a configuration asks for, or null when it asks for none.
 *
 * - `curriculumLearning`: the sequence length follows DeepSpeed's schedule,
 *   evaluated at iteration + 1 as DeepSpeed's engine does.
 * - `progressiveLayerDrop`: theta(iteration) with `pldTheta` and `pldGamma`.
 * - `rampupBatchSize`: Megatron's ramp-up over consumed samples.
 * - `lrByTokens`: the LR schedule advances by tokens: at c consumed tokens it
 *   is read at step c / (globalBatchSize · seqLength), so warmup and decay
 *   cover the tokens that many full-size steps would (Megatron-DeepSpeed's
 *   token-based warmup and decay).
 *
 * @param config the run's configuration
 * @param lrSchedule the iteration-based schedule (for `lrByTokens`)
 * @returns the curriculum, or null
 */
export function curriculumFromConfig(
  config: TrainConfig,
  lrSchedule: LrSchedule,
): Curriculum | null {
  const cl = config.curriculum;
  const pld = config.layerDrop;
  const t = config.training;
  const schedules: CurriculumSchedules = {};
  if (cl?.curriculumLearning) {
    const seq = seqLenCurriculumFor(cl, config.model.seqLength);
    schedules.seqLength = (step) => seqLenAt(seq, step + 1);
  }
  if (pld?.progressiveLayerDrop) {
    const o = { theta: pld.pldTheta, gamma: pld.pldGamma };
    schedules.layerKeep = (step) => pldTheta(step, o);
  }
  const rampup = t.rampupBatchSize;
  if (rampup) {
    const r = [rampup[0], rampup[1], rampup[2]] as const;
    rampupBatchSizeAt(r, t.globalBatchSize, 0, t.microBatchSize); // validates
    schedules.globalBatchSize = (_, c) =>
      rampupBatchSizeAt(r, t.globalBatchSize, c.consumedSamples, t.microBatchSize);
  }
  if (cl?.lrByTokens) {
    const full = t.globalBatchSize * config.model.seqLength;
    schedules.lr = (_, c) => lrSchedule.at(c.consumedTokens / full);
  }
  return Object.keys(schedules).length ? new Curriculum(schedules) : null;
}

/**
 * The next step's plan: the config's length, batch and LR schedule, then the
 * curriculum's schedules, then `overrides`. Checks the length and the learning rate;
 * callers check the batch size against their own layout.
 *
 * @param config the training config
 * @param schedule the LR schedule
 * @param curriculum per-step schedules, or null
 * @param numLayers the model's layers (for layer dropping)
 * @param progress where training stands
 * @param overrides fields to force for this step
 * @returns the plan
 * @example
 * ```ts
 * import { DEFAULT_CONFIG } from "./config.ts";
 * import { LrSchedule } from "./lr_schedule.ts";
 * import { composeStepPlan } from "./step_plan.ts";
 * const schedule = new LrSchedule({ lr: 1e-3, minLr: 1e-4, warmupIters: 10, decayIters: 100 });
 * const plan = composeStepPlan(DEFAULT_CONFIG, schedule, null, 4, {
 *   iteration: 5,
 *   consumedSamples: 0,
 *   consumedTokens: 0,
 * });
 * console.log(plan.seqLength, plan.lr);
 * ```
 */
export function composeStepPlan(
  config: Readonly<TrainConfig>,
  schedule: LrSchedule,
  curriculum: Curriculum | null,
  numLayers: number,
  progress: StepProgress,
  overrides: Partial<StepPlan> = {},
): StepPlan {
  const scheduled = curriculum?.plan(progress, { numLayers, seed: config.training.seed });
  const plan: StepPlan = {
    seqLength: config.model.seqLength,
    globalBatchSize: config.training.globalBatchSize,
    lr: schedule.at(progress.iteration),
    layers: null,
    ...scheduled,
    ...overrides,
  };
  const T = config.model.seqLength, it = progress.iteration;
  if (!Number.isInteger(plan.seqLength) || plan.seqLength < 1 || plan.seqLength > T) {
    throw new Error(`step ${it}: seqLength ${plan.seqLength} is outside 1..${T}`);
  }
  if (!(plan.lr >= 0 && Number.isFinite(plan.lr))) {
    throw new Error(`step ${it}: learning rate ${plan.lr} is not a number >= 0`);
  }
  return plan;
}

/**
 * Model FLOPs of one GPT step (forward and backward) at a length, batch size and number
 * of blocks run: the logits' share plus that many blocks' (the planner's formula is
 * linear in the layer count).
 *
 * @param model the GPT's shape
 * @param seqLength tokens per sample
 * @param globalBatchSize samples
 * @param keptLayers blocks run @default all
 * @returns FLOPs
 */
export function gptStepFlops(
  model: Required<GPTConfig>,
  seqLength: number,
  globalBatchSize: number,
  keptLayers: number = model.nLayer,
): number {
  const f = (numLayers: number) =>
    flopsPerStep({
      numLayers,
      hiddenSize: model.nEmbd,
      numAttentionHeads: model.nHead,
      ffnHiddenSize: model.ffnHidden,
      numQueryGroups: model.nKvHead,
      swiglu: model.activation === "swiglu",
      tiedEmbeddings: model.tieEmbeddings,
      bias: model.bias,
      // a classifier computes no logits over the vocabulary, only over its few classes
      vocabSize: model.numLabels > 0 ? model.numLabels : model.vocabSize,
      seqLength,
    }, globalBatchSize).model;
  const one = f(1);
  return one + (keptLayers - 1) * (f(2) - one);
}

/**
 * Tokens consumed by `iterations` steps, replayed from the curriculum's schedules: a
 * checkpoint stores samples, not tokens, and the schedules are functions of the step
 * and of what was consumed before it.
 *
 * @param config the training config
 * @param curriculum per-step schedules, or null (every step at full length and batch)
 * @param numLayers the model's layers
 * @param iterations steps taken
 * @returns tokens
 */
export function replayConsumedTokens(
  config: Readonly<TrainConfig>,
  curriculum: Curriculum | null,
  numLayers: number,
  iterations: number,
): number {
  const gbs = config.training.globalBatchSize, T = config.model.seqLength;
  if (!curriculum) return iterations * gbs * T;
  let samples = 0, tokens = 0;
  for (let it = 0; it < iterations; it++) {
    const p = curriculum.plan(
      { iteration: it, consumedSamples: samples, consumedTokens: tokens },
      { numLayers, seed: config.training.seed },
    );
    const batch = p.globalBatchSize ?? gbs;
    samples += batch;
    tokens += batch * (p.seqLength ?? T);
  }
  return tokens;
}

/**
 * Throws unless the plan's global batch splits into whole micro-batches on every
 * data-parallel rank (batch-size ramp-up sizes must be multiples of B × dp).
 *
 * @param iteration the step, for the message
 */
export function checkMicroBatches(
  plan: StepPlan,
  microBatchSize: number,
  dataParallelSize: number,
  iteration: number,
): void {
  const problem = batchSizeProblem(plan.globalBatchSize, microBatchSize, dataParallelSize);
  if (problem) throw new Error(`step ${iteration}: ${problem}`);
}

/** The fields of a step's result that follow from its plan: tokens, length, batch, layers, FLOPs. */
export function planResultFields(model: Required<GPTConfig>, plan: StepPlan): {
  tokens: number;
  seqLength: number;
  globalBatchSize: number;
  keptLayers: number;
  flops: number;
} {
  const kept = plan.layers ? plan.layers.keep.filter((k) => k).length : model.nLayer;
  return {
    tokens: plan.globalBatchSize * plan.seqLength,
    seqLength: plan.seqLength,
    globalBatchSize: plan.globalBatchSize,
    keptLayers: kept,
    flops: gptStepFlops(model, plan.seqLength, plan.globalBatchSize, kept),
  };
}
