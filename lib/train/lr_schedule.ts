/**
 * Learning-rate schedule: linear warmup, then decay to a floor (Megatron's
 * OptimizerParamScheduler semantics). Pure: no state beyond the settings.
 *
 * defines: LrSchedule, LrScheduleOptions, LrDecayStyle
 *
 * @module
 */

/** How the rate falls after warmup. */
export type LrDecayStyle = "cosine" | "linear" | "constant";

/** Settings of {@link LrSchedule}. */
export interface LrScheduleOptions {
  /** Peak rate, reached at the end of warmup. */
  lr: number;
  /** Floor after decay. @default 0 */
  minLr?: number;
  /** Warmup steps. @default 0 */
  warmupIters?: number;
  /** Step at which decay reaches `minLr`, counted from 0 (warmup included). */
  decayIters: number;
  /** Decay shape. @default "cosine" */
  decayStyle?: LrDecayStyle;
  /** Rate at step 0 of warmup. @default 0 */
  initLr?: number;
}

/**
 * The rate at each optimizer step.
 *
 * 1. Warmup: for step <= warmupIters, rise linearly from initLr to lr.
 * 2. Constant style: lr from then on.
 * 3. After decayIters: minLr.
 * 4. Between: with r = (step - warmup) / (decayIters - warmup), the rate is
 *    minLr + c * (lr - minLr), where c = 1 - r (linear) or
 *    (1 + cos(pi r)) / 2 (cosine).
 *
 * @example
 * ```ts
 * import { LrSchedule } from "./lr_schedule.ts";
 * const s = new LrSchedule({ lr: 1e-3, minLr: 1e-4, warmupIters: 10, decayIters: 110 });
 * s.at(5); // 5e-4
 * s.at(60); // 5.5e-4, half way down the cosine
 * ```
 */
export class LrSchedule {
  /** The settings, defaults filled in. */
  readonly options: Required<LrScheduleOptions>;

  /**
   * Validates the settings (a sentence names any bad one).
   *
   * @param options peak, floor, warmup, decay length and style
   */
  constructor(options: LrScheduleOptions) {
    const o: Required<LrScheduleOptions> = {
      minLr: 0,
      warmupIters: 0,
      decayStyle: "cosine",
      initLr: 0,
      ...options,
    };
    const fail = (what: string) => {
      throw new Error(`LrSchedule: ${what}`);
    };
    if (!(o.lr > 0)) fail(`lr must be positive, got ${o.lr}`);
    if (!(o.minLr >= 0 && o.minLr <= o.lr)) fail(`minLr ${o.minLr} must be in [0, lr ${o.lr}]`);
    if (!(o.initLr >= 0)) fail(`initLr must be >= 0, got ${o.initLr}`);
    if (!Number.isInteger(o.warmupIters) || o.warmupIters < 0) {
      fail(`warmupIters must be a non-negative integer, got ${o.warmupIters}`);
    }
    if (!Number.isInteger(o.decayIters) || o.decayIters < o.warmupIters) {
      fail(`decayIters ${o.decayIters} must be an integer >= warmupIters ${o.warmupIters}`);
    }
    if (!["cosine", "linear", "constant"].includes(o.decayStyle)) {
      fail(`decayStyle must be cosine, linear or constant, got ${o.decayStyle}`);
    }
    this.options = o;
  }

  /**
   * The learning rate of optimizer step `step` (counted from 0).
   *
   * @param step optimizer steps taken so far (0 for the first update)
   * @returns the learning rate for that step
   */
  at(step: number): number {
    const { lr, minLr, warmupIters, decayIters, decayStyle, initLr } = this.options;
    if (warmupIters > 0 && step <= warmupIters) {
      return initLr + (lr - initLr) * step / warmupIters;
    }
    if (decayStyle === "constant") return lr;
    if (step > decayIters) return minLr;
    const r = (step - warmupIters) / (decayIters - warmupIters);
    const c = decayStyle === "linear" ? 1 - r : 0.5 * (Math.cos(Math.PI * r) + 1);
    return minLr + c * (lr - minLr);
  }
}
