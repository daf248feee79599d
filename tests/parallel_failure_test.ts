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
