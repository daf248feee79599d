/**
 * A Llama-style model (`--model llama-tiny`, shrunk) through tools/train.ts: DP=2 with
 * ZeRO-1 equals one process and resumes in one process; bf16 trains close to fp32;
 * tensor and pipeline parallelism refuse the Llama features with a sentence (not yet
 * supported). Real processes, one thread each.
 */
import assert from "assert";
import {
  assertCloseSeq as assertClose,
  launchTrain,
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

// llama-tiny's architecture (RMSNorm, RoPE, SwiGLU, 2 KV heads for 4 query heads, no
// biases, untied head) at the test's width
const LLAMA = [
  "--model",
  "llama-tiny",
  "--n-head",
  "4",
  "--num-query-groups",
  "2",
  "--ffn-hidden-size",
  "48",
]; // deno-fmt-ignore
const args = (save: string, extra: string[] = []) =>
  [...trainCliArgs(dataPath, save, 2, extra), ...LLAMA];

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

Deno.test("a Llama-style model in bf16 follows the fp32 losses", async () => {
  const bf16 = await single(`${tmp}/bf16`, ["--bf16"]);
  assertClose(bf16.losses, one.losses, "bf16 training loss", 2e-2);
});

Deno.test("tensor parallelism refuses the Llama features with one line", async () => {
  const { code, output } = await launchTrain(
    2,
    args(`${tmp}/tp`, ["--tensor-model-parallel-size", "2"]),
  );
  assert.notEqual(code, 0);
  assert.match(
    output,
    /error: tensorModelParallelSize 2 × pipelineModelParallelSize 1: the Llama-family/,
  );
});
