/**
 * A Llama-style model (`--model llama-tiny`, shrunk) through tools/train.ts: DP=2 with
 * ZeRO-1 equals one process and resumes in one process; bf16 and fp16 train close to
 * fp32; a sequence-length curriculum at PP2 equals one process;
 * TP2×PP2 with sequence parallelism equals one process and resumes at TP2; tensor
 * parallelism beyond the key/value groups is refused with a sentence. Real processes,
 * one thread each.
 */
import assert from "assert";
import {
  assertCloseSeq as assertClose,
  launchTrain,
  LENGTH_CURRICULUM,
  LLAMA_TINY_ARGS,
  readCliRun,
  runScript,
  tinyCorpus,
  TRAIN_SCRIPT,
  trainCliArgs,
} from "./train_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "denotron-train-llama-" });
const corpus = await tinyCorpus();
const dataPath = corpus.data.prefix;
corpus.data.close?.();

const args = (
  save: string,
  extra: string[] = [],
) => [...trainCliArgs(dataPath, save, 2, extra), ...LLAMA_TINY_ARGS];

async function single(save: string, extra: string[] = []) {
  const { code, out } = await runScript(TRAIN_SCRIPT, args(save, extra));
  assert.equal(code, 0, out);
  return await readCliRun(save, out);
}

const one = await single(`${tmp}/single`);

Deno.test("a Llama-style model under DP=2 with ZeRO-1 equals one process, and its checkpoint resumes in one", async () => {
  assert.match(one.output, /rmsnorm rope swiglu kv heads=2 no biases untied head/);
  const { code, output } = await launchTrain(
    2,
    args(`${tmp}/zero`, ["--use-distributed-optimizer"]),
  );
  assert.equal(code, 0, output);
  const zero = await readCliRun(`${tmp}/zero`, output);
  assertClose(zero.losses, one.losses, "ZeRO-1 DP=2 training loss");
  assertClose(zero.evals, one.evals, "ZeRO-1 DP=2 validation loss");
  const resumed = await single(`${tmp}/resumed`, ["--load", `${tmp}/zero/iter_0000002`]);
  assertClose(resumed.losses, one.losses.slice(2), "resumed in one process");
});

Deno.test("DENOTRON_COMM=staged: DP=2 with ZeRO-1 through host copies equals one process", async () => {
  const { code, output } = await launchTrain(
    2,
    args(`${tmp}/zero-staged`, ["--use-distributed-optimizer"]),
    { DENOTRON_COMM: "staged" },
  );
  assert.equal(code, 0, output);
  assert.match(output, /communication: staged backend, 2 ranks/);
  const zero = await readCliRun(`${tmp}/zero-staged`, output);
  assertClose(zero.losses, one.losses, "staged ZeRO-1 DP=2 training loss");
  assertClose(zero.evals, one.evals, "staged ZeRO-1 DP=2 validation loss");
});

Deno.test("a Llama-style model in bf16 follows the fp32 losses", async () => {
  const bf16 = await single(`${tmp}/bf16`, ["--bf16"]);
  assertClose(bf16.losses, one.losses, "bf16 training loss", 2e-2);
});

Deno.test("a Llama-style model in fp16 (dynamic loss scaling) follows the fp32 losses", async () => {
  // a scale that never overflows here, so no step is skipped and the runs stay comparable
  const fp16 = await single(`${tmp}/fp16`, ["--fp16", "--initial-loss-scale", "1024"]);
  assertClose(fp16.losses, one.losses, "fp16 training loss", 2e-2);
});

Deno.test("a Llama-style model under a sequence-length curriculum at PP2 equals one process", async () => {
  const curriculum = LENGTH_CURRICULUM;
  const alone = await single(`${tmp}/curriculum`, curriculum);
  const { code, output } = await launchTrain(
    2,
    args(`${tmp}/curriculum-pp2`, [...curriculum, "--pipeline-model-parallel-size", "2"]),
  );
  assert.equal(code, 0, output);
  const pp = await readCliRun(`${tmp}/curriculum-pp2`, output);
  assertClose(pp.losses, alone.losses, "PP2 curriculum training loss");
  assertClose(pp.evals, alone.evals, "PP2 curriculum validation loss");
});

Deno.test("a Llama-style model at TP2×PP2 with sequence parallelism equals one process; its checkpoint resumes at TP2", async () => {
  const tp2pp2 = [
    "--tensor-model-parallel-size",
    "2",
    "--pipeline-model-parallel-size",
    "2",
    "--sequence-parallel",
    "true",
  ];
  const { code, output } = await launchTrain(4, args(`${tmp}/tp2pp2`, tp2pp2));
  assert.equal(code, 0, output);
  const mp = await readCliRun(`${tmp}/tp2pp2`, output);
  assertClose(mp.losses, one.losses, "TP2×PP2 SP training loss");
  assertClose(mp.evals, one.evals, "TP2×PP2 SP validation loss");
  const at = await launchTrain(
    2,
    args(`${tmp}/tp2`, [
      "--tensor-model-parallel-size",
      "2",
      "--load",
      `${tmp}/tp2pp2/iter_0000002`,
    ]),
  );
  assert.equal(at.code, 0, at.output);
  const resumed = await readCliRun(`${tmp}/tp2`, at.output);
  assertClose(resumed.losses, one.losses.slice(2), "TP2×PP2 checkpoint resumed at TP2");
});

Deno.test("tensor parallelism beyond the key/value groups is refused with one line", async () => {
  const { code, output } = await launchTrain(
    4,
    args(`${tmp}/tp4`, ["--tensor-model-parallel-size", "4"]),
  );
  assert.notEqual(code, 0);
  assert.match(
    output,
    /error: tensorModelParallelSize 4 is more than numQueryGroups 2: each rank needs at least one key\/value group/,
  );
});
