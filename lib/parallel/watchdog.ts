/**
 * defines: Watchdog, WatchdogOptions, startWatchdog — ends a rank whose job is over even
 * while its main thread is blocked in a native collective: when the launcher that started
 * it is gone (within a second), or when a peer's heartbeat has stopped (a SIGSTOPped or
 * hung rank, within `staleMs`). It runs on a thread of its own (watchdog_worker.ts) that
 * does not keep the process alive.
 *
 * Heartbeats go through the rendezvous store: every rank bumps `heartbeat/<rank>` each
 * `heartbeatMs`; rank 0 watches every rank and the others watch rank 0, so the store
 * answers O(world size) requests per period, not its square. A rank that declares a
 * peer dead writes one `error:` line naming it and ends its own process (SIGKILL: the
 * main thread may be blocked); the launcher then stops the rest, and without a launcher
 * the others lose rank 0 and follow.
 *
 * @module
 */
import { Worker } from "node:worker_threads";
import { DenotronError } from "../errors.ts";

/** What the watchdog watches. */
export interface WatchdogOptions {
  /** This rank. */
  rank: number;
  /** Ranks in the job. */
  worldSize: number;
  /** The launcher's pid (DENOTRON_LAUNCHER_PID): when this process's parent is no longer it, end. */
  launcherPid?: number;
  /** The store to send heartbeats through; none: no heartbeats. */
  store?: { hostname: string; port: number; secret: string };
  /** Between heartbeats. @default 5000 */
  heartbeatMs?: number;
  /**
   * A peer whose heartbeat has not changed for this long is declared dead.
   * @default DENOTRON_HEARTBEAT_TIMEOUT_SECONDS × 1000, else 30000
   */
  staleMs?: number;
}

/** A running watchdog. */
export interface Watchdog {
  /** Stops watching (before a planned shutdown). Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Milliseconds of silence after which a peer is declared dead: DENOTRON_HEARTBEAT_TIMEOUT_SECONDS
 * (0 turns heartbeats off), else 30 s.
 */
export function heartbeatTimeoutMs(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): number {
  const v = env.DENOTRON_HEARTBEAT_TIMEOUT_SECONDS;
  if (v === undefined || v === "") return 30_000;
  const s = Number(v);
  if (!(s >= 0) || s > 86_400) {
    throw new DenotronError(
      `DENOTRON_HEARTBEAT_TIMEOUT_SECONDS=${v} is not a number of seconds in [0, 86400] (0: off)`,
    );
  }
  return s * 1000;
}

/**
 * Starts the watchdog thread.
 *
 * @param o what to watch
 * @returns its handle
 */
export function startWatchdog(o: WatchdogOptions): Watchdog {
  const staleMs = o.staleMs ?? heartbeatTimeoutMs();
  const config = {
    ...o,
    store: staleMs > 0 && o.worldSize > 1 ? o.store : undefined,
    heartbeatMs: o.heartbeatMs ?? Math.min(5000, Math.max(100, staleMs / 6)),
    staleMs,
  };
  if (!config.launcherPid && !config.store) return { stop: () => Promise.resolve() };
  const worker = new Worker(new URL("./watchdog_worker.ts", import.meta.url), {
    workerData: config,
  });
  worker.unref();
  let stopped: Promise<void> | null = null;
  return {
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        worker.once("message", () => {
          clearTimeout(timer);
          resolve();
        });
        worker.postMessage("stop");
      }).then(() => worker.terminate()).then(() => {});
      return stopped;
    },
  };
}
