/**
 * Learning-rate schedule: linear warmup, then decay to a floor (Megatron's
 * OptimizerParamScheduler semantics, formulas and style names). Pure: no state beyond the
 * settings.
 *
 * defines: LrSchedule, LrScheduleOptions, LrDecayStyle, LrWsdDecayStyle, LR_DECAY_STYLES,
 *          LR_WSD_DECAY_STYLES
 *
 * @module
 */

/** The decay styles, by Megatron's `--lr-decay-style` names. */
export const LR_DECAY_STYLES = [
  "cosine",
  "linear",
  "constant",
  "WSD",
  "inverse-square-root",
] as const;

/** How the rate falls after warmup. */
export type LrDecayStyle = typeof LR_DECAY_STYLES[number];

/** The shapes of WSD's decay phase, by Megatron's `--lr-wsd-decay-style` names. */
export const LR_WSD_DECAY_STYLES = ["exponential", "linear", "cosine", "minus_sqrt"] as const;

/** The shape of WSD's decay phase ("minus_sqrt" is 1 - sqrt). */
export type LrWsdDecayStyle = typeof LR_WSD_DECAY_STYLES[number];

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
  /**
   * WSD: steps of the decay phase, which ends at decayIters; the stable phase holds lr from
   * the end of warmup until it starts. Required by WSD, ignored otherwise. @default null
   */
  wsdDecayIters?: number | null;
  /** WSD: the shape of the decay phase. @default "exponential" */
  wsdDecayStyle?: LrWsdDecayStyle;
}

/**
 * The rate at each optimizer step.
 *
 * 1. Warmup: for step <= warmupIters, rise linearly from initLr to lr.
 * 2. Constant style: lr from then on.
 * 3. After decayIters: minLr (for every other style, inverse-square-root included).
 * 4. Inverse-square-root: lr * sqrt(max(warmup, 1)) / sqrt(max(step, 1)), never below minLr.
 * 5. Otherwise minLr + c * (lr - minLr), where c falls from 1 to 0 along a shape of a
 *    fraction r:
 *    - linear and cosine: r = (step - warmup) / (decayIters - warmup);
 *    - WSD: c = 1 (stable) until the decay phase starts at decayIters - wsdDecayIters,
 *      then r = (step - that start) / wsdDecayIters, shaped by wsdDecayStyle.
 *    The shapes: 1 - r (linear), (1 + cos(pi r)) / 2 (cosine), 2 * 0.5^r - 1
 *    (exponential), 1 - sqrt(r) (minus_sqrt).
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
      wsdDecayIters: null,
      wsdDecayStyle: "exponential",
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
    if (!LR_DECAY_STYLES.includes(o.decayStyle)) {
      fail(`decayStyle must be one of ${LR_DECAY_STYLES.join(", ")}, got ${o.decayStyle}`);
    }
    if (o.decayStyle === "WSD") {
      const room = o.decayIters - o.warmupIters;
      const n = o.wsdDecayIters;
      if (n === null || !Number.isInteger(n) || n < 1 || n > room) {
        fail(
          `WSD needs wsdDecayIters, an integer in [1, decayIters - warmupIters = ${room}], ` +
            `got ${n}`,
        );
      }
      if (!LR_WSD_DECAY_STYLES.includes(o.wsdDecayStyle)) {
        fail(
          `wsdDecayStyle must be one of ${LR_WSD_DECAY_STYLES.join(", ")}, got ${o.wsdDecayStyle}`,
        );
      }
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
    if (decayStyle === "inverse-square-root") {
      return Math.max(
        minLr,
        lr * Math.sqrt(Math.max(warmupIters, 1)) / Math.sqrt(Math.max(step, 1)),
      );
    }
    const { wsdDecayIters, wsdDecayStyle } = this.options;
    const wsdStart = decayIters - (wsdDecayIters ?? 0);
    const c = decayStyle !== "WSD"
      ? shape(decayStyle, (step - warmupIters) / (decayIters - warmupIters))
      : step <= wsdStart
      ? 1
      : shape(wsdDecayStyle, (step - wsdStart) / wsdDecayIters!);
    return minLr + c * (lr - minLr);
  }
}

/** A decay shape at fraction r of its length: 1 at r = 0, 0 at r = 1. */
function shape(style: "linear" | "cosine" | LrWsdDecayStyle, r: number): number {
  switch (style) {
    case "linear":
      return 1 - r;
    case "cosine":
      return 0.5 * (Math.cos(Math.PI * r) + 1);
    case "exponential":
      return 2 * 0.5 ** r - 1;
    case "minus_sqrt":
      return 1 - Math.sqrt(r);
  }
}
