/**
 * `tools/train.ts --init-from-hf DIR`: a run that starts from Hugging Face GPT-2 weights
 * (fine-tuning). The shape comes from the file, the losses are those of a run that starts
 * from the same weights, the same command restarts the job from its checkpoint, and
 * mismatches are refused with a sentence. Also `--make-vocab-size-divisible-by` from the
 * command line to `deno task generate`.
 */
import assert from "assert";
import { saveHfGpt2 } from "../lib/io/hf_gpt2.ts";
import { GPT } from "../lib/nn/gpt.ts";
import { DEFAULT_CONFIG } from "../lib/train/config.ts";
import {
  assertCloseSeq,
  launchTrain,
  readCliRun,
  runScript,
  tinyCorpus,
  TRAIN_SCRIPT,
  trainCliArgs,
} from "./train_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "denotron-train-hf-" });
const corpus = await tinyCorpus();
corpus.data.close?.();
const dataPath = corpus.data.prefix;

/**
 * An HF directory holding the weights a fresh 2-layer run of trainCliArgs starts from
 * (same seed), but with 32 positions: the first 16 rows of wpe are the 16-row table's
 * (each element is drawn from its own counter), so the losses must equal that run's.
 */
async function hfDir(): Promise<string> {
  const dir = `${tmp}/hf`;
  using model = new GPT(
    { vocabSize: 257, blockSize: 32, nLayer: 2, nHead: 2, nEmbd: 32, dropout: 0 },
    { seed: DEFAULT_CONFIG.training.seed },
  );
  await saveHfGpt2(model, dir);
  return dir;
}

Deno.test("--init-from-hf trains from the file's weights and shape, and the same command resumes", async () => {
  const hf = await hfDir();
  const scratch = await runScript(TRAIN_SCRIPT, trainCliArgs(dataPath, `${tmp}/scratch`, 2));
  assert.equal(scratch.code, 0, scratch.out);
  const want = await readCliRun(`${tmp}/scratch`, scratch.out);

  // --n-layer 1 on the command line: the file's 2 layers win
  const save = `${tmp}/init`;
  const args = trainCliArgs(dataPath, save, 1, ["--init-from-hf", hf, "--load", save]);
  const first = await runScript(TRAIN_SCRIPT, args);
  assert.equal(first.code, 0, first.out);
  assert.match(first.out, /weights: .*\/hf \(Hugging Face GPT-2\)/);
  assert.ok(!/resumed from/.test(first.out), "nothing to resume yet");
  const got = await readCliRun(save, first.out);
  assertCloseSeq(got.losses, want.losses, "training loss from the HF weights");
  const state = JSON.parse(await Deno.readTextFile(`${save}/iter_0000004/state.json`));
  assert.equal(state.config.model.nLayer, 2);
  assert.equal(state.config.model.maxPositionEmbeddings, 32);

  // the same command again: resumes from the checkpoint (nothing left to train)
  const again = await runScript(TRAIN_SCRIPT, args);
  assert.equal(again.code, 0, again.out);
  assert.match(again.out, /resumed from .* at iteration 4/);
});

Deno.test("--init-from-hf under TP2×PP2 gives the single-process losses", async () => {
  const hf = await hfDir();
  const one = `${tmp}/hf-single`;
  const single = await runScript(
    TRAIN_SCRIPT,
    trainCliArgs(dataPath, one, 2, ["--init-from-hf", hf]),
  );
  assert.equal(single.code, 0, single.out);
  const want = await readCliRun(one, single.out);
  const save = `${tmp}/hf-tp2pp2`;
  const mp = await launchTrain(
    4,
    trainCliArgs(dataPath, save, 2, [
      "--init-from-hf",
      hf,
      "--tensor-model-parallel-size",
      "2",
      "--pipeline-model-parallel-size",
      "2",
    ]),
  );
  assert.equal(mp.code, 0, mp.output);
  const got = await readCliRun(save, mp.output);
  assertCloseSeq(got.losses, want.losses, "TP2×PP2 training loss from the HF weights");
  assertCloseSeq(got.evals, want.evals, "TP2×PP2 validation loss from the HF weights");
});

Deno.test("--init-from-hf refuses a vocabulary other than the tokenizer's, samples longer than its positions, and a missing directory", async () => {
  const hf = await hfDir();
  const gpt2Vocab = `${tmp}/hf-gpt2-vocab`;
  {
    using model = new GPT({ vocabSize: 300, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16 });
    await saveHfGpt2(model, gpt2Vocab);
  }
  const vocab = await runScript(
    TRAIN_SCRIPT,
    trainCliArgs(dataPath, `${tmp}/bad1`, 1, ["--init-from-hf", gpt2Vocab]),
  );
  assert.notEqual(vocab.code, 0);
  assert.match(
    vocab.out,
    /initFromHf .*hf-gpt2-vocab: the model's vocabulary has 300 tokens, the tokenizer "byte" 257/,
  );
  const long = await runScript(
    TRAIN_SCRIPT,
    trainCliArgs(dataPath, `${tmp}/bad2`, 1, ["--init-from-hf", hf, "--seq-length", "64"]),
  );
  assert.notEqual(long.code, 0);
  assert.match(long.out, /seqLength 64 exceeds the model's 32 positions/);
  const missing = await runScript(
    TRAIN_SCRIPT,
    trainCliArgs(dataPath, `${tmp}/bad3`, 1, ["--init-from-hf", `${tmp}/no-such-dir`]),
  );
  assert.equal(missing.code, 2, missing.out);
  assert.match(missing.out, /^error: initFromHf: .*no-such-dir\/config\.json: cannot read/m);
});

Deno.test("--make-vocab-size-divisible-by pads the vocabulary: the unpadded run's losses, and the checkpoint generates", async () => {
  const plain = await runScript(TRAIN_SCRIPT, trainCliArgs(dataPath, `${tmp}/vocab-plain`, 2));
  assert.equal(plain.code, 0, plain.out);
  const save = `${tmp}/vocab-padded`;
  const padded = await runScript(
    TRAIN_SCRIPT,
    trainCliArgs(dataPath, save, 2, ["--make-vocab-size-divisible-by", "128"]),
  );
  assert.equal(padded.code, 0, padded.out);
  assert.match(padded.out, /vocab=257 \(padded 384\)/);
  const want = await readCliRun(`${tmp}/vocab-plain`, plain.out);
  const got = await readCliRun(save, padded.out);
  assertCloseSeq(got.losses, want.losses, "padded-vocabulary training loss");
  const gen = await runScript(
    decodeURIComponent(new URL("../tools/generate.ts", import.meta.url).pathname),
    [
      "--checkpoint",
      save,
      "--max-new-tokens",
      "4",
      "--prompt",
      "The ",
    ],
  );
  assert.equal(gen.code, 0, gen.out);
});
