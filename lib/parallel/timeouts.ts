/**
 * defines: distributedTimeoutMs, setDistributedTimeoutMinutes, SHUTDOWN_TIMEOUT_MS — how
 * long a rank waits for its peers: in every collective, every store wait and barrier
 * (Megatron's --distributed-timeout-minutes), and at shutdown.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";

/** The default deadline of a collective or store wait: two minutes. */
export const DEFAULT_DISTRIBUTED_TIMEOUT_MS = 120_000;

/**
 * The deadline of the shutdown barrier (capped by the distributed timeout): long enough
 * for ranks that finish a little apart, short enough that a job whose peer died ends in
 * seconds, not after a second full timeout.
 */
export const SHUTDOWN_TIMEOUT_MS = 10_000;

let chosenMs: number | null = null;

/**
 * Sets the deadline of every collective and store wait of the process groups opened
 * after this call (a group keeps the deadline it was opened with): the trainer calls it
 * with `--distributed-timeout-minutes` before `initDistributed()`.
 *
 * @param minutes a positive number of minutes (fractions allowed); null goes back to the
 *   environment's or the default
 * @example
 * ```ts
 * import { distributedTimeoutMs, setDistributedTimeoutMinutes } from "./timeouts.ts";
 * setDistributedTimeoutMinutes(0.5);
 * console.log(distributedTimeoutMs()); // 30000
 * setDistributedTimeoutMinutes(null);
 * ```
 */
export function setDistributedTimeoutMinutes(minutes: number | null): void {
  chosenMs = minutes === null ? null : minutesToMs(minutes, "--distributed-timeout-minutes");
}

function minutesToMs(minutes: number, what: string): number {
  if (typeof minutes !== "number" || !(minutes > 0) || minutes > 7 * 24 * 60) {
    throw new DenotronError(`${what} must be a number in (0, 10080] (a week), got ${minutes}`);
  }
  return Math.max(1, Math.round(minutes * 60_000));
}

/**
 * The deadline in milliseconds: {@linkcode setDistributedTimeoutMinutes}'s, else
 * DENOTRON_DISTRIBUTED_TIMEOUT_MINUTES, else DENOTRON_COMM_TIMEOUT_MS, else two minutes.
 *
 * @param env the variables @default Deno.env.toObject()
 * @returns milliseconds
 */
export function distributedTimeoutMs(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): number {
  if (chosenMs !== null) return chosenMs;
  const minutes = env.DENOTRON_DISTRIBUTED_TIMEOUT_MINUTES;
  if (minutes) return minutesToMs(Number(minutes), "DENOTRON_DISTRIBUTED_TIMEOUT_MINUTES");
  const ms = env.DENOTRON_COMM_TIMEOUT_MS;
  if (ms) {
    const n = Number(ms);
    if (!Number.isInteger(n) || n < 1) {
      throw new DenotronError(`DENOTRON_COMM_TIMEOUT_MS=${ms} is not a positive integer`);
    }
    return n;
  }
  return DEFAULT_DISTRIBUTED_TIMEOUT_MS;
}
