/**
 * defines: DistributedEnv, readDistributedEnv — where this process stands among the ranks,
 * read from torchrun-compatible variables (set by `deno task launch` or torchrun) or from
 * SLURM's.
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
  /** Where the values came from. */
  source: "torchrun" | "slurm" | "single";
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
  return e;
}
