/**
 * Megatron's exits around the loop: `--exit-interval N` stops after an iteration that is
 * a multiple of N, `--exit-duration-in-mins M` after the first step past M minutes; both
 * save first (when there is a save directory) and the saved run resumes where it stopped.
 * In process through train(), then through tools/train.ts, alone and at DP=2.
 */
import assert from "assert";
import { ProgressLogger } from "../lib/train/logging.ts";
import { train, type TrainSummary } from "../lib/train/trainer.ts";
import {
  launchTrain,
  readCliRun,
  runScript,
  tinyConfig,
  tinyCorpus,
  tinyTrainer,
  TRAIN_SCRIPT,
  trainCliArgs,
} from "./train_helpers.ts";

const corpus = await tinyCorpus();
const quiet = () => new ProgressLogger({ totalIterations: 1, terminal: false, write: () => {} });

/** Runs train() on a tiny trainer, from `load` if given; returns the summary and losses. */
async function run(
  overrides: Record<string, unknown>,
  load?: string,
): Promise<{ summary: TrainSummary; losses: number[] }> {
  const t = tinyTrainer(corpus, tinyConfig(overrides));
  try {
    if (load) await t.load(load);
    const losses: number[] = [];
    const summary = await train(t, {
      logger: quiet(),
      hooks: { afterStep: (_, r) => void losses.push(r.loss) },
    });
    return { summary, losses };
  } finally {
    t.dispose();
  }
}

async function savedIteration(checkpoint: string): Promise<number> {
  return JSON.parse(await Deno.readTextFile(`${checkpoint}/state.json`)).iteration;
}

Deno.test("train() with exitInterval 4 stops after iteration 4 with a checkpoint there, and the resumed run ends as the uninterrupted one", async () => {
  const whole = await run({ trainIters: 6, saveInterval: 100 });
  const dir = await Deno.makeTempDir();
  const cut = await run({ trainIters: 6, saveInterval: 100, exitInterval: 4, save: dir });
  assert.equal(cut.summary.stoppedBy, "interval");
  assert.equal(cut.summary.iterations, 4);
  assert.equal(cut.summary.checkpoint, `${dir}/iter_0000004`);
  assert.equal(await savedIteration(`${dir}/iter_0000004`), 4);
  assert.deepEqual(cut.losses, whole.losses.slice(0, 4));
  // the next multiple, 8, lies past trainIters 6: the resumed run goes to the end
  const rest = await run({ trainIters: 6, saveInterval: 100, exitInterval: 4, save: dir }, dir);
  assert.equal(rest.summary.stoppedBy, "iterations");
  assert.equal(rest.summary.iterations, 6);
  assert.deepEqual(rest.losses, whole.losses.slice(4), "resumed at 4, bit for bit");
});

Deno.test("exitInterval counts the job's iterations, not the resumed process's", async () => {
  const dir = await Deno.makeTempDir();
  await run({ trainIters: 12, exitInterval: 4, save: dir });
  // resumed at 4 with exitInterval 5: stops at 5 (Megatron's iteration % N), not at 4 + 5
  const again = await run({ trainIters: 12, exitInterval: 5, save: dir }, dir);
  assert.equal(again.summary.stoppedBy, "interval");
  assert.equal(again.summary.iterations, 5);
  assert.equal(again.summary.checkpoint, `${dir}/iter_0000005`);
});

Deno.test("exitInterval without a save directory stops without a checkpoint", async () => {
  const { summary } = await run({ trainIters: 6, exitInterval: 2, save: null });
  assert.deepEqual([summary.stoppedBy, summary.iterations, summary.checkpoint], [
    "interval",
    2,
    undefined,
  ]);
});

Deno.test("train() with a tiny exitDurationInMins stops after the first step and saves it", async () => {
  const dir = await Deno.makeTempDir();
  // 1e-6 minutes is 60 µs: any step takes longer
  const { summary } = await run({ trainIters: 100, exitDurationInMins: 1e-6, save: dir });
  assert.equal(summary.stoppedBy, "time");
  assert.equal(summary.iterations, 1);
  assert.equal(summary.checkpoint, `${dir}/iter_0000001`);
  assert.equal(await savedIteration(summary.checkpoint!), 1);
});

const tmp = await Deno.makeTempDir({ prefix: "denotron-train-exit-" });
const dataPath = corpus.data.prefix;
/** trainCliArgs' 4-step run, saved only when it stops or ends. */
const cliArgs = (save: string, extra: string[] = []) =>
  trainCliArgs(dataPath, save, 2, ["--save-interval", "100", ...extra]);

Deno.test("tools/train.ts --exit-interval 3 stops at iteration 3 with a checkpoint, and --load finishes the run as the uninterrupted one", async () => {
  const whole = await runScript(TRAIN_SCRIPT, cliArgs(`${tmp}/whole`));
  assert.equal(whole.code, 0, whole.out);
  const save = `${tmp}/interval`;
  const cut = await runScript(TRAIN_SCRIPT, cliArgs(save, ["--exit-interval", "3"]));
  assert.equal(cut.code, 0, cut.out);
  assert.match(cut.out, /done: 3 iterations .*stopped by interval/);
  assert.match(cut.out, /checkpoint: .*iter_0000003/);
  assert.equal(await savedIteration(`${save}/iter_0000003`), 3);
  const rest = await runScript(
    TRAIN_SCRIPT,
    cliArgs(save, ["--exit-interval", "3", "--load", save]),
  );
  assert.equal(rest.code, 0, rest.out);
  assert.match(rest.out, /resumed from .* at iteration 3/);
  assert.match(rest.out, /done: 4 iterations .*stopped by iterations/);
  const want = await readCliRun(`${tmp}/whole`, whole.out);
  const got = await readCliRun(save, rest.out);
  assert.deepEqual(got.losses, want.losses);
});

Deno.test("--exit-duration-in-mins under the launcher: both DP ranks stop after step 1 and save it", async () => {
  const save = `${tmp}/duration-dp2`;
  const { code, output } = await launchTrain(
    2,
    cliArgs(save, ["--train-iters", "100", "--exit-duration-in-mins", "1e-6"]),
  );
  // a rank that went on to step 2 would be alone in its collectives: no clean exit
  assert.equal(code, 0, output);
  assert.match(output, /\[rank 0\] done: 1 iterations .*stopped by time/);
  assert.equal(await savedIteration(`${save}/iter_0000001`), 1);
});
