/**
 * `tools/train.ts` under the launcher: data parallelism (plain and ZeRO-1) gives the
 * losses of the single-process run with the same global batch, a DP=2 checkpoint
 * resumes at DP=1, and bf16 with the distributed optimizer holds 6 + 12/d bytes per
 * parameter. Real processes, one thread each.
 */
import assert from "assert";
import {
  assertCloseSeq as assertClose,
  type CliRun as Metrics,
  launchTrain,
  readCliRun,
  runScript,
  tinyCorpus,
  TRAIN_SCRIPT,
  trainCliArgs,
} from "./train_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "denotron-train-dp-" });
const corpus = await tinyCorpus();
corpus.data.close?.();
const dataPath = corpus.data.prefix;

/** A tiny 2-layer run (see trainCliArgs). */
const args = (save: string, extra: string[] = []) => trainCliArgs(dataPath, save, 2, extra);

async function runSingle(save: string, extra: string[] = []): Promise<Metrics> {
  const { code, out } = await runScript(TRAIN_SCRIPT, args(save, extra));
  assert.equal(code, 0, out);
  return await readCliRun(save, out);
}

async function runLaunched(n: number, save: string, extra: string[] = []): Promise<Metrics> {
  const { code, output } = await launchTrain(n, args(save, extra));
  assert.equal(code, 0, output);
  return await readCliRun(save, output);
}

const single = await runSingle(`${tmp}/single`);

Deno.test("the default batch sizes work under the launcher: DP=2 splits the global batch and equals one process", async () => {
  // trainCliArgs without its batch flags: the defaults (micro-batch = global batch = 32)
  const base = (save: string) => {
    const a = args(save);
    for (const flag of ["--micro-batch-size", "--global-batch-size"]) a.splice(a.indexOf(flag), 2);
    return [...a, "--train-iters", "2", "--lr-decay-iters", "2", "--eval-interval", "2"];
  };
  const one = await runScript(TRAIN_SCRIPT, base(`${tmp}/default-1`));
  assert.equal(one.code, 0, one.out);
  const { code, output } = await launchTrain(2, base(`${tmp}/default-2`));
  assert.equal(code, 0, output);
  assert.match(
    output,
    /microBatchSize 16: the default global batch of 32 split over 2 data-parallel ranks/,
  );
  const want = await readCliRun(`${tmp}/default-1`, one.out);
  const got = await readCliRun(`${tmp}/default-2`, output);
  assertClose(got.losses, want.losses, "DP=2 with the default batch sizes");
});

Deno.test("an indivisible batch under the launcher is one line per rank naming the nearest sizes, exit 2", async () => {
  const { code, output } = await launchTrain(
    2,
    args(`${tmp}/indivisible`, ["--global-batch-size", "6"]),
  );
  assert.equal(code, 2, output);
  const errors = output.split("\n").filter((l) => /error:/.test(l));
  assert.ok(errors.length >= 1, output);
  for (const l of errors) {
    assert.match(
      l,
      /globalBatchSize 6 is not a positive multiple of microBatchSize 2 × data-parallel size 2; choose 4 or 8/,
    );
  }
  assert.ok(!/\n\s+at /.test(output), `a stack trace: ${output}`);
});

Deno.test("tools/train.ts at DP=2 gives the single-process losses and evaluations", async () => {
  assert.equal(single.losses.length, 4);
  const dp = await runLaunched(2, `${tmp}/dp2`);
  assertClose(dp.losses, single.losses, "DP=2 training loss");
  assertClose(dp.evals, single.evals, "DP=2 validation loss");
  // Rank 0 alone logs and prints the sample.
  assert.ok(!/\[rank 1\].*sample:/.test(dp.output), "rank 1 printed a sample");
  assert.ok(/\[rank 0\].*sample:/.test(dp.output), "rank 0 printed no sample");
});

Deno.test("with dropout, DP=2 draws the single process's masks: the same losses", async () => {
  const drop = ["--dropout", "0.1"];
  const one = await runSingle(`${tmp}/dropout-single`, drop);
  const dp = await runLaunched(2, `${tmp}/dropout-dp2`, drop);
  assertClose(dp.losses, one.losses, "DP=2 training loss with dropout");
  assertClose(dp.evals, one.evals, "DP=2 validation loss with dropout");
});

Deno.test("tools/train.ts with useDistributedOptimizer at DP=2 equals the single process and resumes at DP=1 and DP=4", async () => {
  const save = `${tmp}/zero2`;
  const zero = await runLaunched(2, save, ["--use-distributed-optimizer"]);
  assertClose(zero.losses, single.losses, "ZeRO-1 DP=2 training loss");
  const names = [...Deno.readDirSync(`${save}/iter_0000002`)].map((e) => e.name).sort();
  // every layout saves the single-process model's full tensors (the shards put together)
  assert.deepEqual(names, ["model.safetensors", "optimizer.safetensors", "state.json"]);
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

Deno.test("SIGTERM under the launcher: every rank stops after the same step, saves, and the resumed run equals the uninterrupted one bit for bit", async () => {
  const long = ["--train-iters", "300", "--lr-decay-iters", "300", "--eval-interval", "1000"];
  const whole = await runLaunched(2, `${tmp}/term-whole`, [...long, "--save-interval", "1000"]);
  const save = `${tmp}/term`;
  const launcher = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      decodeURIComponent(new URL("../tools/launch.ts", import.meta.url).pathname),
      "--nproc-per-node",
      "2",
      TRAIN_SCRIPT,
      ...args(save, [...long, "--save-interval", "1000"]),
    ],
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const decoder = new TextDecoder();
  const stderr = new Response(launcher.stderr).text();
  for await (const chunk of launcher.stdout) {
    const before = out.length;
    out += decoder.decode(chunk, { stream: true });
    // a few steps in: the signal the scheduler would send
    if (/step 5\/300/.test(out) && !/step 5\/300/.test(out.slice(0, before))) {
      launcher.kill("SIGTERM");
    }
  }
  await launcher.status;
  await stderr;
  const stopped = /checkpoint: .*iter_(\d+)/.exec(out);
  assert.ok(stopped, `no checkpoint after SIGTERM:\n${out}`);
  const at = Number(stopped[1]);
  assert.ok(at >= 5 && at < 300, `stopped at ${at}`);
  assert.match(out, /stopped by signal/);
  const resumed = await runLaunched(2, save, [...long, "--save-interval", "1000", "--load", save]);
  assert.deepEqual(resumed.losses, whole.losses, "interrupted at " + at + ", then resumed");
});

Deno.test("an indivisible batch under the launcher is one error line for the job, naming the valid sizes", async () => {
  // global 12 = micro 2 × 6 is not a multiple of micro 2 × 4 ranks
  const { code, output } = await launchTrain(
    4,
    args(`${tmp}/indivisible`, ["--global-batch-size", "12"]),
  );
  assert.equal(code, 2, output);
  const said = output.split("\n").filter((l) => /error: globalBatchSize 12/.test(l));
  assert.equal(said.length, 1, output);
  assert.match(
    said[0],
    /^launch: rank \d exited with code 2: error: globalBatchSize 12 is not a positive multiple of microBatchSize 2 × data-parallel size 4; choose 8 or 16 ?(\(the same on ranks [\d, ]+\))?$/,
  );
  assert.ok(!/\n\s+at /.test(output), output);
});
