/**
 * The watchdog's thread (see watchdog.ts). It reads its settings from `workerData` and
 * never returns control: it ends the process itself when the job is over.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import { StoreClient } from "./store.ts";
import type { WatchdogOptions } from "./watchdog.ts";

const o = workerData as
  & Required<Omit<WatchdogOptions, "launcherPid" | "store">>
  & Pick<WatchdogOptions, "launcherPid" | "store">;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One line on stderr (which may be gone with the launcher), then the end of the process. */
function endProcess(message: string): void {
  try {
    console.error(`error: ${message}`);
  } catch { /* the launcher's pipe is closed */ }
  // SIGKILL: the main thread may be blocked in a native call and a SIGTERM handler
  // (the trainer's save) could not run; exiting from this thread would end only it.
  Deno.kill(Deno.pid, "SIGKILL");
}

if (o.launcherPid) {
  const launcher = o.launcherPid;
  setInterval(() => {
    if (Deno.ppid !== launcher) {
      endProcess(`rank ${o.rank}: the launcher (pid ${launcher}) is gone; ending this rank`);
    }
  }, 500);
}

/** The heartbeat value of a rank that has stopped its watchdog on purpose. */
const DONE = "done";

let client: StoreClient | null = null;
let stopping = false;
// A planned stop: mark this rank done, so that its watchers do not take the silence that
// follows for a hang (rank 0 may still be saving a checkpoint long after the others end).
parentPort!.on("message", async (m) => {
  if (m !== "stop") return;
  stopping = true;
  await client?.set(`heartbeat/${o.rank}`, DONE).catch(() => {});
  parentPort!.postMessage("stopped");
});

if (o.store) void heartbeats(o.store);

async function heartbeats(store: NonNullable<WatchdogOptions["store"]>): Promise<void> {
  client = await StoreClient.connect(store.hostname, store.port, {
    secret: store.secret,
    timeoutMs: Math.max(1000, o.heartbeatMs),
  });
  const watched = o.rank === 0 ? [...Array(o.worldSize).keys()].slice(1) : [0];
  const last = new Map(watched.map((r) => [r, { value: "", at: Date.now() }]));
  let lastError = "";
  let beat = 0;
  let overslept = false;
  while (!stopping) {
    // One round trip for the beat and the reads together: a stopped store costs one
    // request timeout per round, not one per key.
    const [, ...values] = await Promise.all([
      client.set(`heartbeat/${o.rank}`, String(++beat)).catch(() => null),
      ...watched.map((r) =>
        client!.get(`heartbeat/${r}`, Math.min(1000, o.heartbeatMs)).catch((e) => {
          lastError = (e as Error).message;
          return null;
        })
      ),
    ]);
    const now = Date.now();
    if (stopping) return;
    watched.forEach((r, i) => {
      const seen = last.get(r)!;
      if (seen.value === DONE || values[i] === DONE) {
        seen.value = DONE;
        return;
      }
      // After this process was stopped itself (the whole job, say, by Ctrl-Z), start afresh.
      if (overslept || (values[i] !== null && values[i] !== seen.value)) {
        seen.value = values[i] ?? seen.value;
        seen.at = now;
      } else if (now - seen.at > o.staleMs) {
        endProcess(
          `rank ${r} sent no heartbeat for ${Math.round((now - seen.at) / 1000)} s ` +
            `(stopped, hung or gone${lastError ? `; ${lastError}` : ""}); rank ${o.rank} ` +
            `ends the job`,
        );
      }
    });
    const before = Date.now();
    await sleep(o.heartbeatMs);
    overslept = Date.now() - before > o.heartbeatMs + o.staleMs / 2;
  }
}
