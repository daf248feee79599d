/**
 * defines: LaunchOptions, parseLaunchArgs, launch, freePort, removeShmSegments
 *
 * The launcher behind `deno task launch`: starts `nprocPerNode` ranks of a Deno script
 * on this machine with torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE,
 * LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, plus DENOTRON_RUN_ID and the job's
 * rendezvous-store secret DENOTRON_STORE_SECRET), prefixes their output with the rank,
 * and watches them:
 *
 * - when a rank fails, the others get SIGTERM (SIGKILL after a grace period) and the
 *   launcher returns non-zero after a line naming the rank, its exit status and the
 *   last line it wrote to stderr;
 * - SIGTERM or SIGINT (Ctrl-C, SLURM's preemption notice) is forwarded to every rank,
 *   which may save a checkpoint and exit (see signals.ts); the launcher waits for them
 *   up to `exitGraceSeconds`, then kills what is left; a second signal kills at once;
 * - each rank watches the launcher (DENOTRON_LAUNCHER_PID): if the launcher is killed,
 *   its ranks end within a second (watchdog.ts) instead of running on orphaned;
 * - at the end, shared-memory segments of this run left in /dev/shm are removed.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import { parseFlags } from "../cli_args.ts";
import { startStoreThread } from "./store.ts";

const ESC = String.fromCharCode(27);
const ANSI = new RegExp(`${ESC}\\[[0-9;]*m`, "g");
/** The text without terminal colour codes. */
function stripAnsiCode(s: string): string {
  return s.replace(ANSI, "");
}

/** What to launch. */
export interface LaunchOptions {
  /** Ranks on this machine. */
  nprocPerNode: number;
  /** Machines. @default 1 */
  nnodes?: number;
  /** This machine's index. @default 0 */
  nodeRank?: number;
  /** Rank 0's host. @default "127.0.0.1" */
  masterAddr?: string;
  /** Rank 0's store port; a free one is picked on a single machine. @default 29500 */
  masterPort?: number;
  /** The Deno script every rank runs. */
  script: string;
  /** Its arguments. */
  args?: string[];
  /** Extra variables for every rank. */
  env?: Record<string, string>;
  /** Arguments of `deno run` before the script. @default ["-A"] */
  denoArgs?: string[];
  /** Seconds between SIGTERM and SIGKILL when stopping ranks after a failure. @default 3 */
  graceSeconds?: number;
  /**
   * Seconds the ranks get to save and exit after a SIGTERM or SIGINT forwarded from the
   * launcher, before SIGKILL. @default 120
   */
  exitGraceSeconds?: number;
  /** Where rank output goes, line by line. @default stdout/stderr with a "[rank N]" prefix */
  output?: (rank: number, stream: "stdout" | "stderr", line: string) => void;
  /** The launcher's own messages. @default console.error */
  log?: (line: string) => void;
}

/**
 * Parses `--nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P]
 * script.ts [args...]`.
 *
 * @example
 * ```ts
 * import { parseLaunchArgs } from "./launch.ts";
 * const o = parseLaunchArgs(["--nproc-per-node", "2", "train.ts", "--lr", "1e-3"]);
 * console.log(o.nprocPerNode, o.script, o.args); // 2 train.ts ["--lr", "1e-3"]
 * ```
 */
export function parseLaunchArgs(argv: string[]): LaunchOptions {
  const scriptAt = argv.findIndex((a, i) =>
    !a.startsWith("-") && (i === 0 || !argv[i - 1].startsWith("--") || argv[i - 1].includes("="))
  );
  if (scriptAt < 0) {
    throw new DenotronError(
      "usage: deno task launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] script.ts [args...]",
    );
  }
  const { values } = parseFlags({
    args: argv.slice(0, scriptAt),
    options: {
      "nproc-per-node": { type: "string" },
      "nnodes": { type: "string" },
      "node-rank": { type: "string" },
      "master-addr": { type: "string" },
      "master-port": { type: "string" },
    },
  });
  const num = (name: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      throw new DenotronError(`--${name} ${v}: expected an integer >= ${min}`);
    }
    return n;
  };
  const nprocPerNode = num("nproc-per-node", values["nproc-per-node"], 1);
  if (nprocPerNode === undefined) throw new DenotronError("--nproc-per-node is required");
  return {
    nprocPerNode,
    nnodes: num("nnodes", values.nnodes, 1),
    nodeRank: num("node-rank", values["node-rank"], 0),
    masterAddr: values["master-addr"],
    masterPort: num("master-port", values["master-port"], 0),
    script: argv[scriptAt],
    args: argv.slice(scriptAt + 1),
  };
}

/**
 * The job's rendezvous-store secret: DENOTRON_STORE_SECRET from the options or the
 * environment, else (one machine) 256 fresh random bits. The nodes of a multi-node job
 * must agree on it, so there it has to be given.
 */
function storeSecretFor(o: LaunchOptions, nnodes: number): string {
  const given = o.env?.DENOTRON_STORE_SECRET ?? Deno.env.get("DENOTRON_STORE_SECRET");
  if (given) return given;
  if (nnodes > 1) {
    throw new DenotronError(
      `--nnodes ${nnodes} needs DENOTRON_STORE_SECRET, the same on every node, so that the ` +
        `ranks can prove they belong to one job (e.g. export DENOTRON_STORE_SECRET=$(openssl rand -hex 32))`,
    );
  }
  return [...crypto.getRandomValues(new Uint8Array(32))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A TCP port that was free a moment ago on `hostname`. */
export function freePort(hostname = "127.0.0.1"): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Removes /dev/shm/denotron-<runId>-* and returns how many there were. */
export function removeShmSegments(runId: string): number {
  let n = 0;
  try {
    for (const e of Deno.readDirSync("/dev/shm")) {
      if (e.name.startsWith(`denotron-${runId}-`)) {
        try {
          Deno.removeSync(`/dev/shm/${e.name}`);
          n++;
        } catch { /* gone meanwhile */ }
      }
    }
  } catch { /* no /dev/shm here */ }
  return n;
}

async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    const lines = rest.split("\n");
    rest = lines.pop()!;
    for (const l of lines) onLine(l);
  }
  if (rest) onLine(rest);
}

/**
 * Runs the ranks of this machine until they all finish or one fails.
 *
 * @param o what to run
 * @returns the exit code: 0 when every rank succeeded, else the first failure's code
 *   (1 when it was killed by a signal), 130 after SIGINT, 143 after SIGTERM
 */
export async function launch(o: LaunchOptions): Promise<number> {
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  if (nodeRank >= nnodes) {
    throw new DenotronError(`--node-rank ${nodeRank} must be below --nnodes ${nnodes}`);
  }
  const masterAddr = o.masterAddr ?? "127.0.0.1";
  const worldSize = o.nprocPerNode * nnodes;
  const runId = o.env?.DENOTRON_RUN_ID ?? crypto.randomUUID().slice(0, 8);
  const secret = storeSecretFor(o, nnodes);
  // On one machine the launcher hosts the rendezvous store itself (torchrun's agent
  // store), on a port it holds from the start: a port picked free and bound later by rank 0
  // can be taken in between by another job starting at the same moment.
  const agent = nnodes === 1 && o.masterPort === undefined && worldSize > 1
    ? await startStoreThread(masterAddr, 0, { secret })
    : null;
  const masterPort = agent?.port ?? o.masterPort ?? (nnodes === 1 ? freePort(masterAddr) : 29500);
  const log = o.log ?? ((l: string) => console.error(l));
  const encoder = new TextEncoder();
  const output = o.output ?? ((rank, stream, line) => {
    const target = stream === "stdout" ? Deno.stdout : Deno.stderr;
    target.writeSync(encoder.encode(`[rank ${rank}] ${line}\n`));
  });

  interface Rank {
    rank: number;
    child: Deno.ChildProcess;
    lastErr: string[];
    done: Promise<void>;
    status?: Deno.CommandStatus;
  }
  let failure: { rank: number; status: Deno.CommandStatus; lastErr: string[] } | null = null;
  /** Each distinct "error: ..." line the ranks printed, and the ranks that printed it. */
  const errors = new Map<string, number[]>();
  let interrupted: Deno.Signal | null = null;
  let stopping = false;
  let wakeWatcher = () => {};
  const ranks: Rank[] = [];
  for (let local = 0; local < o.nprocPerNode; local++) {
    const rank = nodeRank * o.nprocPerNode + local;
    const command = new Deno.Command(Deno.execPath(), {
      args: ["run", ...(o.denoArgs ?? ["-A"]), o.script, ...(o.args ?? [])],
      env: {
        ...o.env,
        RANK: String(rank),
        LOCAL_RANK: String(local),
        WORLD_SIZE: String(worldSize),
        LOCAL_WORLD_SIZE: String(o.nprocPerNode),
        GROUP_RANK: String(nodeRank),
        MASTER_ADDR: masterAddr,
        MASTER_PORT: String(masterPort),
        DENOTRON_RUN_ID: runId,
        DENOTRON_STORE_SECRET: secret,
        DENOTRON_LAUNCHER_PID: String(Deno.pid),
        ...(agent ? { DENOTRON_AGENT_STORE: "1" } : {}),
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    let child: Deno.ChildProcess;
    try {
      child = command.spawn();
    } catch (e) {
      for (const r of ranks) r.child.kill("SIGKILL");
      await agent?.close();
      throw e;
    }
    const r: Rank = { rank, child, lastErr: [], done: Promise.resolve() };
    const pumps = Promise.all([
      pumpLines(child.stdout, (l) => output(rank, "stdout", l)),
      pumpLines(child.stderr, (l) => {
        // A rank's final "error: ..." line is held back: the job prints each error once.
        const plain = stripAnsiCode(l).trim();
        if (plain.startsWith("error: ")) {
          const same = errors.get(plain);
          if (same) same.push(rank);
          else errors.set(plain, [rank]);
        } else output(rank, "stderr", l);
        if (l.trim()) {
          r.lastErr.push(l);
          if (r.lastErr.length > 20) r.lastErr.shift();
        }
      }),
    ]);
    r.done = child.status.then(async (status) => {
      await pumps.catch(() => {});
      r.status = status;
      if (!status.success && !failure && !stopping) failure = { rank, status, lastErr: r.lastErr };
      wakeWatcher();
    });
    ranks.push(r);
  }

  const alive = () => ranks.filter((r) => !r.status);
  const signalAll = (signal: Deno.Signal) => {
    for (const r of alive()) {
      try {
        r.child.kill(signal);
      } catch { /* already gone */ }
    }
  };
  /** Sends `signal`, waits up to `seconds` for the ranks to exit, then kills the rest. */
  const stopAll = async (signal: Deno.Signal, seconds: number) => {
    stopping = true;
    signalAll(signal);
    const deadline = Date.now() + seconds * 1000;
    while (alive().length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    signalAll("SIGKILL");
    await Promise.all(ranks.map((r) => r.done));
  };

  // The first SIGTERM/SIGINT is passed on, so the ranks can save; a second one kills.
  const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const fn = () => {
      if (interrupted) return signalAll("SIGKILL");
      interrupted = signal;
      wakeWatcher();
    };
    Deno.addSignalListener(signal, fn);
    return [signal, fn] as const;
  });
  try {
    while (ranks.some((r) => !r.status) && !failure && !interrupted) {
      await new Promise<void>((res) => (wakeWatcher = res));
    }
    if (failure) await stopAll("SIGTERM", o.graceSeconds ?? 3);
    else if (interrupted) await stopAll(interrupted, o.exitGraceSeconds ?? 120);
  } finally {
    for (const [signal, fn] of listeners) Deno.removeSignalListener(signal, fn);
    removeShmSegments(runId);
    await agent?.close();
  }
  const ranksOf = (list: number[]) =>
    list.length > 1 ? ` (the same on ranks ${list.sort((a, b) => a - b).join(", ")})` : "";
  // The failing rank's error is said in the summary; any other, once, here.
  const lastErr = (failure as { lastErr: string[] } | null)?.lastErr ?? [];
  const why = lastErr.map((l) => stripAnsiCode(l).trim()).find((l) => /^error: |Error: /.test(l));
  for (const [line, list] of errors) {
    if (line !== why) output(list[0], "stderr", `${line}${ranksOf(list)}`);
  }
  if (interrupted && !failure) {
    const clean = ranks.filter((r) => r.status?.success).length;
    log(
      `launch: ${interrupted} passed on to ${o.nprocPerNode} rank(s); ${clean} exited cleanly`,
    );
    return interrupted === "SIGINT" ? 130 : 143;
  }
  if (failure) {
    const f = failure as { rank: number; status: Deno.CommandStatus; lastErr: string[] };
    const how = f.status.signal
      ? `was killed by ${f.status.signal}`
      : `exited with code ${f.status.code}`;
    const said = why || stripAnsiCode(f.lastErr.at(-1) ?? "").trim() || "(no output on stderr)";
    log(`launch: rank ${f.rank} ${how}: ${said}${ranksOf(errors.get(said) ?? [])}`);
    log(`launch: stopped the other ${ranks.length - 1} rank(s) of this node`);
    return f.status.code && f.status.code > 0 ? f.status.code : 1;
  }
  return 0;
}
