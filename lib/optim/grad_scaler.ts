/**
 * defines: GradScaler, ConstantGradScaler, DynamicGradScaler, DynamicGradScalerOptions,
 *          GradScalerState
 *
 * Loss scaling for fp16 training, with Megatron-LM's semantics. The loss is multiplied
 * by `scale` before backward (backward starts from `scale` instead of 1), so small
 * gradients survive fp16's narrow range; the optimizer multiplies by 1/scale again.
 * When a step's gradients hold inf or NaN the step is skipped and the scaler is told.
 *
 * Pure state machines: no tensors, no I/O. bf16 has fp32's exponent range and needs no
 * scaler.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";

/** What the training step needs from a loss scaler. */
export interface GradScaler {
  /** The factor the loss is multiplied by before backward. */
  readonly scale: number;
  /** 1 / scale. */
  readonly invScale: number;
  /** Reports the outcome of a step: whether its gradients overflowed. */
  update(foundInf: boolean): void;
  /** A plain object to checkpoint. */
  stateDict(): GradScalerState;
  /** Restores from {@linkcode GradScaler.stateDict}. */
  loadStateDict(state: GradScalerState): void;
}

/** A scaler's checkpointed state. */
export interface GradScalerState {
  /** The current loss scale. */
  scale: number;
  /** Clean steps since the last change. */
  growthTracker?: number;
  /** Overflows still tolerated before the scale drops. */
  hysteresisTracker?: number;
}

function checkPositive(what: string, x: number): void {
  if (!(x > 0) || !Number.isFinite(x)) {
    throw new DenotronError(`${what} must be a positive finite number, got ${x}`);
  }
}

/**
 * A fixed loss scale (Megatron's `--loss-scale`): it never changes, even after an
 * overflow (the step is still skipped).
 *
 * @example
 * ```ts
 * import { ConstantGradScaler } from "./grad_scaler.ts";
 * const s = new ConstantGradScaler(1024);
 * s.update(true);
 * console.log(s.scale); // 1024
 * ```
 */
export class ConstantGradScaler implements GradScaler {
  #scale: number;
  /** A scaler that always uses `scale`. */
  constructor(scale: number) {
    checkPositive("lossScale", scale);
    this.#scale = scale;
  }
  get scale(): number {
    return this.#scale;
  }
  get invScale(): number {
    return 1 / this.#scale;
  }
  update(_foundInf: boolean): void {}
  stateDict(): GradScalerState {
    return { scale: this.#scale };
  }
  loadStateDict(state: GradScalerState): void {
    checkPositive("lossScale", state.scale);
    this.#scale = state.scale;
  }
}

/** Options of {@linkcode DynamicGradScaler}; defaults are Megatron-LM's. */
export interface DynamicGradScalerOptions {
  /** `--initial-loss-scale`. @default 2 ** 32 */
  initialScale?: number;
  /** `--min-loss-scale`: the scale never backs off below this. @default 1 */
  minScale?: number;
  /** Multiplies the scale after a clean window. @default 2 */
  growthFactor?: number;
  /** Multiplies the scale when hysteresis runs out. @default 0.5 */
  backoffFactor?: number;
  /** `--loss-scale-window`: clean steps in a row before the scale grows. @default 1000 */
  growthInterval?: number;
  /** `--hysteresis`: overflows tolerated before the scale backs off. @default 2 */
  hysteresis?: number;
}

/**
 * Megatron-LM's dynamic loss scale.
 *
 * - An overflow resets the clean-step count and uses up one unit of hysteresis; once
 *   hysteresis is used up, every further overflow multiplies the scale by
 *   `backoffFactor`, never going below `minScale`.
 * - A clean step adds one to the count; after `growthInterval` clean steps in a row the
 *   scale is multiplied by `growthFactor`, the count restarts and hysteresis is refilled.
 *   (Clean steps alone do not refill hysteresis: only growth does.)
 *
 * @example
 * ```ts
 * import { DynamicGradScaler } from "./grad_scaler.ts";
 * const s = new DynamicGradScaler({ initialScale: 8, growthInterval: 2, hysteresis: 1 });
 * s.update(true); // 4
 * s.update(false);
 * s.update(false); // 8
 * console.log(s.scale);
 * ```
 */
export class DynamicGradScaler implements GradScaler {
  /** The scale never drops below this. */
  readonly minScale: number;
  /** Multiplies the scale after `growthInterval` clean steps. */
  readonly growthFactor: number;
  /** Multiplies the scale after an overflow once hysteresis is spent. */
  readonly backoffFactor: number;
  /** Clean steps between growths. */
  readonly growthInterval: number;
  /** Overflows tolerated before backing off. */
  readonly hysteresis: number;
  #scale: number;
  #growthTracker = 0;
  #hysteresisTracker: number;

  /** A scaler with Megatron's defaults unless overridden. */
  constructor(opts: DynamicGradScalerOptions = {}) {
    const o = {
      initialScale: 2 ** 32,
      minScale: 1,
      growthFactor: 2,
      backoffFactor: 0.5,
      growthInterval: 1000,
      hysteresis: 2,
      ...opts,
    };
    checkPositive("initialLossScale", o.initialScale);
    checkPositive("minLossScale", o.minScale);
    if (o.minScale > o.initialScale) {
      throw new DenotronError(
        `minLossScale ${o.minScale} is larger than initialLossScale ${o.initialScale}`,
      );
    }
    if (!(o.growthFactor > 1)) {
      throw new DenotronError(`the growth factor must be above 1, got ${o.growthFactor}`);
    }
    if (!(o.backoffFactor > 0 && o.backoffFactor < 1)) {
      throw new DenotronError(`the backoff factor must be in (0, 1), got ${o.backoffFactor}`);
    }
    for (const [k, v] of [["lossScaleWindow", o.growthInterval], ["hysteresis", o.hysteresis]]) {
      if (!Number.isInteger(v) || (v as number) < 1) {
        throw new DenotronError(`${k} must be a positive integer, got ${v}`);
      }
    }
    this.#scale = o.initialScale;
    this.minScale = o.minScale;
    this.growthFactor = o.growthFactor;
    this.backoffFactor = o.backoffFactor;
    this.growthInterval = o.growthInterval;
    this.hysteresis = o.hysteresis;
    this.#hysteresisTracker = o.hysteresis;
  }

  get scale(): number {
    return this.#scale;
  }
  get invScale(): number {
    return 1 / this.#scale;
  }
  /** Clean steps since the last overflow or growth. */
  get growthTracker(): number {
    return this.#growthTracker;
  }
  /** Overflows left before the scale backs off. */
  get hysteresisTracker(): number {
    return this.#hysteresisTracker;
  }

  update(foundInf: boolean): void {
    if (foundInf) {
      this.#growthTracker = 0;
      this.#hysteresisTracker--;
      if (this.#hysteresisTracker <= 0) {
        this.#scale = Math.max(this.#scale * this.backoffFactor, this.minScale);
      }
      return;
    }
    this.#growthTracker++;
    if (this.#growthTracker === this.growthInterval) {
      this.#growthTracker = 0;
      this.#hysteresisTracker = this.hysteresis;
      this.#scale *= this.growthFactor;
    }
  }

  stateDict(): GradScalerState {
    return {
      scale: this.#scale,
      growthTracker: this.#growthTracker,
      hysteresisTracker: this.#hysteresisTracker,
    };
  }

  loadStateDict(state: GradScalerState): void {
    checkPositive("loss scale", state.scale);
    this.#scale = state.scale;
    this.#growthTracker = state.growthTracker ?? 0;
    this.#hysteresisTracker = state.hysteresisTracker ?? this.hysteresis;
  }
}
