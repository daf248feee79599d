/**
 * The curriculum: what each optimizer step trains on, as functions of the step.
 *
 * defines: StepContext, StepPlan, Schedule, CurriculumSchedules, Curriculum,
 *          curriculumFromConfig
 *
 * A {@link Curriculum} holds up to four schedules, each any function of the
 * step (and, for those that need it, of the samples and tokens consumed):
 * sequence length, layer keep level (progressive layer dropping), learning rate
 * and global batch size. Before each step the trainer asks it for a plan; a
 * schedule left out keeps the configuration's value. Nothing here touches
 * tensors, so every schedule is tested as plain arithmetic.
 *
 * @module
 */

import type { LrSchedule } from "../train/lr_schedule.ts";
import type { TrainConfig } from "../train/config.ts";
import { rampupBatchSizeAt } from "./batch_rampup.ts";
import type { BatchSource } from "./data.ts";
import { layerDropPlan, type LayerPlan, pldTheta } from "./layer_drop.ts";
import { seqLenAt, type SeqLenCurriculumConfig, validateSeqLenCurriculum } from "./seqlen.ts";

/** Where training stands before a step. */
export interface StepContext {
  /** Optimizer steps completed (0 before the first). */
  iteration: number;
  /** Training samples consumed so far. */
  consumedSamples: number;
  /** Training tokens consumed so far (truncated lengths counted as trained). */
  consumedTokens: number;
}

/** What one optimizer step does. */
export interface StepPlan {
  /** Tokens per sample, 1..the model's seqLength. */
  seqLength: number;
  /** Samples in the step, a multiple of microBatchSize. */
  globalBatchSize: number;
  /** Learning rate. */
  lr: number;
  /** Layers kept and their residual scales; null runs every layer. */
  layers: LayerPlan | null;
}

/** A schedule: any function of the step (and where it stands). */
export type Schedule = (step: number, context: StepContext) => number;

/** The schedules of a {@link Curriculum}; each one left out keeps the config's value. */
export interface CurriculumSchedules {
  /** Tokens per sample at a step. */
  seqLength?: Schedule;
  /** Keep level theta of progressive layer dropping at a step (1 keeps every layer). */
  layerKeep?: Schedule;
  /** Learning rate at a step. */
  lr?: Schedule;
  /** Global batch size at a step. */
  globalBatchSize?: Schedule;
  /** A data-curriculum source whose `step` is set before each step. */
  data?: BatchSource & { step: number };
}

/**
 * User-written or configured schedules, turned into a plan per step.
 *
 * @example
 * ```ts
 * import { Curriculum } from "./curriculum.ts";
 * const c = new Curriculum({
 *   seqLength: (step) => Math.min(64, 16 + 8 * Math.floor(step / 10)),
 *   lr: (step) => (step < 20 ? 1e-3 * (step + 1) / 20 : 1e-3),
 * });
 * const plan = c.plan({ iteration: 10, consumedSamples: 320, consumedTokens: 6000 },
 *   { numLayers: 4, seed: 1 });
 * [plan.seqLength, plan.lr]; // [24, 0.00055]
 * ```
 */
export class Curriculum {
  /** The schedules it was built with. */
  readonly schedules: Readonly<CurriculumSchedules>;

  /**
   * A curriculum of user-written schedules.
   *
   * @param schedules the schedules; see {@link CurriculumSchedules}
   */
  constructor(schedules: CurriculumSchedules) {
    this.schedules = schedules;
  }

  /**
   * The parts of a step's plan that the schedules set.
   *
   * @param context where training stands
   * @param model the layer count, and the seed of the layer-drop draws (shared by all ranks)
   * @returns the scheduled fields
   */
  plan(context: StepContext, model: { numLayers: number; seed: number }): Partial<StepPlan> {
    const s = this.schedules;
    const step = context.iteration;
    const out: Partial<StepPlan> = {};
    if (s.seqLength) out.seqLength = s.seqLength(step, context);
    if (s.globalBatchSize) out.globalBatchSize = s.globalBatchSize(step, context);
    if (s.lr) out.lr = s.lr(step, context);
    if (s.layerKeep) {
      const theta = s.layerKeep(step, context);
      out.layers = theta >= 1 ? null : layerDropPlan(model.seed, step, model.numLayers, theta);
    }
    if (s.data) s.data.step = step;
    return out;
  }
}

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
    const seq: SeqLenCurriculumConfig = {
      minDifficulty: cl.minDifficulty,
      maxDifficulty: cl.maxDifficulty ?? config.model.seqLength,
      scheduleType: cl.scheduleType,
      totalCurriculumStep: cl.totalCurriculumStep,
      difficultyStep: cl.difficultyStep,
      rootDegree: cl.rootDegree,
      difficulty: cl.difficulty ?? undefined,
      maxStep: cl.maxStep ?? undefined,
    };
    validateSeqLenCurriculum(seq);
    if (seq.maxDifficulty > config.model.seqLength) {
      throw new Error(
        `maxDifficulty ${seq.maxDifficulty} is longer than seqLength ${config.model.seqLength}`,
      );
    }
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
