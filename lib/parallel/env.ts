/**
 * defines: DistributedEnv, readDistributedEnv, storeSecretFrom — where this process stands
 * among the ranks, read from torchrun-compatible variables (set by `deno task launch` or
 * torchrun) or from SLURM's, and the secret its rendezvous store asks for.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";

/** This process's place in the job. */
export interface DistributedEnv {
  /** Global rank, 0 ≤ rank < worldSize. */
  rank: number;
  /** Ranks in the job. */
  worldSize: number;
  /** Rank on this machine. */
  localRank: number;
  /** Ranks on this machine. */
  localWorldSize: number;
  /** Host of rank 0's rendezvous store. */
  masterAddr: string;
  /** Port of rank 0's rendezvous store. */
  masterPort: number;
  /** Names this job's shared-memory segments; rank 0 picks one when unset. */
  runId?: string;
  /**
   * The secret every connection to the rendezvous store must prove, and the variable it
   * came from (see {@linkcode storeSecretFrom}); only looked up when worldSize > 1.
   */
  storeSecret?: { value: string; source: string };
  /** Where the values came from. */
  source: "torchrun" | "slurm" | "single";
  /** The pid of the `deno task launch` that started this rank (DENOTRON_LAUNCHER_PID). */
  launcherPid?: number;
  /**
   * The launcher hosts the rendezvous store (DENOTRON_AGENT_STORE=1, set by `deno task
   * launch` on one machine), so rank 0 does not start one.
   */
  agentStore?: boolean;
}

function int(env: Record<string, string | undefined>, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    throw new DenotronError(`${name}=${v} is not a non-negative integer`);
  }
  return n;
}

/** The first host of a SLURM node list such as "node[01-04,07],other" → "node01". */
export function firstSlurmHost(nodeList: string): string {
  const m = nodeList.match(/^([^,[]+)(?:\[([^\]]+)\])?/);
  if (!m) return nodeList;
  if (!m[2]) return m[1];
  const first = m[2].split(",")[0].split("-")[0];
  return m[1] + first;
}

/**
 * The rendezvous store's secret: the same on every rank of a job, different between
 * jobs. The first of these that is set:
 *
 * - `DENOTRON_STORE_SECRET`: random, made by `deno task launch` for each job (set it
 *   yourself, the same on every node, for a multi-node launch);
 * - torchrun's `TORCHELASTIC_RUN_ID` with MASTER_ADDR:MASTER_PORT;
 * - SLURM's `SLURM_JOB_ID` and `SLURM_STEP_ID`;
 * - `DENOTRON_RUN_ID`, for ranks started by hand with a common run id.
 *
 * Only the first is a secret in the strict sense; the others are readable by anyone who
 * can list the job, so they separate jobs (a second job on a port is refused) more than
 * they keep other users out. Set DENOTRON_STORE_SECRET for that.
 *
 * @param env the variables
 * @returns the secret and its source, or undefined when none of them is set
 * @example
 * ```ts
 * import { storeSecretFrom } from "./env.ts";
 * storeSecretFrom({ SLURM_JOB_ID: "42", SLURM_STEP_ID: "0" })?.source; // "SLURM_JOB_ID"
 * ```
 */
export function storeSecretFrom(
  env: Record<string, string | undefined>,
): { value: string; source: string } | undefined {
  if (env.DENOTRON_STORE_SECRET) {
    return { value: env.DENOTRON_STORE_SECRET, source: "DENOTRON_STORE_SECRET" };
  }
  if (env.TORCHELASTIC_RUN_ID) {
    return {
      value: `torchrun ${env.TORCHELASTIC_RUN_ID} ${env.MASTER_ADDR}:${env.MASTER_PORT}`,
      source: "TORCHELASTIC_RUN_ID",
    };
  }
  if (env.SLURM_JOB_ID) {
    return {
      value: `slurm ${env.SLURM_JOB_ID}.${env.SLURM_STEP_ID ?? ""}`,
      source: "SLURM_JOB_ID",
    };
  }
  if (env.DENOTRON_RUN_ID) {
    return { value: `run ${env.DENOTRON_RUN_ID}`, source: "DENOTRON_RUN_ID" };
  }
  return undefined;
}

/**
 * Reads the rank variables. torchrun's (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT) win over SLURM's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
 * SLURM_NTASKS_PER_NODE, SLURM_STEP_NODELIST); with neither, a single process.
 *
 * @param env the variables @default Deno.env.toObject()
 * @returns the rank, world size and rendezvous address
 * @example
 * ```ts
 * import { readDistributedEnv } from "./env.ts";
 * const e = readDistributedEnv({ RANK: "1", WORLD_SIZE: "2", MASTER_PORT: "29500" });
 * console.log(e.rank, e.worldSize); // 1 2
 * ```
 */
export function readDistributedEnv(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): DistributedEnv {
  const runId = env.DENOTRON_RUN_ID || undefined;
  let e: DistributedEnv;
  if (env.RANK !== undefined || env.WORLD_SIZE !== undefined) {
    const rank = int(env, "RANK") ?? 0;
    const worldSize = int(env, "WORLD_SIZE") ?? 1;
    e = {
      rank,
      worldSize,
      localRank: int(env, "LOCAL_RANK") ?? rank,
      localWorldSize: int(env, "LOCAL_WORLD_SIZE") ?? worldSize,
      masterAddr: env.MASTER_ADDR || "127.0.0.1",
      masterPort: int(env, "MASTER_PORT") ?? 29500,
      runId,
      source: "torchrun",
    };
  } else if (env.SLURM_PROCID !== undefined) {
    const rank = int(env, "SLURM_PROCID")!;
    const worldSize = int(env, "SLURM_NTASKS") ?? 1;
    const perNode = Number((env.SLURM_NTASKS_PER_NODE ?? "").split("(")[0]);
    const jobId = int(env, "SLURM_JOB_ID") ?? 0;
    e = {
      rank,
      worldSize,
      localRank: int(env, "SLURM_LOCALID") ?? 0,
      localWorldSize: Number.isInteger(perNode) && perNode > 0 ? perNode : worldSize,
      masterAddr: env.MASTER_ADDR ||
        firstSlurmHost(env.SLURM_STEP_NODELIST ?? env.SLURM_JOB_NODELIST ?? "127.0.0.1"),
      // Every task of the job derives the same port from the job id.
      masterPort: int(env, "MASTER_PORT") ?? 10000 + (jobId % 20000),
      runId: runId ?? (env.SLURM_JOB_ID ? `slurm${env.SLURM_JOB_ID}` : undefined),
      source: "slurm",
    };
  } else {
    e = {
      rank: 0,
      worldSize: 1,
      localRank: 0,
      localWorldSize: 1,
      masterAddr: "127.0.0.1",
      masterPort: 0,
      runId,
      source: "single",
    };
  }
  if (e.worldSize < 1 || e.rank >= e.worldSize) {
    throw new DenotronError(
      `rank ${e.rank} is outside a world of ${e.worldSize} ranks (check RANK / WORLD_SIZE)`,
    );
  }
  if (e.localRank >= e.localWorldSize) {
    throw new DenotronError(
      `local rank ${e.localRank} is outside ${e.localWorldSize} local ranks (check LOCAL_RANK / LOCAL_WORLD_SIZE)`,
    );
  }
  if (e.worldSize > 1) e.storeSecret = storeSecretFrom(env);
  const launcherPid = int(env, "DENOTRON_LAUNCHER_PID");
  if (launcherPid) e.launcherPid = launcherPid;
  if (env.DENOTRON_AGENT_STORE === "1") e.agentStore = true;
  return e;
}
