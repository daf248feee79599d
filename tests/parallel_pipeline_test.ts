/**
 * Pipeline parallelism on real processes, alone and combined with tensor, sequence and
 * data parallelism (up to 8 ranks): a 4-layer GPT trained on four micro-batches with
 * dropout on gives the single-process run's loss and every gradient after one step
 * (the tied embedding included, summed over the first and last stage) and its losses
 * over five steps. Two layouts also recompute activations. The Llama family (RMSNorm,
 * RoPE, SwiGLU, grouped-query attention, no biases, an untied or tied output layer) goes
 * through the same layouts, and tensor parallelism beyond its key/value groups is refused.
 */
import assert from "assert";
import { relError, runFixtureJson } from "./parallel_helpers.ts";

interface Run {
  losses: number[];
  grads: Record<string, number[]>;
  /** With --eval: the held-out loss, the parameters and the full logits. */
  evalLoss?: number;
  params?: Record<string, number[]>;
  logits?: number[];
}

const tmp = await Deno.makeTempDir({ prefix: "denotron-pp-" });

function run(n: number, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runFixtureJson<Run>(n, "train_mp.ts", args, tmp, env);
}

function assertSameRun(got: Run, want: Run, what: string, tol = 1e-5) {
  assert.equal(got.losses.length, want.losses.length);
  got.losses.forEach((l, i) => {
    const e = Math.abs(l - want.losses[i]) / Math.abs(want.losses[i]);
    assert.ok(e < tol, `${what}: loss of step ${i + 1} is ${l}, single process ${want.losses[i]}`);
  });
  assert.deepEqual(Object.keys(got.grads).sort(), Object.keys(want.grads).sort());
  for (const [name, w] of Object.entries(want.grads)) {
    const e = relError(got.grads[name], w);
    assert.ok(e < tol, `${what}: gradient of ${name} differs by ${e} (relative L2)`);
  }
}

const single = await run(1, ["--mode", "single"]);

/** [ranks, flags] of each layout; DP is what the ranks leave over. */
const LAYOUTS: [number, string[]][] = [
  [2, ["--pp", "2"]],
  [4, ["--pp", "4"]],
  [2, ["--pp", "2", "--vp", "2"]],
  [4, ["--tp", "2", "--pp", "2", "--sp"]],
  [4, ["--tp", "2", "--pp", "2", "--vp", "2", "--sp"]],
  [8, ["--tp", "2", "--pp", "2"]],
  [8, ["--pp", "4"]],
  [8, ["--tp", "4", "--pp", "2", "--sp"]],
  [8, ["--tp", "2", "--pp", "4"]],
  [8, ["--tp", "4", "--sp"]],
  [4, ["--tp", "2", "--sp"]],
  [4, ["--pp", "2", "--vp", "2"]],
  // activation recomputation inside a layout
  [4, ["--tp", "2", "--pp", "2", "--sp", "--recompute", "uniform"]],
  [2, ["--pp", "2", "--vp", "2", "--recompute", "selective"]],
];

/** Llama-family layouts: TP splits the 2 key/value groups, PP holds the untied head last. */
const LLAMA_LAYOUTS: [number, string[]][] = [
  [2, ["--tp", "2"]],
  [2, ["--pp", "2"]],
  [4, ["--tp", "2", "--pp", "2", "--sp"]],
  [4, ["--tp", "2", "--pp", "2", "--vp", "2", "--sp", "--recompute", "uniform"]],
  [4, ["--tp", "2", "--sp", "--recompute", "selective"]],
  [4, ["--pp", "2", "--arch", "llama-tied"]],
  [4, ["--tp", "2", "--pp", "2", "--arch", "llama-tied"]],
  [2, ["--pp", "2", "--arch", "mqa"]],
];
const llamaSingle = new Map<string, Promise<Run>>();
const singleOf = (arch: string) => {
  if (!llamaSingle.has(arch)) llamaSingle.set(arch, run(1, ["--mode", "single", "--arch", arch]));
  return llamaSingle.get(arch)!;
};

for (const [n, given] of LLAMA_LAYOUTS) {
  const flags = given.includes("--arch") ? given : [...given, "--arch", "llama"];
  const arch = flags[flags.indexOf("--arch") + 1];
  Deno.test(`Llama family (${arch}): ${flags.join(" ")} on ${n} ranks equals one process`, async () => {
    assertSameRun(await run(n, flags), await singleOf(arch), `${arch} ${flags.join(" ")}`);
  });
}

/**
 * BERT (post-LN blocks, token types, padding, the vocabulary-parallel masked-LM head with
 * its transform and bias, the pooler and sentence-order head on the last stage) and a
 * classifier on it: every gradient equals one process's.
 */
const BERT_LAYOUTS: [number, string[]][] = [
  [2, ["--tp", "2"]],
  [2, ["--pp", "2"]],
  [4, ["--tp", "2", "--sp"]],
  [4, ["--tp", "2", "--pp", "2", "--sp"]],
  [4, ["--pp", "2", "--vp", "2", "--recompute", "uniform"]],
  [2, ["--tp", "2", "--sp", "--arch", "bert-cls"]],
  [4, ["--tp", "2", "--pp", "2", "--arch", "bert-cls"]],
];
for (const [n, given] of BERT_LAYOUTS) {
  const flags = given.includes("--arch") ? given : [...given, "--arch", "bert"];
  const arch = flags[flags.indexOf("--arch") + 1];
  Deno.test(`BERT (${arch}): ${flags.join(" ")} on ${n} ranks equals one process`, async () => {
    assertSameRun(await run(n, flags), await singleOf(arch), `${arch} ${flags.join(" ")}`);
  });
}

Deno.test("BERT at TP2×PP2 with SP: the held-out loss and the masked-LM logits at every position equal one process's", async () => {
  const flags = ["--arch", "bert", "--steps", "2", "--eval"];
  const [one, mp] = await Promise.all([
    run(1, ["--mode", "single", ...flags]),
    run(4, ["--tp", "2", "--pp", "2", "--sp", ...flags]),
  ]);
  assert.ok(one.evalLoss! > 0);
  assert.ok(Math.abs(mp.evalLoss! - one.evalLoss!) / one.evalLoss! < 1e-5, `${mp.evalLoss}`);
  assert.equal(mp.logits!.length, one.logits!.length);
  assert.ok(relError(mp.logits!, one.logits!) < 1e-5, "masked-LM logits");
  for (const [name, w] of Object.entries(one.params!)) {
    // Adam turns rounding-sized gradients (the key bias's is zero but for rounding) into
    // whole steps, so parameters agree less closely than losses do
    assert.ok(relError(mp.params![name], w) < 1e-4, `parameter ${name} after two steps`);
  }
});

Deno.test("tensor parallelism beyond the key/value groups is refused with a sentence", async () => {
  await assert.rejects(
    () => run(2, ["--tp", "2", "--arch", "mqa"]),
    /tensorModelParallelSize 2 is more than numQueryGroups 1: each rank needs at least one key\/value group/,
  );
});

// The staged backend (host copies through shm, as several ranks share one GPU): the same
// gradients through the copies every collective makes.
for (
  const [n, flags] of [[2, ["--tp", "2"]], [2, ["--pp", "2"]], [4, [
    "--tp",
    "2",
    "--pp",
    "2",
    "--sp",
  ]]] as const
) {
  Deno.test(`DENOTRON_COMM=staged: ${flags.join(" ")} on ${n} ranks equals the single-process run`, async () => {
    assertSameRun(
      await run(n, [...flags], { DENOTRON_COMM: "staged" }),
      single,
      `staged ${flags.join(" ")}`,
    );
  });
}

for (const [n, flags] of LAYOUTS) {
  const size = (flag: string) => flags.includes(flag) ? Number(flags[flags.indexOf(flag) + 1]) : 1;
  const dp = n / (size("--tp") * size("--pp"));
  const name = `${flags.join(" ")} --dp ${dp} (${n} ranks)`;
  Deno.test(`layout ${name} equals the single-process run`, async () => {
    assertSameRun(await run(n, flags), single, name);
  });
}
