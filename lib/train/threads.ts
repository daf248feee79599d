/**
 * Picks the kernels' thread count from measured step times, and keeps
 * re-checking it.
 *
 * defines: ThreadTuner, ThreadTunerOptions
 *
 * Why: on a machine shared with other work, all-cores OpenMP can be several
 * times slower than one thread (every parallel region waits for a thread that
 * another process has taken off its core), while on an idle machine it is the
 * fastest. Kernel results do not depend on the thread count (the reductions are
 * fixed-order), so switching changes speed only, never the numbers.
 *
 * The policy, as phases:
 * 1. trial: `trialSteps` steps at each candidate count, in turn;
 * 2. steady: the candidate with the lowest median step time, for `recheckEvery` steps,
 *    or until two steps in a row take over `slowdown` times that median;
 * 3. back to trial, since the machine's load changes.
 *
 * @module
 */

/** Options of {@link ThreadTuner}. */
export interface ThreadTunerOptions {
  /** Thread counts to try. */
  candidates: readonly number[];
  /** Steps timed per candidate in a trial. @default 3 */
  trialSteps?: number;
  /** Steps between trials. @default 100 */
  recheckEvery?: number;
  /** Step time, relative to the trial's best, that starts a new trial early. @default 1.5 */
  slowdown?: number;
}

/**
 * Feed it each step's wall time; it says which thread count to use next.
 *
 * @example
 * ```ts
 * import { ThreadTuner } from "./threads.ts";
 * const tuner = new ThreadTuner({ candidates: [1, 2], trialSteps: 1, recheckEvery: 10 });
 * tuner.current; // 1 (trying 1 first)
 * tuner.record(0.9); // one step at 1 thread took 0.9 s
 * tuner.current; // 2
 * tuner.record(0.5);
 * tuner.current; // 2: the faster one, until the next trial
 * ```
 */
export class ThreadTuner {
  readonly candidates: readonly number[];
  readonly trialSteps: number;
  readonly recheckEvery: number;
  readonly slowdown: number;
  /** The thread count for the next step. */
  current: number;
  #trial: number[][] | null;
  #index = 0;
  #steady = 0;
  #best = Infinity;
  #slowSteps = 0;

  /**
   * @param options the counts to try and the trial cadence
   */
  constructor(options: ThreadTunerOptions) {
    if (options.candidates.length === 0) throw new Error("ThreadTuner: no candidates");
    this.candidates = [...options.candidates];
    this.trialSteps = options.trialSteps ?? 3;
    this.recheckEvery = options.recheckEvery ?? 100;
    this.slowdown = options.slowdown ?? 1.5;
    this.#trial = this.candidates.map(() => []);
    this.current = this.candidates[0];
  }

  /** Whether a trial is under way. */
  get trying(): boolean {
    return this.#trial !== null;
  }

  /**
   * Records the step just run at `current` threads and moves the policy on.
   *
   * @param seconds that step's wall time
   * @returns the thread count for the next step
   */
  record(seconds: number): number {
    if (this.#trial === null) {
      this.#slowSteps = seconds > this.slowdown * this.#best ? this.#slowSteps + 1 : 0;
      if (++this.#steady >= this.recheckEvery || this.#slowSteps >= 2) this.#startTrial();
      return this.current;
    }
    const times = this.#trial[this.#index];
    times.push(seconds);
    if (times.length >= this.trialSteps) {
      this.#index++;
      if (this.#index < this.candidates.length) {
        this.current = this.candidates[this.#index];
      } else {
        const medians = this.#trial.map(median);
        this.#best = Math.min(...medians);
        this.current = this.candidates[medians.indexOf(this.#best)];
        this.#trial = null;
        this.#steady = 0;
        this.#slowSteps = 0;
      }
    }
    return this.current;
  }

  #startTrial(): void {
    this.#trial = this.candidates.map(() => []);
    this.#index = 0;
    this.current = this.candidates[0];
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
