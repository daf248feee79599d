/**
 * The curriculum: what each optimizer step trains on, as functions of the step.
 *
 * defines: StepProgress, StepPlan, Schedule, CurriculumSchedules, Curriculum
 *
 * A {@link Curriculum} holds up to four schedules, each any function of the
 * step (and, for those that need it, of the samples and tokens consumed):
 * sequence length, layer keep level (progressive layer dropping), learning rate
 * and global batch size. Before each step the trainer asks it for a plan; a
 * schedule left out keeps the configuration's value. Nothing here touches
 * tensors, so every schedule is tested as plain arithmetic. The curriculum a
 * training configuration asks for is built above, in lib/train/step_plan.ts
 * (`curriculumFromConfig`).
 *
 * @module
 */

import type { BatchSource } from "./data.ts";
import { layerDropPlan, type LayerPlan } from "./layer_drop.ts";

/** Where training stands before a step. */
export interface StepProgress {
  /** Optimizer steps completed (0 before the first). */
  iteration: number;
  /** Training samples consumed so far. */
  consumedSamples: number;
  /**
   * Training tokens consumed so far, each step at its own length (truncated lengths
   * counted as trained).
   */
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
export type Schedule = (step: number, progress: StepProgress) => number;

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
   * @param progress where training stands
   * @param model the layer count, and the seed of the layer-drop draws (shared by all ranks)
   * @returns the scheduled fields
   */
  plan(progress: StepProgress, model: { numLayers: number; seed: number }): Partial<StepPlan> {
    const s = this.schedules;
    const step = progress.iteration;
    const out: Partial<StepPlan> = {};
    if (s.seqLength) out.seqLength = s.seqLength(step, progress);
    if (s.globalBatchSize) out.globalBatchSize = s.globalBatchSize(step, progress);
    if (s.lr) out.lr = s.lr(step, progress);
    if (s.layerKeep) {
      const theta = s.layerKeep(step, progress);
      out.layers = theta >= 1 ? null : layerDropPlan(model.seed, step, model.numLayers, theta);
    }
    if (s.data) s.data.step = step;
    return out;
  }
}
