/**
 * A training run shown as one live plot in a notebook.
 *
 * defines: LiveTraining, LiveTrainingOptions
 *
 * `train()` already yields to the event loop between steps; this adds hooks
 * that record every step and evaluation and redraw a {@link LiveDisplay} at
 * most every `refreshSeconds`, and a silent logger so the cell output stays one
 * plot rather than a line per logging interval.
 *
 * @module
 */

import type { EvalRecord, MetricsRecord, TrainRecord } from "../train/logging.ts";
import { ProgressLogger } from "../train/logging.ts";
import type { Trainer, TrainHooks, TrainOptions } from "../train/trainer.ts";
import { type Displayable, JUPYTER_DISPLAY, LiveDisplay, metricsBundle } from "./display.ts";

/** Options of {@link LiveTraining}. */
export interface LiveTrainingOptions {
  /** Least wall time between two redraws (the first and last are always drawn). @default 0.5 */
  refreshSeconds?: number;
  /** Plot title. @default "Training loss" */
  title?: string;
  /** The display to draw into. @default a new LiveDisplay */
  display?: LiveDisplay;
}

/**
 * Records a run and redraws its loss plot in place.
 *
 * @example
 * ```ts ignore
 * const live = new LiveTraining();
 * await train(trainer, live.trainOptions({ runDir: null }));
 * live; // the final plot and numbers
 * ```
 */
export class LiveTraining implements Displayable {
  /** Every step and evaluation seen, in order. */
  readonly records: MetricsRecord[] = [];
  /** Where the plot is drawn. */
  readonly display: LiveDisplay;
  readonly #refreshMs: number;
  readonly #title: string;
  #lastDraw = -Infinity;
  #start = performance.now();

  /**
   * Creates the recorder; nothing is shown until the first step.
   *
   * @param options refresh interval, title and display
   */
  constructor(options: LiveTrainingOptions = {}) {
    this.#refreshMs = 1000 * (options.refreshSeconds ?? 0.5);
    this.#title = options.title ?? "Training loss";
    this.display = options.display ?? new LiveDisplay();
  }

  /**
   * Hooks that record and redraw, calling `user` hooks first.
   *
   * @param user the caller's own hooks @default none
   * @returns hooks for `train()`
   */
  hooks(user: TrainHooks = {}): TrainHooks {
    return {
      beforeStep: user.beforeStep,
      afterStep: async (trainer: Trainer, r) => {
        await user.afterStep?.(trainer, r);
        const rec: TrainRecord = {
          kind: "train",
          iteration: r.iteration,
          loss: r.loss,
          lr: r.lr,
          gradNorm: r.gradNorm,
          tokensPerSecond: r.tokens / r.seconds,
          flopsPerSecond: r.flops / r.seconds,
          elapsed: this.#elapsed(),
        };
        this.records.push(rec);
        const last = r.iteration >= trainer.config.training.trainIters;
        await this.#draw(last);
      },
      afterEval: async (trainer: Trainer, r) => {
        await user.afterEval?.(trainer, r);
        const rec: EvalRecord = {
          kind: "eval",
          iteration: trainer.iteration,
          loss: r.loss,
          perplexity: r.perplexity,
          bitsPerByte: r.bitsPerByte,
          elapsed: this.#elapsed(),
        };
        this.records.push(rec);
        await this.#draw(true);
      },
    };
  }

  /**
   * Options for `train()`: these hooks and a silent progress logger.
   *
   * @param base other options (run directory, signal, time limit, user hooks)
   * @returns the options with `hooks` and `logger` filled in
   */
  trainOptions(base: TrainOptions = {}): TrainOptions {
    return {
      ...base,
      hooks: this.hooks(base.hooks),
      logger: base.logger ?? new ProgressLogger({ totalIterations: 1, write: () => {} }),
    };
  }

  /** The loss plot and the latest numbers. */
  [JUPYTER_DISPLAY](): ReturnType<Displayable[typeof JUPYTER_DISPLAY]> {
    return metricsBundle(this.records, this.#title)[JUPYTER_DISPLAY]();
  }

  /** The latest numbers as one line. */
  toString(): string {
    return String(metricsBundle(this.records, this.#title));
  }

  #elapsed(): number {
    return (performance.now() - this.#start) / 1000;
  }

  async #draw(force: boolean): Promise<void> {
    const now = performance.now();
    if (!force && now - this.#lastDraw < this.#refreshMs) return;
    this.#lastDraw = now;
    await this.display.update(this);
  }
}
