/**
 * Activation recomputation: full (uniform and block) and selective recomputation give
 * the gradients of the run that keeps every activation, bit for bit (same kernels, same
 * dropout counters), and the native allocator's peak shows the memory they save.
 */
import assert from "assert";
import { recomputeGroups } from "../lib/nn/recompute.ts";
import { FIXTURES } from "./parallel_helpers.ts";

Deno.test("recomputeGroups: uniform groups of N layers, block the first N", () => {
  assert.deepEqual(recomputeGroups(4, { granularity: "full", method: "uniform", numLayers: 1 }), [
    [0],
    [1],
    [2],
    [3],
  ]);
  assert.deepEqual(
    recomputeGroups(5, { granularity: "full", method: "uniform", numLayers: 2 }),
    [[0, 1], [2, 3], [4]],
  );
  assert.deepEqual(recomputeGroups(4, { granularity: "full", method: "block", numLayers: 2 }), [
    [0],
    [1],
  ]);
  assert.deepEqual(recomputeGroups(4, { granularity: "selective" }), []);
});

Deno.test("recomputation gives identical gradients and a lower peak (measured)", async () => {
  // In a process of its own: test files share the native allocator's counters.
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", FIXTURES + "recompute_peak.ts"],
    env: { DENOTRON_NUM_THREADS: "1" },
  }).output();
  const text = new TextDecoder().decode(r.stdout);
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  const runs = JSON.parse(text) as Record<string, { peak: number; sameGrads: boolean }>;
  const mib = (n: number) => (n / 2 ** 20).toFixed(2);
  console.log(Object.entries(runs).map(([k, v]) => `${k} ${mib(v.peak)} MiB`).join(", "));
  for (const [name, v] of Object.entries(runs)) assert.ok(v.sameGrads, `${name}: gradients differ`);
  assert.ok(runs.uniform.peak < runs.block.peak, "every layer recomputed needs less than two");
  assert.ok(runs.block.peak < runs.none.peak, "recomputing two layers saves memory");
  assert.ok(runs.selective.peak <= runs.none.peak, "selective recomputation costs no memory");
});

Deno.test("recomputation in the single-process trainer lowers the peak and keeps the losses identical", async () => {
  const run = async (recompute: string) => {
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        decodeURIComponent(new URL("./fixtures/recompute_trainer.ts", import.meta.url).pathname),
        recompute,
      ],
      env: { DENOTRON_NUM_THREADS: "1" },
    }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    return JSON.parse(new TextDecoder().decode(r.stdout)) as { losses: number[]; peak: number };
  };
  const none = await run("none");
  const full = await run("full");
  const selective = await run("selective");
  assert.deepEqual(full.losses, none.losses, "full recomputation: the same losses, bit for bit");
  assert.deepEqual(selective.losses, none.losses, "selective: the same losses");
  assert.ok(full.peak < none.peak, `full recomputation peak ${full.peak} vs ${none.peak}`);
  assert.ok(selective.peak <= none.peak, "selective recomputation costs no memory");
});
