/**
 * Megatron's batch-size ramp-up (`--rampup-batch-size start increment samples`).
 *
 * defines: RampupBatchSize, rampupBatchSizeAt
 *
 * The batch grows from `start` to the global batch size in steps of
 * `increment`, spending the same number of samples at each size:
 *
 * 1. increments = (global − start) / increment (must be whole);
 * 2. samples per increment = rampupSamples / increments;
 * 3. after c consumed samples the batch is
 *    start + floor(c / samples per increment) · increment, and the global size
 *    once c exceeds rampupSamples.
 *
 * @module
 */

/** [start, increment, rampupSamples], as Megatron's argument. */
export type RampupBatchSize = readonly [number, number, number];

/**
 * The global batch size of the step that starts after `consumedSamples`.
 *
 * @param rampup [start, increment, samples]
 * @param globalBatchSize the final batch size
 * @param consumedSamples samples consumed before this step
 * @param microBatchSize every size must be a multiple of it @default 1
 * @returns this step's global batch size
 * @example
 * ```ts
 * import { rampupBatchSizeAt } from "./batch_rampup.ts";
 * // 8 → 32 by 8 over 300 samples: 100 samples per size
 * [0, 99, 100, 250, 300, 301].map((c) => rampupBatchSizeAt([8, 8, 300], 32, c));
 * // [8, 8, 16, 24, 32, 32]
 * ```
 */
export function rampupBatchSizeAt(
  rampup: RampupBatchSize,
  globalBatchSize: number,
  consumedSamples: number,
  microBatchSize = 1,
): number {
  const [start, increment, samples] = rampup;
  const fail = (msg: string): never => {
    throw new Error(`rampupBatchSize [${rampup.join(", ")}]: ${msg}`);
  };
  if (![start, increment, samples].every((v) => Number.isInteger(v) && v >= 1)) {
    fail("start, increment and samples must be positive integers");
  }
  if (start > globalBatchSize) fail(`start is larger than globalBatchSize ${globalBatchSize}`);
  if ((globalBatchSize - start) % increment !== 0) {
    fail(`increment does not divide globalBatchSize ${globalBatchSize} − start`);
  }
  if (start % microBatchSize !== 0 || increment % microBatchSize !== 0) {
    fail(`start and increment must be multiples of microBatchSize ${microBatchSize}`);
  }
  const increments = (globalBatchSize - start) / increment;
  if (increments === 0 || consumedSamples > samples) return globalBatchSize;
  const perIncrement = samples / increments;
  const size = start + Math.floor(consumedSamples / perIncrement) * increment;
  return Math.min(size, globalBatchSize);
}
