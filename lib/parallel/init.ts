/**
 * defines: Distributed, initDistributed, ParallelGroups, initParallelGroups
 *
 * `initDistributed()` reads the rank variables (see env.ts), starts the rendezvous store
 * on rank 0, connects every rank to it and opens the world group. `initParallelGroups()`
 * then opens this rank's tensor, pipeline, data, model-parallel and embedding groups of
 * a layout. Nothing is global: the returned objects are passed to the code that needs
 * them.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import { type DistributedEnv, readDistributedEnv } from "./env.ts";
import { groupContaining, parallelLayout, type ParallelSizes, type RankLayout } from "./layout.ts";
import {
  newProcessGroup,
  type ProcessGroup,
  type ProcessGroupOptions,
  SingleProcessGroup,
} from "./process_group.ts";
import { startStoreThread, StoreClient, type StoreThread } from "./store.ts";
import { distributedTimeoutMs, SHUTDOWN_TIMEOUT_MS } from "./timeouts.ts";
import { startWatchdog, type Watchdog } from "./watchdog.ts";

/** This process's connection to the job. Close it at the end (`using` works too). */
export interface Distributed {
  /** The launcher's settings this process was started with. */
  readonly env: DistributedEnv;
  /** This process's global rank. */
  readonly rank: number;
  /** Ranks in the job. */
  readonly worldSize: number;
  /** The job's id (names its shared-memory segments). */
  readonly runId: string;
  /** The rendezvous key-value store, or null in a single-process job. */
  readonly store: StoreClient | null;
  /** Every rank. */
  readonly world: ProcessGroup;
  /** Options every further group is created with. */
  readonly groupOptions: ProcessGroupOptions;
  /**
   * Opens the group of `ranks` (every member calls it; non-members get null). Groups
   * must be created in the same order on every rank.
   */
  newGroup(ranks: readonly number[], name: string): Promise<ProcessGroup | null>;
  /** Waits for every rank, then releases the groups and the store. */
  close(): Promise<void>;
  /** Same as `close` (for `await using`). */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Joins the job described by the environment (torchrun, SLURM or `deno task launch`);
 * a process started alone is a world of one.
 *
 * @param options backend, timeouts and slot size of the groups; `env` overrides the
 *   environment variables
 * @returns the job handle
 * @example
 * ```ts ignore
 * import { initDistributed } from "./init.ts";
 * await using dist = await initDistributed();
 * console.log(`rank ${dist.rank} of ${dist.worldSize}`);
 * ```
 */
export async function initDistributed(
  options: ProcessGroupOptions & { env?: Record<string, string | undefined> } = {},
): Promise<Distributed> {
  const env = readDistributedEnv(options.env);
  const { env: _, ...groupOptions } = options;
  const groups: ProcessGroup[] = [];
  let server: StoreThread | null = null;
  let store: StoreClient | null = null;
  let runId = env.runId ?? "single";
  let watchdog: Watchdog | null = null;
  if (env.worldSize > 1) {
    const timeoutMs = groupOptions.timeoutMs ?? distributedTimeoutMs();
    if (!env.storeSecret) {
      throw new DenotronError(
        `a job of ${env.worldSize} ranks needs a rendezvous-store secret shared by its ranks: ` +
          `set DENOTRON_STORE_SECRET to the same random value on every rank (deno task ` +
          `launch does), or run under torchrun or SLURM`,
      );
    }
    const secret = env.storeSecret.value;
    if (env.rank === 0 && !env.agentStore) {
      server = await startStoreThread(env.masterAddr, env.masterPort, { secret });
    }
    store = await StoreClient.connect(env.masterAddr, env.masterPort, { secret, timeoutMs });
    if (env.rank === 0) {
      await store.set("runId", env.runId ?? crypto.randomUUID().slice(0, 8));
    }
    runId = await store.get("runId");
    // Ends this rank when the launcher dies or a peer's heartbeat stops (watchdog.ts).
    watchdog = startWatchdog({
      rank: env.rank,
      worldSize: env.worldSize,
      launcherPid: env.launcherPid,
      store: { hostname: env.masterAddr, port: env.masterPort, secret },
    });
  } else if (env.launcherPid) {
    watchdog = startWatchdog({ rank: 0, worldSize: 1, launcherPid: env.launcherPid });
  }
  const groupNames = new Set<string>();
  const newGroup = async (ranks: readonly number[], name: string) => {
    if (groupNames.has(name)) throw new DenotronError(`process group name '${name}' is taken`);
    groupNames.add(name);
    if (!store) return ranks.includes(env.rank) ? new SingleProcessGroup(name, env.rank) : null;
    const g = await newProcessGroup(store, runId, env.rank, ranks, name, groupOptions);
    if (g) groups.push(g);
    return g;
  };
  const world = (await newGroup([...Array(env.worldSize).keys()], "world"))!;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await watchdog?.stop();
    // Rank 0 hosts the store: it must outlive every other rank's last request. A short
    // wait, and none when a peer is known to have failed: it will never arrive.
    if (store && !groups.some((g) => g.failed)) {
      await store.barrier("shutdown", env.worldSize, Math.min(SHUTDOWN_TIMEOUT_MS, store.timeoutMs))
        .catch(() => {});
    }
    for (const g of groups) g.close();
    store?.close();
    await server?.close();
  };
  return {
    env,
    rank: env.rank,
    worldSize: env.worldSize,
    runId,
    store,
    world,
    groupOptions,
    newGroup,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** This rank's groups of one layout. */
export interface ParallelGroups {
  /** Every group of the layout, as lists of global ranks. */
  readonly layout: RankLayout;
  /** This process's global rank. */
  readonly rank: number;
  /** Every rank. */
  readonly world: ProcessGroup;
  /** This rank's tensor-parallel group. */
  readonly tensor: ProcessGroup;
  /** This rank's pipeline (one rank per stage). */
  readonly pipeline: ProcessGroup;
  /** Where gradients are averaged (data and context parallel together). */
  readonly data: ProcessGroup;
  /** Tensor and pipeline parallel together: the ranks holding this rank's model replica. */
  readonly modelParallel: ProcessGroup;
  /** First and last pipeline stage (tied embeddings); null on the other stages. */
  readonly embedding: ProcessGroup | null;
}

/**
 * Opens this rank's groups of the layout given by `sizes` (every rank calls it).
 *
 * @param dist the job handle
 * @param sizes tp, pp, cp (the data-parallel size follows)
 * @returns the groups
 */
export async function initParallelGroups(
  dist: Distributed,
  sizes: Omit<ParallelSizes, "worldSize"> = {},
): Promise<ParallelGroups> {
  const layout = parallelLayout({ ...sizes, worldSize: dist.worldSize });
  const mine = async (kind: string, all: number[][]) => {
    const ranks = groupContaining(all, dist.rank)!;
    return (await dist.newGroup(ranks, `${kind}-${all.indexOf(ranks)}`))!;
  };
  // The same order on every rank: each rank opens only the groups it belongs to.
  const tensor = await mine("tp", layout.tensor);
  const pipeline = await mine("pp", layout.pipeline);
  const data = await mine("dp", layout.dataContext);
  const modelParallel = await mine("mp", layout.modelParallel);
  const emb = groupContaining(layout.embedding, dist.rank);
  const embedding = emb ? await mine("emb", layout.embedding) : null;
  return {
    layout,
    rank: dist.rank,
    world: dist.world,
    tensor,
    pipeline,
    data,
    modelParallel,
    embedding,
  };
}
