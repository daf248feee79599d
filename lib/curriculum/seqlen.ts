/**
 * Sequence-length curriculum: DeepSpeed's fixed_linear, fixed_root and
 * fixed_discrete schedules (its legacy `curriculum_learning` block), and the
 * truncation of a batch to the scheduled length.
 *
 * defines: SeqLenScheduleType, SeqLenCurriculumConfig, validateSeqLenCurriculum,
 *          seqLenCurriculumFor, seqLenAt, truncateBatch
 *
 * The schedule is a pure function of the step. DeepSpeed's engine asks its
 * scheduler for `global_steps + 1` before each forward, so the optimizer step
 * with index `it` (0 for the first) trains at `seqLenAt(config, it + 1)`; the
 * {@link Curriculum} applies that offset, and this file speaks in DeepSpeed's
 * 1-based step numbers.
 *
 * @module
 */

import type { Batch } from "../data/gpt_dataset.ts";

/** How the length grows. */
export type SeqLenScheduleType = "fixed_linear" | "fixed_root" | "fixed_discrete";

/** DeepSpeed's `curriculum_learning` settings, camelCased. */
export interface SeqLenCurriculumConfig {
  /** Length at step 0. */
  minDifficulty: number;
  /** Length reached at the end (the model's seqLength). */
  maxDifficulty: number;
  /** fixed_linear, fixed_root or fixed_discrete. */
  scheduleType: SeqLenScheduleType;
  /** fixed_linear / fixed_root: steps from min to max. */
  totalCurriculumStep?: number;
  /** fixed_linear / fixed_root: lengths are multiples of this (8 suits tensor cores). @default 8 */
  difficultyStep?: number;
  /** fixed_root: 2 is a square root, 1 is linear. @default 2 */
  rootDegree?: number;
  /** fixed_discrete: the lengths, one more than `maxStep`. */
  difficulty?: readonly number[];
  /** fixed_discrete: the last step of each length but the final one. */
  maxStep?: readonly number[];
}

/**
 * Checks a configuration; throws a sentence naming the bad value.
 *
 * @param c the configuration
 * @param warn receives advice that is not an error @default console.warn
 */
export function validateSeqLenCurriculum(
  c: SeqLenCurriculumConfig,
  warn: (message: string) => void = console.warn,
): void {
  const fail = (msg: string): never => {
    throw new Error(`sequence-length curriculum: ${msg}`);
  };
  const posInt = (name: string, v: unknown) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      fail(`${name} must be a positive integer, got ${String(v)}`);
    }
  };
  posInt("minDifficulty", c.minDifficulty);
  posInt("maxDifficulty", c.maxDifficulty);
  if (c.minDifficulty > c.maxDifficulty) {
    fail(`minDifficulty ${c.minDifficulty} is larger than maxDifficulty ${c.maxDifficulty}`);
  }
  if (c.scheduleType === "fixed_discrete") {
    const d = c.difficulty ?? [], s = c.maxStep ?? [];
    if (d.length === 0) fail("fixed_discrete needs a difficulty list");
    if (d.length !== s.length + 1) {
      fail(
        `fixed_discrete needs one more difficulty than maxStep (the last length holds for the ` +
          `rest of training), got ${d.length} and ${s.length}`,
      );
    }
    d.forEach((v, i) => posInt(`difficulty[${i}]`, v));
    s.forEach((v, i) => posInt(`maxStep[${i}]`, v));
    for (let i = 1; i < s.length; i++) {
      if (s[i] <= s[i - 1]) fail(`maxStep must increase, got ${s.join(", ")}`);
    }
    return;
  }
  if (c.scheduleType !== "fixed_linear" && c.scheduleType !== "fixed_root") {
    fail(
      `scheduleType must be fixed_linear, fixed_root or fixed_discrete, got ${
        String(c.scheduleType)
      }`,
    );
  }
  posInt("totalCurriculumStep", c.totalCurriculumStep);
  posInt("difficultyStep", c.difficultyStep ?? 8);
  if (c.scheduleType === "fixed_root" && !((c.rootDegree ?? 2) > 0)) {
    fail(`rootDegree must be positive, got ${c.rootDegree}`);
  }
  const step = c.difficultyStep ?? 8;
  if (step % 8 !== 0) {
    warn(
      `sequence-length curriculum: difficultyStep ${step} is not a multiple of 8; ` +
        `GPU matrix units run fastest on multiples of 8`,
    );
  }
}

/**
 * The schedule for a model of `seqLength` tokens, from settings as a configuration holds
 * them (null for "not set"): maxDifficulty defaults to seqLength and may not exceed it.
 * The one place that rule is checked; validated like {@link validateSeqLenCurriculum}.
 *
 * @param s the settings; null maxDifficulty, difficulty and maxStep mean unset
 * @param seqLength the model's tokens per sample
 * @param warn receives advice that is not an error @default console.warn
 * @returns the validated schedule
 * @example
 * ```ts
 * import { seqLenCurriculumFor } from "./seqlen.ts";
 * const s = { minDifficulty: 8, maxDifficulty: null, scheduleType: "fixed_linear" as const,
 *   totalCurriculumStep: 100, difficultyStep: 8 };
 * seqLenCurriculumFor(s, 64).maxDifficulty; // 64
 * ```
 */
export function seqLenCurriculumFor(
  s: Omit<SeqLenCurriculumConfig, "maxDifficulty" | "difficulty" | "maxStep"> & {
    maxDifficulty: number | null;
    difficulty?: readonly number[] | null;
    maxStep?: readonly number[] | null;
  },
  seqLength: number,
  warn: (message: string) => void = console.warn,
): SeqLenCurriculumConfig {
  const c: SeqLenCurriculumConfig = {
    minDifficulty: s.minDifficulty,
    maxDifficulty: s.maxDifficulty ?? seqLength,
    scheduleType: s.scheduleType,
    totalCurriculumStep: s.totalCurriculumStep,
    difficultyStep: s.difficultyStep,
    rootDegree: s.rootDegree,
    difficulty: s.difficulty ?? undefined,
    maxStep: s.maxStep ?? undefined,
  };
  if (c.maxDifficulty > seqLength) {
    throw new Error(`maxDifficulty ${c.maxDifficulty} is longer than seqLength ${seqLength}`);
  }
  validateSeqLenCurriculum(c, warn);
  return c;
}

/**
 * The length at a step (DeepSpeed's 1-based numbering, see the module notes).
 *
 * - fixed_root with degree r (fixed_linear: r = 1):
 *   1. d = floor((step / totalCurriculumStep)^(1/r) · (max − min) + min)
 *   2. round down to a multiple of difficultyStep: d −= d mod difficultyStep
 *   3. cap at max.
 *   Where DeepSpeed would go below minDifficulty (min not a multiple of the
 *   step) we return min instead: a zero-length batch cannot train.
 * - fixed_discrete: difficulty[i] for the first i with step <= maxStep[i];
 *   after the last maxStep, the last difficulty.
 *
 * @param c the configuration (validated)
 * @param step the 1-based step
 * @returns the sequence length
 * @example
 * ```ts
 * import { seqLenAt } from "./seqlen.ts";
 * const c = { minDifficulty: 8, maxDifficulty: 64, scheduleType: "fixed_linear" as const,
 *   totalCurriculumStep: 100, difficultyStep: 8 };
 * seqLenAt(c, 50); // floor(0.5 · 56 + 8) = 36, rounded down to 32
 * ```
 */
export function seqLenAt(c: SeqLenCurriculumConfig, step: number): number {
  const { minDifficulty: lo, maxDifficulty: hi } = c;
  if (c.scheduleType === "fixed_discrete") {
    const d = c.difficulty!, s = c.maxStep!;
    for (let i = 0; i < s.length; i++) if (step <= s[i]) return d[i];
    return d[d.length - 1];
  }
  const degree = c.scheduleType === "fixed_linear" ? 1 : c.rootDegree ?? 2;
  const unit = c.difficultyStep ?? 8;
  const frac = Math.max(0, step) / c.totalCurriculumStep!;
  let d = Math.floor(frac ** (1 / degree) * (hi - lo) + lo);
  d -= d % unit;
  return Math.max(lo, Math.min(d, hi));
}

/**
 * Keeps the first `length` positions of every row: inputs, targets, and with
 * them the positions (the model numbers positions 0..length−1) and the loss
 * mask (targets of −1), which live in the same rows.
 *
 * @param batch a (B, T) batch
 * @param length the new T, 1..T
 * @returns a (B, length) batch; the same object when length is T
 */
export function truncateBatch(batch: Batch, length: number): Batch {
  const { batchSize: B, seqLength: T } = batch;
  if (!Number.isInteger(length) || length < 1 || length > T) {
    throw new Error(`truncateBatch: length ${length} is outside 1..${T}`);
  }
  if (length === T) return batch;
  const inputs = new Int32Array(B * length);
  const targets = new Int32Array(B * length);
  for (let b = 0; b < B; b++) {
    inputs.set(batch.inputs.subarray(b * T, b * T + length), b * length);
    targets.set(batch.targets.subarray(b * T, b * T + length), b * length);
  }
  const starts = batch.documentStarts?.map((row) => row.filter((t) => t < length));
  return {
    inputs,
    targets,
    batchSize: B,
    seqLength: length,
    ...(starts ? { documentStarts: starts } : {}),
  };
}
