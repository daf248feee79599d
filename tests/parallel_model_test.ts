/**
 * Model parallelism on real processes: tensor-parallel (TP 1, 2, 4) runs of a tiny GPT,
 * with and without sequence parallelism and with dropout on, give the loss and every
 * gradient of the single-process model after one step, and its losses and parameters
 * after five.
 */
import assert from "assert";
import { relError, runFixtureJson } from "./parallel_helpers.ts";

interface Run {
  losses: number[];
  grads: Record<string, number[]>;
  params: Record<string, number[]>;
}

const tmp = await Deno.makeTempDir({ prefix: "denotron-mp-" });

function run(n: number, args: string[]): Promise<Run> {
  return runFixtureJson<Run>(n, "train_tp.ts", args, tmp);
}

function assertSameRun(got: Run, want: Run, what: string, tol = 1e-5) {
  got.losses.forEach((l, i) => {
    const e = Math.abs(l - want.losses[i]) / Math.abs(want.losses[i]);
    assert.ok(e < tol, `${what}: loss of step ${i + 1} is ${l}, single process ${want.losses[i]}`);
  });
  // The key bias's gradient is zero up to rounding (softmax ignores a shift of every
  // score), and AdamW turns rounding noise into steps of ±lr, so parameters after five
  // steps agree more loosely than gradients after one.
  for (const [kind, limit] of [["grads", tol], ["params", 1e-2]] as const) {
    assert.deepEqual(Object.keys(got[kind]).sort(), Object.keys(want[kind]).sort());
    for (const [name, w] of Object.entries(want[kind])) {
      const e = relError(got[kind][name], w);
      assert.ok(e < limit, `${what}: ${kind} of ${name} differ by ${e} (relative L2)`);
    }
  }
}

const single = await run(1, ["--mode", "single"]);

Deno.test("tensor-parallel GPT (TP 1, 2, 4) equals the single-process run: loss and gradients after one step, losses after five", async () => {
  assert.ok(single.losses[4] < single.losses[0] + 0.1, "the reference run trains");
  assertSameRun(await run(1, ["--tp", "1"]), single, "TP=1");
  assertSameRun(await run(2, ["--tp", "2"]), single, "TP=2");
  assertSameRun(await run(4, ["--tp", "4"]), single, "TP=4");
});

Deno.test("sequence parallelism (TP 2, 4) equals the single-process run, dropout masks included", async () => {
  assertSameRun(await run(2, ["--tp", "2", "--sp"]), single, "TP=2 SP");
  assertSameRun(await run(4, ["--tp", "4", "--sp"]), single, "TP=4 SP");
});
