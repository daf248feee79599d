/**
 * `tools/train.ts` under the launcher with tensor and pipeline parallelism: TP2×PP2
 * (plain, and with sequence parallelism, interleaving and full recomputation) and
 * PP2×DP2 give the losses and evaluations of the single-process run with the same
 * global batch; their checkpoints (the trainer's format, full tensors) resume in one
 * process and a single-process checkpoint resumes at TP2×PP2; `deno task generate`
 * reads them; unsupported combinations are refused. Real processes, one thread each.
 */
import assert from "assert";
import { launch } from "../lib/parallel/launch.ts";
import {
  assertCloseSeq as assertClose,
  type CliRun as Run,
  launchTrain,
  LENGTH_CURRICULUM,
  readCliRun,
  runScript as run,
  tinyCorpus,
  TRAIN_SCRIPT as TRAIN,
  trainCliArgs,
} from "./train_helpers.ts";

const GENERATE = decodeURIComponent(new URL("../tools/generate.ts", import.meta.url).pathname);
const tmp = await Deno.makeTempDir({ prefix: "denotron-train-mp-" });
const corpus = await tinyCorpus();
corpus.data.close?.();
const dataPath = corpus.data.prefix;

/** A tiny 4-layer run (see trainCliArgs). */
const args = (save: string, extra: string[] = []) => trainCliArgs(dataPath, save, 4, extra);

const TP2PP2 = ["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"];
/** Fields of every training record a run logged. */
async function trainRecords(save: string): Promise<Record<string, number>[]> {
  return (await Deno.readTextFile(`${save}/metrics.jsonl`)).trim().split("\n")
    .map((l) => JSON.parse(l)).filter((r) => r.kind === "train");
}

async function runSingle(save: string, extra: string[] = []): Promise<Run> {
  const { code, out } = await run(TRAIN, args(save, extra));
  assert.equal(code, 0, out);
  return await readCliRun(save, out);
}

function runLaunched(n: number, save: string, extra: string[]) {
  return launchTrain(n, args(save, extra));
}

async function runParallel(n: number, save: string, extra: string[]): Promise<Run> {
  const { code, output } = await runLaunched(n, save, extra);
  assert.equal(code, 0, output);
  return await readCliRun(save, output);
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
  // the sample after training comes from the last checkpoint read back whole
  assert.match(mp.output, /\[rank 0\] sample:/);
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

Deno.test("with dropout, layer dropping and the length curriculum, PP2×DP2 draws the single process's masks, and its checkpoint continues the stream", async () => {
  const extra = [
    "--dropout",
    "0.1",
    "--progressive-layer-drop",
    "true",
    "--pld-gamma",
    "0.05",
    ...LENGTH_CURRICULUM,
  ];
  const one = await runSingle(`${tmp}/drop-single`, extra);
  const save = `${tmp}/drop-pp2dp2`;
  const mp = await runParallel(4, save, ["--pipeline-model-parallel-size", "2", ...extra]);
  assertClose(mp.losses, one.losses, "PP2×DP2 training loss with dropout");
  assertClose(mp.evals, one.evals, "PP2×DP2 validation loss with dropout");
  const resumed = await runSingle(`${tmp}/drop-at1`, [...extra, "--load", `${save}/iter_0000002`]);
  assertClose(resumed.losses, one.losses.slice(2), "PP2×DP2 checkpoint resumed in one process");
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
      (await trainRecords(save)).map((r) => [r.seqLength, r.keptLayers]);
    const want = await plans(`${dir}-single`);
    assert.deepEqual(await plans(`${dir}-tp2pp2`), want, `${name}: lengths and kept layers`);
    if (name === "layer drop") {
      assert.ok(want.some(([, kept]) => kept < 4), `no layer was dropped: ${want}`);
    } else {
      assert.deepEqual(want.map(([T]) => T), [8, 16, 24, 32], `${name}: lengths`);
    }
  }
});

Deno.test("TP2×PP2 with batch-size ramp-up and token-based LR equals one process", async () => {
  const extra = [
    "--rampup-batch-size",
    "4,2,16",
    ...LENGTH_CURRICULUM,
    "--lr-by-tokens",
    "true",
  ];
  const one = await runSingle(`${tmp}/ramp-single`, extra);
  const mp = await runParallel(4, `${tmp}/ramp-tp2pp2`, [...TP2PP2, ...extra]);
  assertClose(mp.losses, one.losses, "TP2×PP2 training loss with ramp-up and token LR");
  assertClose(mp.evals, one.evals, "its validation loss");
  const sizes = async (save: string) =>
    (await trainRecords(save)).map((r) => [r.globalBatchSize, r.lr]);
  const want = await sizes(`${tmp}/ramp-single`);
  assert.ok(want[0][0] < 8, `no ramp-up: ${JSON.stringify(want)}`);
  assert.deepEqual(await sizes(`${tmp}/ramp-tp2pp2`), want);
});

Deno.test("TP2×PP2 in bf16 follows the single-process bf16 run, and their checkpoints resume across layouts", async () => {
  const one = await runSingle(`${tmp}/bf16-single`, ["--bf16"]);
  const save = `${tmp}/bf16-tp2pp2`;
  const mp = await runParallel(4, save, [...TP2PP2, "--bf16"]);
  // bf16 rounds the partial sums of split GEMMs differently: close, not bit-identical
  assertClose(mp.losses, one.losses, "bf16 TP2×PP2 training loss", 2e-2);
  assertClose(mp.evals, one.evals, "bf16 TP2×PP2 validation loss", 2e-2);
  // the checkpoint keeps the fp32 main weights: one process continues from them
  const state = await Deno.readTextFile(`${save}/iter_0000002/state.json`);
  assert.ok(/"bf16": true/.test(state), "the config records bf16");
  const resumed = await runSingle(`${tmp}/bf16-at1`, ["--bf16", "--load", `${save}/iter_0000002`]);
  assertClose(
    resumed.losses,
    mp.losses.slice(2),
    "bf16 TP2×PP2 checkpoint resumed in one process",
    2e-2,
  );
  // and a single-process bf16 checkpoint resumes at TP2×PP2
  const back = await runParallel(4, `${tmp}/bf16-back`, [
    ...TP2PP2,
    "--bf16",
    "--load",
    `${tmp}/bf16-single/iter_0000002`,
  ]);
  assertClose(back.losses, one.losses.slice(2), "single-process bf16 checkpoint at TP2×PP2", 2e-2);
});

Deno.test("TP2×PP2 in fp16 skips the same overflowing steps as one process, and resumes its scaler", async () => {
  // 2^40 overflows fp16 gradients: the first steps are skipped while the scale backs off;
  // an overflow on any rank must skip the step everywhere.
  const fp16 = ["--fp16", "--initial-loss-scale", String(2 ** 40), "--hysteresis", "1"];
  const one = await runSingle(`${tmp}/fp16-single`, fp16);
  const save = `${tmp}/fp16-tp2pp2`;
  const mp = await runParallel(4, save, [...TP2PP2, ...fp16]);
  assert.ok(one.scales[0][1] >= 1, `no step was skipped: ${JSON.stringify(one.scales)}`);
  assert.deepEqual(mp.scales, one.scales);
  assertClose(mp.losses, one.losses, "fp16 TP2×PP2 training loss", 2e-2);
  const resumed = await runSingle(`${tmp}/fp16-at1`, [...fp16, "--load", `${save}/iter_0000002`]);
  assert.deepEqual(resumed.scales, one.scales.slice(2), "the scaler resumed from the checkpoint");
});

Deno.test("PP2×DP2 with ZeRO-1 gives the single-process losses and gradient norms", async () => {
  const mp = await runParallel(4, `${tmp}/zero-f32`, [
    "--pipeline-model-parallel-size",
    "2",
    "--use-distributed-optimizer",
  ]);
  assertClose(mp.losses, single.losses, "ZeRO-1 PP2×DP2 training loss");
  const norms = async (save: string) => (await trainRecords(save)).map((r) => r.gradNorm);
  assertClose(await norms(`${tmp}/zero-f32`), await norms(`${tmp}/single`), "gradient norm");
  assert.match(mp.output, /optimizer: .* bytes per parameter on each of 2 data-parallel ranks/);
});

Deno.test("PP2×DP2 with ZeRO-1 (bf16) follows one process, and its checkpoint resumes in one process", async () => {
  const zero = ["--use-distributed-optimizer", "--bf16"];
  const one = await runSingle(`${tmp}/zero-single`, ["--bf16"]);
  const save = `${tmp}/zero-pp2dp2`;
  const mp = await runParallel(4, save, ["--pipeline-model-parallel-size", "2", ...zero]);
  assertClose(mp.losses, one.losses, "ZeRO-1 PP2×DP2 training loss", 2e-2);
  assertClose(mp.evals, one.evals, "its validation loss", 2e-2);
  // the shards (moments and fp32 main weights) are put together into the one-process format
  const resumed = await runSingle(`${tmp}/zero-at1`, ["--bf16", "--load", `${save}/iter_0000002`]);
  assertClose(
    resumed.losses,
    mp.losses.slice(2),
    "ZeRO-1 PP2×DP2 checkpoint resumed in one process",
    2e-2,
  );
  // and a one-process checkpoint resumes under ZeRO at PP2×DP2
  const back = await runParallel(4, `${tmp}/zero-back`, [
    "--pipeline-model-parallel-size",
    "2",
    ...zero,
    "--load",
    `${tmp}/zero-single/iter_0000002`,
  ]);
  assertClose(
    back.losses,
    one.losses.slice(2),
    "one-process checkpoint under ZeRO-1 PP2×DP2",
    2e-2,
  );
});

Deno.test("a ZeRO-1 checkpoint written under PP2×DP2 resumes under TP2", async () => {
  const save = `${tmp}/zero-pp2dp2`;
  const zero = await runParallel(4, save, [
    "--pipeline-model-parallel-size",
    "2",
    "--use-distributed-optimizer",
  ]);
  assertClose(zero.losses, single.losses, "PP2×DP2 ZeRO-1 training loss");
  const resumed = await runParallel(2, `${tmp}/zero-at-tp2`, [
    "--tensor-model-parallel-size",
    "2",
    "--load",
    `${save}/iter_0000002`,
  ]);
  assertClose(resumed.losses, single.losses.slice(2), "PP2×DP2 ZeRO-1 checkpoint at TP2");
  assertClose(resumed.evals, single.evals.slice(1), "its validation loss");
});

const CURRICULUM_PP = decodeURIComponent(
  new URL("./fixtures/parallel/curriculum_pp.ts", import.meta.url).pathname,
);

/** The losses of tests/fixtures/parallel/curriculum_pp.ts on `n` ranks. */
async function curriculumLosses(n: number, pp: number, dir: string, load = false) {
  const out = `${dir}/losses-${load ? "resumed" : "whole"}.json`;
  const lines: string[] = [];
  const code = await launch({
    nprocPerNode: n,
    script: CURRICULUM_PP,
    args: ["--pp", String(pp), "--dir", dir, "--out", out, ...(load ? ["--load"] : [])],
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1" },
    output: (rank, _s, line) => lines.push(`[rank ${rank}] ${line}`),
    log: (line) => lines.push(line),
    graceSeconds: 2,
  });
  assert.equal(code, 0, lines.join("\n"));
  return JSON.parse(await Deno.readTextFile(out)) as number[];
}

Deno.test("a data-curriculum batch source under PP2 follows one process and resumes bit for bit", async () => {
  const dir = `${tmp}/curriculum-pp2`;
  const whole = await curriculumLosses(2, 2, dir);
  const resumed = await curriculumLosses(2, 2, dir, true);
  assert.deepEqual(resumed, whole.slice(3), "PP2 resumed from its step-3 checkpoint");
  const one = await curriculumLosses(1, 1, `${tmp}/curriculum-pp1`);
  assertClose(whole, one, "PP2 data curriculum vs one process");
});

Deno.test("model parallelism runs only under the launcher", async () => {
  const alone = await run(TRAIN, args(`${tmp}/alone`, TP2PP2));
  assert.equal(alone.code, 2, alone.out);
  assert.ok(/needs 4 ranks: run it under the launcher/.test(alone.out), alone.out);
});
