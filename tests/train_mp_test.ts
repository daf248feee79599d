/**
 * `tools/train.ts` under the launcher with tensor and pipeline parallelism: TP2×PP2
 * (plain, and with sequence parallelism, interleaving and full recomputation) and
 * PP2×DP2 give the losses and evaluations of the single-process run with the same
 * global batch; their checkpoints (the trainer's format, full tensors) resume in one
 * process and a single-process checkpoint resumes at TP2×PP2; `deno task generate`
 * reads them; unsupported combinations are refused. Real processes, one thread each.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { launch } from "../lib/parallel/launch.ts";
import { tinyCorpus } from "./train_helpers.ts";

const TRAIN = new URL("../tools/train.ts", import.meta.url).pathname;
const GENERATE = new URL("../tools/generate.ts", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "denotron-train-mp-" });
const corpus = await tinyCorpus();
corpus.data.close?.();
const dataPath = corpus.data.prefix;

/** A tiny run: 4 layers, 4 steps of a global batch of 8 (micro-batch 2), logged every step. */
function args(save: string, extra: string[] = []): string[] {
  return [
    "--data-path",
    dataPath,
    "--tokenizer",
    "byte",
    "--split",
    "80,20,0",
    "--n-layer",
    "4",
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

const TP2PP2 = ["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"];

interface Run {
  losses: number[];
  evals: number[];
  /** Rank output (for failures). */
  output: string;
}

async function readRun(save: string, output: string): Promise<Run> {
  const lines = (await Deno.readTextFile(`${save}/metrics.jsonl`)).trim().split("\n");
  const recs = lines.map((l) => JSON.parse(l));
  return {
    losses: recs.filter((r) => r.kind === "train").map((r) => r.loss),
    evals: recs.filter((r) => r.kind === "eval").map((r) => r.loss),
    output,
  };
}

async function run(script: string, a: string[]): Promise<{ code: number; out: string }> {
  device();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...a],
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  return { code: r.code, out };
}

async function runSingle(save: string, extra: string[] = []): Promise<Run> {
  const { code, out } = await run(TRAIN, args(save, extra));
  assert.equal(code, 0, out);
  return await readRun(save, out);
}

async function runLaunched(
  n: number,
  save: string,
  extra: string[],
): Promise<{ code: number; output: string }> {
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
  return { code, output: lines.join("\n") };
}

async function runParallel(n: number, save: string, extra: string[]): Promise<Run> {
  const { code, output } = await runLaunched(n, save, extra);
  assert.equal(code, 0, output);
  return await readRun(save, output);
}

function assertClose(got: number[], want: number[], what: string, tol = 1e-5): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, expected ${want.length}`);
  got.forEach((g, i) => {
    const e = Math.abs(g - want[i]) / Math.abs(want[i]);
    assert.ok(e < tol, `${what}: value ${i + 1} is ${g}, expected ${want[i]} (relative ${e})`);
  });
}

const single = await runSingle(`${tmp}/single`);

Deno.test("tools/train.ts at TP2×PP2 gives the single-process losses and evaluations; its checkpoint resumes in one process", async () => {
  assert.equal(single.losses.length, 4);
  assert.equal(single.evals.length, 2);
  const save = `${tmp}/tp2pp2`;
  const mp = await runParallel(4, save, TP2PP2);
  assertClose(mp.losses, single.losses, "TP2×PP2 training loss");
  assertClose(mp.evals, single.evals, "TP2×PP2 validation loss");
  assert.ok(/\[rank 0\].*split TP 2 × PP 2 × DP 1/.test(mp.output), mp.output);
  assert.ok(!/\[rank [123]\].*step 1\/4/.test(mp.output), "a rank other than 0 logged");
  const names = [...Deno.readDirSync(`${save}/iter_0000002`)].map((e) => e.name).sort();
  assert.deepEqual(names, ["model.safetensors", "optimizer.safetensors", "state.json"]);
  // Full tensors under the single-process names: plain `--load` resumes the run...
  const resumed = await runSingle(`${tmp}/tp2pp2-at1`, ["--load", `${save}/iter_0000002`]);
  assertClose(resumed.losses, single.losses.slice(2), "TP2×PP2 checkpoint resumed at TP1×PP1");
  assertClose(resumed.evals, single.evals.slice(1), "its validation loss");
  // ...and generation reads it.
  const gen = await run(GENERATE, [
    "--checkpoint",
    `${save}/iter_0000004`,
    "--max-new-tokens",
    "4",
    "--prompt",
    "The ",
  ]);
  assert.equal(gen.code, 0, gen.out);
});

Deno.test("TP2×PP2 with sequence parallelism, interleaving and full recomputation equals one process and resumes a single-process checkpoint", async () => {
  const extra = [
    ...TP2PP2,
    "--sequence-parallel",
    "true",
    "--virtual-pipeline-model-parallel-size",
    "2",
    "--recompute-granularity",
    "full",
    "--recompute-method",
    "uniform",
    "--recompute-num-layers",
    "1",
  ];
  const mp = await runParallel(4, `${tmp}/tp2pp2-sp-vp`, extra);
  assertClose(mp.losses, single.losses, "TP2×PP2 SP, VP2, recompute: training loss");
  assertClose(mp.evals, single.evals, "TP2×PP2 SP, VP2, recompute: validation loss");
  const resumed = await runParallel(4, `${tmp}/single-at-tp2pp2`, [
    ...extra,
    "--load",
    `${tmp}/single/iter_0000002`,
  ]);
  assertClose(resumed.losses, single.losses.slice(2), "single-process checkpoint at TP2×PP2");
});

Deno.test("PP2×DP2 and TP2×DP2 give the single-process losses", async () => {
  const pp = await runParallel(4, `${tmp}/pp2dp2`, ["--pipeline-model-parallel-size", "2"]);
  assertClose(pp.losses, single.losses, "PP2×DP2 training loss");
  assertClose(pp.evals, single.evals, "PP2×DP2 validation loss");
  const tp = await runParallel(4, `${tmp}/tp2dp2`, [
    "--tensor-model-parallel-size",
    "2",
    "--load",
    `${tmp}/pp2dp2/iter_0000002`,
  ]);
  assertClose(tp.losses, single.losses.slice(2), "PP2×DP2 checkpoint resumed at TP2×DP2");
});

Deno.test("TP2×PP2 with progressive layer dropping and the sequence-length curriculum equals one process", async () => {
  const settings = {
    "layer drop": ["--progressive-layer-drop", "true", "--pld-gamma", "0.05"],
    "curriculum": [
      "--curriculum-learning",
      "true",
      "--min-difficulty",
      "8",
      "--max-difficulty",
      "32",
      "--total-curriculum-step",
      "4",
      "--seq-length",
      "32",
    ],
  };
  for (const [name, extra] of Object.entries(settings)) {
    const dir = `${tmp}/cur-${name.replace(" ", "-")}`;
    const one = await runSingle(`${dir}-single`, extra);
    const mp = await runParallel(4, `${dir}-tp2pp2`, [...TP2PP2, ...extra]);
    assertClose(mp.losses, one.losses, `${name}: TP2×PP2 training loss`);
    assertClose(mp.evals, one.evals, `${name}: TP2×PP2 validation loss`);
    const plans = async (save: string) =>
      (await Deno.readTextFile(`${save}/metrics.jsonl`)).trim().split("\n").map((l) =>
        JSON.parse(l)
      ).filter((r) => r.kind === "train").map((r) => [r.seqLength, r.keptLayers]);
    const want = await plans(`${dir}-single`);
    assert.deepEqual(await plans(`${dir}-tp2pp2`), want, `${name}: lengths and kept layers`);
    if (name === "layer drop") {
      assert.ok(want.some(([, kept]) => kept < 4), `no layer was dropped: ${want}`);
    } else {
      assert.deepEqual(want.map(([T]) => T), [8, 16, 24, 32], `${name}: lengths`);
    }
  }
});

Deno.test("model parallelism refuses bf16 and ZeRO, and runs only under the launcher", async () => {
  const bf16 = await runLaunched(2, `${tmp}/bf16`, ["--tensor-model-parallel-size", "2", "--bf16"]);
  assert.notEqual(bf16.code, 0);
  assert.ok(/tensorModelParallelSize 2 .* with bf16/.test(bf16.output), bf16.output);
  const zero = await runLaunched(2, `${tmp}/zero`, [
    "--pipeline-model-parallel-size",
    "2",
    "--use-distributed-optimizer",
  ]);
  assert.notEqual(zero.code, 0);
  assert.ok(/with useDistributedOptimizer/.test(zero.output), zero.output);
  const alone = await run(TRAIN, args(`${tmp}/alone`, TP2PP2));
  assert.equal(alone.code, 2, alone.out);
  assert.ok(/needs 4 ranks: run it under the launcher/.test(alone.out), alone.out);
});
