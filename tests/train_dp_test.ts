/**
 * `tools/train.ts` under the launcher: data parallelism (plain and ZeRO-1) gives the
 * losses of the single-process run with the same global batch, a DP=2 checkpoint
 * resumes at DP=1, and bf16 with the distributed optimizer holds 6 + 12/d bytes per
 * parameter. Real processes, one thread each.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { launch } from "../lib/parallel/launch.ts";
import { tinyCorpus } from "./train_helpers.ts";

const TRAIN = new URL("../tools/train.ts", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "denotron-train-dp-" });
const corpus = await tinyCorpus();
corpus.data.close?.();
const dataPath = corpus.data.prefix;

/** A tiny run: 4 steps of a global batch of 8 (micro-batch 2), logged every step. */
function args(save: string, extra: string[] = []): string[] {
  return [
    "--data-path",
    dataPath,
    "--tokenizer",
    "byte",
    "--split",
    "80,20,0",
    "--n-layer",
    "2",
    "--n-head",
    "2",
    "--n-embd",
    "32",
    "--seq-length",
    "16",
    "--dropout",
    "0",
    "--micro-batch-size",
    "2",
    "--global-batch-size",
    "8",
    "--train-iters",
    "4",
    "--lr",
    "1e-2",
    "--min-lr",
    "1e-3",
    "--lr-warmup-iters",
    "1",
    "--lr-decay-iters",
    "4",
    "--eval-interval",
    "2",
    "--eval-iters",
    "2",
    "--log-interval",
    "1",
    "--save-interval",
    "2",
    "--keep-last",
    "5",
    "--save",
    save,
    ...extra,
  ]; // deno-fmt-ignore
}

interface Metrics {
  losses: number[];
  /** Loss scale and skipped steps of each logged step (fp16). */
  scales: [number, number][];
  evals: number[];
  /** Rank output (for failures). */
  output: string;
}

async function readRun(save: string, output: string): Promise<Metrics> {
  const lines = (await Deno.readTextFile(`${save}/metrics.jsonl`)).trim().split("\n");
  const recs = lines.map((l) => JSON.parse(l));
  return {
    losses: recs.filter((r) => r.kind === "train").map((r) => r.loss),
    scales: recs.filter((r) => r.kind === "train").map((r) => [r.lossScale, r.skippedSteps]),
    evals: recs.filter((r) => r.kind === "eval").map((r) => r.loss),
    output,
  };
}

async function runSingle(save: string, extra: string[] = []): Promise<Metrics> {
  device();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", TRAIN, ...args(save, extra)],
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  assert.equal(r.code, 0, out);
  return await readRun(save, out);
}

async function runLaunched(n: number, save: string, extra: string[] = []): Promise<Metrics> {
  device();
  const lines: string[] = [];
  const code = await launch({
    nprocPerNode: n,
    script: TRAIN,
    args: args(save, extra),
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1" },
    output: (rank, _s, line) => lines.push(`[rank ${rank}] ${line}`),
    log: (line) => lines.push(line),
    graceSeconds: 2,
  });
  assert.equal(code, 0, lines.join("\n"));
  return await readRun(save, lines.join("\n"));
}

function assertClose(got: number[], want: number[], what: string, tol = 1e-5): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, expected ${want.length}`);
  got.forEach((g, i) => {
    const e = Math.abs(g - want[i]) / Math.abs(want[i]);
    assert.ok(e < tol, `${what}: value ${i + 1} is ${g}, expected ${want[i]} (relative ${e})`);
  });
}

const single = await runSingle(`${tmp}/single`);

Deno.test("tools/train.ts at DP=2 gives the single-process losses and evaluations", async () => {
  assert.equal(single.losses.length, 4);
  const dp = await runLaunched(2, `${tmp}/dp2`);
  assertClose(dp.losses, single.losses, "DP=2 training loss");
  assertClose(dp.evals, single.evals, "DP=2 validation loss");
  // Rank 0 alone logs and prints the sample.
  assert.ok(!/\[rank 1\].*sample:/.test(dp.output), "rank 1 printed a sample");
  assert.ok(/\[rank 0\].*sample:/.test(dp.output), "rank 0 printed no sample");
});

Deno.test("tools/train.ts with useDistributedOptimizer at DP=2 equals the single process and resumes at DP=1 and DP=4", async () => {
  const save = `${tmp}/zero2`;
  const zero = await runLaunched(2, save, ["--use-distributed-optimizer"]);
  assertClose(zero.losses, single.losses, "ZeRO-1 DP=2 training loss");
  const names = [...Deno.readDirSync(`${save}/iter_0000002`)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "model.safetensors",
    "optimizer_shard_000_of_002.safetensors",
    "optimizer_shard_001_of_002.safetensors",
    "state.json",
  ]);
  const resumed = await runSingle(`${tmp}/resumed1`, ["--load", `${save}/iter_0000002`]);
  assertClose(resumed.losses, single.losses.slice(2), "resumed at DP=1");
  const at4 = await runLaunched(4, `${tmp}/resumed4`, [
    "--load",
    `${save}/iter_0000002`,
    "--use-distributed-optimizer",
  ]);
  assertClose(at4.losses, single.losses.slice(2), "resumed at DP=4 (ZeRO-1)");
  // And the other way: a single-process checkpoint resumes under ZeRO-1 at DP=2.
  const fromOne = await runLaunched(2, `${tmp}/from-single`, [
    "--load",
    `${tmp}/single/iter_0000002`,
    "--use-distributed-optimizer",
  ]);
  assertClose(fromOne.losses, single.losses.slice(2), "single-process checkpoint at ZeRO-1 DP=2");
});

Deno.test("bf16 with the distributed optimizer holds 6 + 12/d bytes per parameter at DP=2", async () => {
  const zero = await runLaunched(2, `${tmp}/bf16`, [
    "--bf16",
    "--use-distributed-optimizer",
  ]);
  const m = zero.output.match(/\[rank 0\] optimizer: ([\d.]+) bytes per parameter/);
  assert.ok(m, `no bytes-per-parameter line in\n${zero.output}`);
  // Shards are whole elements of each bucket: within 1% of 2 + 4 + 12/2 = 12.
  assert.ok(Math.abs(Number(m[1]) - 12) < 0.12, `bytes per parameter ${m[1]}, expected 12`);
  assert.ok(zero.losses.every(Number.isFinite));
  // The shards hold the fp32 main parameters: DP=1 resumes the bf16 run.
  const resumed = await runSingle(`${tmp}/bf16-resumed`, [
    "--bf16",
    "--load",
    `${tmp}/bf16/iter_0000002`,
  ]);
  assertClose(resumed.losses, zero.losses.slice(2), "bf16 ZeRO-1 resumed at DP=1", 1e-4);
});

Deno.test("fp16 with the distributed optimizer at DP=2 skips the same overflowing steps as one process", async () => {
  // 2^40 overflows fp16 gradients: the first steps are skipped while the scale backs off.
  // Each rank sees only its shard, so only the MAX over the group keeps them in step.
  const fp16 = ["--fp16", "--initial-loss-scale", String(2 ** 40), "--hysteresis", "1"];
  const one = await runSingle(`${tmp}/fp16-single`, fp16);
  const two = await runLaunched(2, `${tmp}/fp16-zero2`, [...fp16, "--use-distributed-optimizer"]);
  assert.ok(one.scales[0][1] >= 1, `no step was skipped: ${JSON.stringify(one.scales)}`);
  assert.deepEqual(two.scales, one.scales);
  assertClose(two.losses, one.losses, "fp16 ZeRO-1 DP=2 training loss", 1e-3);
});
