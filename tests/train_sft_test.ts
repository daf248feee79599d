/**
 * Supervised fine-tuning through the one loop (`tools/train.ts --sft`): packed JSONL
 * examples from a pretrained checkpoint give the single-process losses and evaluations
 * under TP2×PP2 (sequence parallel, interleaved), PP2×DP2 with ZeRO-1 and TP2 on a
 * rotary (Llama-style) model; a resumed run continues bit for bit; bf16 follows fp32;
 * bad data and flags are one line. Real processes, one thread each.
 */
import assert from "assert";
import {
  assertCloseSeq as assertClose,
  LLAMA_TINY_ARGS,
  readCliRun,
  runScript as run,
  tinyCorpus,
  TRAIN_SCRIPT as TRAIN,
  trainCliArgs,
  trainRun,
} from "./train_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "denotron-train-sft-" });
const corpus = await tinyCorpus();
corpus.data.close?.();

// Sums as prompt/response pairs and as chats: each example is 6 to 12 bytes, so rows of
// 33 tokens hold several.
const examples: string[] = [];
for (let i = 0; i < 80; i++) {
  const a = (i * 7) % 10, b = (i * 3 + 1) % 10;
  examples.push(JSON.stringify(
    i % 3 === 0
      ? {
        messages: [{ role: "user", content: `${a}+${b}` }, {
          role: "assistant",
          content: String(a + b),
        }],
      }
      : { prompt: `${a}+${b}=`, response: String(a + b) },
  ));
}
const SFT_DATA = `${tmp}/sums.jsonl`;
await Deno.writeTextFile(SFT_DATA, examples.join("\n") + "\n");

/** A tiny pretraining run on the corpus, then the checkpoint fine-tuning starts from. */
async function pretrain(save: string, extra: string[] = []): Promise<string> {
  const { code, out } = await run(
    TRAIN,
    trainCliArgs(corpus.data.prefix, save, 4, [
      "--seq-length",
      "32",
      "--train-iters",
      "2",
      ...extra,
    ]),
  );
  assert.equal(code, 0, out);
  return `${save}/iter_0000002`;
}

const PRETRAINED = await pretrain(`${tmp}/pretrain`);

/** Fine-tuning arguments (4 iterations, evaluations at 2 and 4) over the base ones. */
const sftArgs = (save: string, extra: string[] = []) =>
  trainCliArgs(SFT_DATA, save, 4, [
    "--sft",
    "--seq-length",
    "32",
    "--pretrained-checkpoint",
    PRETRAINED,
    ...extra,
  ]);

const single = (save: string, extra: string[] = []) => trainRun(1, sftArgs(save, extra), save);
const launched = (n: number, save: string, extra: string[]) =>
  trainRun(n, sftArgs(save, extra), save);

const base = await single(`${tmp}/single`);

Deno.test("SFT from a pretrained checkpoint: packed rows, starting weights, losses that fall", async () => {
  assert.equal(base.losses.length, 4);
  assert.equal(base.evals.length, 2);
  assert.match(base.output, /train: 64 examples in \d+ rows of 33 tokens, \d+ trained targets/);
  assert.match(base.output, /valid: 16 examples/);
  assert.match(
    base.output,
    /weights: .*pretrain\/iter_0000002\/model\.safetensors \(pretrained checkpoint\)/,
  );
  assert.ok(base.losses[3] < base.losses[0], `losses ${base.losses}`);
  // the starting weights matter: from scratch the first loss differs
  const scratch = await run(
    TRAIN,
    sftArgs(`${tmp}/scratch`).filter((a) => a !== PRETRAINED && a !== "--pretrained-checkpoint"),
  );
  assert.equal(scratch.code, 0, scratch.out);
  const s = await readCliRun(`${tmp}/scratch`, scratch.out);
  assert.ok(Math.abs(s.losses[0] - base.losses[0]) > 1e-3, `${s.losses[0]} vs ${base.losses[0]}`);
});

Deno.test("SFT at TP2×PP2 (sequence parallel, interleaved) equals one process", async () => {
  const mp = await launched(4, `${tmp}/tp2pp2`, [
    "--tensor-model-parallel-size",
    "2",
    "--pipeline-model-parallel-size",
    "2",
    "--sequence-parallel",
    "--virtual-pipeline-model-parallel-size",
    "2",
  ]);
  assertClose(mp.losses, base.losses, "TP2×PP2 SFT training loss");
  assertClose(mp.evals, base.evals, "TP2×PP2 SFT validation loss");
});

Deno.test("SFT at PP2×DP2 with ZeRO-1 equals one process", async () => {
  const mp = await launched(4, `${tmp}/pp2dp2`, [
    "--pipeline-model-parallel-size",
    "2",
    "--use-distributed-optimizer",
  ]);
  assertClose(mp.losses, base.losses, "PP2×DP2 ZeRO-1 SFT training loss");
  assertClose(mp.evals, base.evals, "PP2×DP2 ZeRO-1 SFT validation loss");
});

Deno.test("SFT of a rotary model at TP2 equals one process (positions restart in every example)", async () => {
  const pre = await pretrain(`${tmp}/pretrain-llama`, LLAMA_TINY_ARGS);
  const extra = [...LLAMA_TINY_ARGS, "--pretrained-checkpoint", pre];
  const one = await single(`${tmp}/llama-single`, extra);
  const tp = await launched(2, `${tmp}/llama-tp2`, [...extra, "--tensor-model-parallel-size", "2"]);
  assertClose(tp.losses, one.losses, "TP2 rotary SFT training loss");
  assertClose(tp.evals, one.evals, "TP2 rotary SFT validation loss");
});

Deno.test("a resumed SFT run continues bit for bit; bf16 follows fp32", async () => {
  const { code, out } = await run(
    TRAIN,
    sftArgs(`${tmp}/resumed`, ["--load", `${tmp}/single/iter_0000002`]),
  );
  assert.equal(code, 0, out);
  const resumed = await readCliRun(`${tmp}/resumed`, out);
  assert.deepEqual(resumed.losses, base.losses.slice(2));
  assert.deepEqual(resumed.evals, base.evals.slice(1));
  const bf16 = await single(`${tmp}/bf16`, ["--bf16"]);
  assertClose(bf16.losses, base.losses, "bf16 SFT loss", 2e-2);
});

Deno.test("bad SFT data and flags are one line before the first step", async () => {
  const bad = `${tmp}/bad.jsonl`;
  await Deno.writeTextFile(
    bad,
    '{"prompt": "a", "response": "b"}\n{"prompt": "a", "reply": "b"}\n',
  );
  const cases: [string[], RegExp][] = [
    [["--data-path", bad], /bad\.jsonl:2: expected "prompt" and "response", or "messages"/],
    [["--data-path", `${tmp}/missing.jsonl`], /missing\.jsonl: cannot read the fine-tuning data/],
    [["--data-path", SFT_DATA, SFT_DATA], /--data-path with --sft takes one JSONL file/],
    [["--pretrained-checkpoint", `${tmp}/nowhere`], /^error: pretrainedCheckpoint: /m],
    [["--init-from-hf", `${tmp}/nowhere`], /initFromHf and pretrainedCheckpoint both name/],
  ];
  for (const [extra, re] of cases) {
    const { code, out } = await run(TRAIN, sftArgs(`${tmp}/bad`, extra));
    assert.notEqual(code, 0, out);
    assert.match(out, re);
    const errors = out.split("\n").filter((l) => l.startsWith("error"));
    assert.equal(errors.length, 1, out);
    assert.ok(!/step 1\//.test(out) && !/\n\s+at /.test(out), out);
  }
});
