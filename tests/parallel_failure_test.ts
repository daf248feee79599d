/**
 * Failures: a rank that dies makes its peers fail at once with an error naming the group,
 * the operation and the peer; the launcher stops the job, exits non-zero naming the rank,
 * and no shared-memory segment is left.
 */
import assert from "assert";
import { FIXTURES, launchFixture, leftoverSegments } from "./parallel_helpers.ts";
import { device } from "../lib/device.ts";
import { freePort } from "../lib/parallel/launch.ts";

for (const how of ["kill", "throw"]) {
  Deno.test(`launcher: a rank that fails (${how}) stops the job within seconds, naming the rank`, async () => {
    const runId = `crash${how}${Date.now() % 100000}`;
    const r = await launchFixture(3, "crash.ts", [how], { DENOTRON_RUN_ID: runId });
    assert.notEqual(r.code, 0);
    assert.ok(r.seconds < 15, `took ${r.seconds} s`);
    const summary = r.log.join("\n");
    assert.match(
      summary,
      how === "kill"
        ? /rank 1 was killed by SIGKILL/
        : /rank 1 exited with code 1: .*gives up on purpose/,
    );
    assert.deepEqual(leftoverSegments(runId), []);
  });
}

/** Starts `n` ranks of crash.ts directly (no launcher) and returns each one's outcome. */
async function ranksWithoutLauncher(n: number, how: string, env: Record<string, string> = {}) {
  device();
  const port = freePort();
  const runId = `direct${how}${Date.now() % 100000}`;
  const t0 = performance.now();
  const procs = [...Array(n).keys()].map((rank) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", FIXTURES + "crash.ts", how],
      env: {
        RANK: String(rank),
        WORLD_SIZE: String(n),
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        DENOTRON_RUN_ID: runId,
        DENOTRON_NUM_THREADS: "1",
        NO_COLOR: "1",
        ...env,
      },
      stdout: "piped",
      stderr: "piped",
    }).output()
  );
  const outs = await Promise.all(procs);
  const seconds = (performance.now() - t0) / 1000;
  return {
    seconds,
    runId,
    ranks: outs.map((o) => ({ code: o.code, stderr: new TextDecoder().decode(o.stderr) })),
  };
}

Deno.test("without a launcher, the peers of a killed rank fail with an error naming it", async () => {
  const r = await ranksWithoutLauncher(2, "kill");
  assert.ok(r.seconds < 15, `took ${r.seconds} s`);
  assert.notEqual(r.ranks[0].code, 0);
  assert.match(
    r.ranks[0].stderr,
    /process group '[^']*world': all_reduce on rank 0: peer rank 1 \(pid \d+\) has exited/,
  );
  assert.deepEqual(leftoverSegments(r.runId), []);
});

Deno.test("a peer that stops calling collectives makes the others time out, naming it", async () => {
  const r = await ranksWithoutLauncher(2, "hang", { TIMEOUT_MS: "1000" });
  assert.notEqual(r.ranks[0].code, 0);
  assert.match(
    r.ranks[0].stderr,
    /all_reduce on rank 0 timed out after 1000 ms waiting for rank 1/,
  );
  assert.deepEqual(leftoverSegments(r.runId), []);
});

Deno.test("a recv whose size differs from the send fails at once on both ranks, naming the sizes", async () => {
  const r = await ranksWithoutLauncher(2, "mismatch");
  assert.ok(r.seconds < 15, `took ${r.seconds} s (a timeout, not the size check)`);
  assert.notEqual(r.ranks[1].code, 0);
  assert.match(
    r.ranks[1].stderr,
    /recv on rank 1: rank 0 sent 400000 bytes, this recv takes 200000 \(100000 bf16 elements\): the send and recv differ in shape or dtype/,
  );
  assert.notEqual(r.ranks[0].code, 0);
  assert.match(r.ranks[0].stderr, /rank 1 aborted the group/);
  assert.deepEqual(leftoverSegments(r.runId), []);
});

const LAUNCH = decodeURIComponent(new URL("../tools/launch.ts", import.meta.url).pathname);

/** `deno task launch` of linger.ts on `n` ranks in a subprocess, and each rank's pid. */
async function lingeringJob(n: number, env: Record<string, string> = {}) {
  device();
  const launcher = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", LAUNCH, "--nproc-per-node", String(n), FIXTURES + "linger.ts"],
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const pids = new Map<number, number>();
  const decoder = new TextDecoder();
  let rest = "";
  const reading = (async () => {
    for await (const chunk of launcher.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const l of parts) {
        lines.push(l);
        const m = /\[rank (\d+)\] rank \d+ pid (\d+)/.exec(l);
        if (m) pids.set(Number(m[1]), Number(m[2]));
      }
    }
  })();
  const stderr = new Response(launcher.stderr).text();
  const deadline = Date.now() + 30_000;
  while (pids.size < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(pids.size, n, `the ranks did not start: ${lines.join("\n")}`);
  const byRank = [...pids.keys()].sort().map((r) => pids.get(r)!);
  return { launcher, pids: byRank, lines, reading, stderr };
}

/** Whether `pid` is a live process (not gone, not a zombie waiting to be reaped). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

async function waitUntil(ok: () => boolean, ms: number): Promise<number> {
  const t0 = performance.now();
  while (!ok() && performance.now() - t0 < ms) await new Promise((r) => setTimeout(r, 100));
  return (performance.now() - t0) / 1000;
}

Deno.test("a SIGKILLed launcher leaves no rank alive after 10 s (each rank watches it)", async () => {
  const job = await lingeringJob(2);
  try {
    job.launcher.kill("SIGKILL");
    await job.launcher.status;
    const seconds = await waitUntil(() => !job.pids.some(alive), 10_000);
    assert.ok(!job.pids.some(alive), `ranks ${job.pids.filter(alive)} still alive after 10 s`);
    assert.ok(seconds < 5, `the ranks took ${seconds} s to notice`);
  } finally {
    for (const pid of job.pids.filter(alive)) Deno.kill(pid, "SIGKILL");
    await job.reading.catch(() => {});
    await job.stderr.catch(() => {});
  }
});

Deno.test("SIGTERM to the launcher reaches every rank, which stop after the same step and exit cleanly", async () => {
  const job = await lingeringJob(2);
  await new Promise((r) => setTimeout(r, 500));
  job.launcher.kill("SIGTERM");
  const status = await job.launcher.status;
  await job.reading;
  const stderr = await job.stderr;
  assert.equal(status.code, 143, stderr);
  const stops = job.lines.map((l) => /rank (\d) stopped after step (\d+)/.exec(l))
    .filter((m) => m !== null);
  assert.equal(stops.length, 2, job.lines.join("\n"));
  assert.equal(stops[0]![2], stops[1]![2], "the ranks stopped after different steps");
  assert.match(stderr, /launch: SIGTERM passed on to 2 rank\(s\); 2 exited cleanly/);
  assert.ok(!job.pids.some(alive));
});

Deno.test({
  name: "a SIGSTOPped rank ends the job within 60 s: its heartbeat stops and its peer names it",
  fn: async () => {
    const t0 = performance.now();
    const job = await lingeringJob(2, { LINGER_S: "120" });
    try {
      Deno.kill(job.pids[1], "SIGSTOP");
      const status = await job.launcher.status;
      const seconds = (performance.now() - t0) / 1000;
      const stderr = await job.stderr;
      assert.notEqual(status.code, 0);
      assert.ok(seconds < 60, `the job took ${seconds} s to end`);
      assert.match(stderr, /launch: rank 0 .*error: rank 1 sent no heartbeat for 3\d s/);
      await waitUntil(() => !job.pids.some(alive), 5000);
      assert.ok(!job.pids.some(alive), "a rank outlived the job");
    } finally {
      for (const pid of job.pids.filter(alive)) Deno.kill(pid, "SIGKILL");
      await job.reading.catch(() => {});
    }
  },
});
