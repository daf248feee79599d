/**
 * defines: ExitSignalHandler — Megatron's --exit-signal-handler: a SIGTERM or SIGINT
 * (Ctrl-C, SLURM's preemption notice, forwarded to every rank by `deno task launch`) is
 * remembered instead of ending the process, so the training loop can finish its step,
 * save a checkpoint and exit. The ranks agree on it through one all-reduce per step, so
 * every rank stops after the same step even when only some of them got the signal.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { type ProcessGroup, reduceNumber } from "./process_group.ts";

/** Options of {@linkcode ExitSignalHandler}. */
export interface ExitSignalOptions {
  /** The signals to catch. @default ["SIGTERM", "SIGINT"] */
  signals?: Deno.Signal[];
  /** Called on the first signal (e.g. to print "saving after this step"). */
  onSignal?: (signal: Deno.Signal) => void;
  /** Exits at once (128 + signal number) on a second signal. @default true */
  secondSignalExits?: boolean;
  /** Where the flag's tensor lives for the all-reduce (the group's device). @default device() */
  device?: Device;
}

const EXIT_CODE: Partial<Record<Deno.Signal, number>> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Catches exit signals until disposed. A listener runs only when the main thread is
 * back in the event loop, so the loop must await once per step: {@linkcode agreed} does.
 *
 * @example
 * ```ts ignore
 * import { ExitSignalHandler } from "./signals.ts";
 * using exit = new ExitSignalHandler();
 * for (let step = 0; step < steps; step++) {
 *   trainStep();
 *   if (await exit.agreed(groups.world)) { saveCheckpoint(step); break; }
 * }
 * ```
 */
export class ExitSignalHandler {
  #received: Deno.Signal | null = null;
  readonly #listeners: [Deno.Signal, () => void][] = [];
  readonly #device?: Device;

  /** Starts catching the signals. */
  constructor(options: ExitSignalOptions = {}) {
    this.#device = options.device;
    for (const signal of options.signals ?? ["SIGTERM", "SIGINT"]) {
      const fn = () => {
        if (this.#received !== null) {
          if (options.secondSignalExits ?? true) Deno.exit(EXIT_CODE[signal] ?? 1);
          return;
        }
        this.#received = signal;
        options.onSignal?.(signal);
      };
      Deno.addSignalListener(signal, fn);
      this.#listeners.push([signal, fn]);
    }
  }

  /** The first signal this process received, or null. */
  get received(): Deno.Signal | null {
    return this.#received;
  }

  /**
   * Lets pending signals be delivered, then whether any rank of `group` has received one
   * (a max all-reduce of one int32). Every rank of the group calls it at the same step.
   *
   * @param group the ranks that stop together; none: this process alone
   * @returns true when the loop should save and stop
   */
  async agreed(group?: ProcessGroup | null): Promise<boolean> {
    await new Promise((r) => setTimeout(r, 0));
    const mine = this.#received === null ? 0 : 1;
    return reduceNumber(group ?? null, mine, "max", this.#device) === 1;
  }

  /** Stops catching (the signals' default actions return). Safe to call twice. */
  dispose(): void {
    for (const [signal, fn] of this.#listeners.splice(0)) Deno.removeSignalListener(signal, fn);
  }

  /** Same as dispose (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
