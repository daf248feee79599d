/**
 * BERT pretraining through the one loop (`tools/train.ts --model bert-tiny` on the built-in
 * corpus as sentences, WordPiece bert-base-uncased): the masked-LM and sentence-order
 * losses logged beside their sum; DP2 and DP2 with ZeRO-1 equal one process; bf16 follows
 * fp32 (and so does fp16); a resumed run continues bit for bit; and bad inputs (a vocabulary without
 * [MASK], a sequence longer than the positions, a checkpoint of another family, the
 * sequence-length curriculum, generating from an encoder) are one line before the first
 * step; TP2, PP2 and TP2×PP2 with SP equal one process (losses and accuracies), their
 * checkpoints load under another layout, and bf16 at TP2 and fp16 at PP2 follow fp32.
 */
import assert from "assert";
import {
  assertCloseSeq as assertClose,
  runScript as run,
  tinyCorpus,
  TRAIN_SCRIPT as TRAIN,
  trainCliArgs,
  trainRun,
} from "./train_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "denotron-train-bert-" });

/** bert-tiny on the built-in corpus: 4 iterations of 4 rows of 64 tokens. */
const bertArgs = (save: string, extra: string[] = []) => [
  "--model",
  "bert-tiny",
  "--seq-length",
  "64",
  "--micro-batch-size",
  "2",
  "--global-batch-size",
  "4",
  "--train-iters",
  "4",
  "--lr",
  "1e-3",
  "--lr-warmup-iters",
  "1",
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
];

const single = (save: string, extra: string[] = []) => trainRun(1, bertArgs(save, extra), save);

async function records(save: string, kind: string): Promise<Record<string, unknown>[]> {
  return (await Deno.readTextFile(`${save}/metrics.jsonl`)).trim().split("\n")
    .map((l) => JSON.parse(l)).filter((r) => r.kind === kind);
}

const base = await single(`${tmp}/single`);

Deno.test("bert-tiny pretrains on the built-in corpus: masked-LM and sentence-order losses logged beside their sum", async () => {
  assert.equal(base.losses.length, 4);
  assert.match(base.output, /tokenizer: bert-base-uncased/);
  assert.match(base.output, /BERT samples: sop pairs, 15% masked/);
  assert.match(base.output, /step 1\/4 \| loss [\d.]+ \| mlm [\d.]+ \| sop [\d.]+ \|/);
  assert.match(base.output, /eval at step 4: .*\| mlm_acc [\d.]+ \| sop_acc [\d.]+/);
  for (const r of await records(`${tmp}/single`, "train")) {
    const p = r.lossParts as Record<string, number>;
    assert.ok(Math.abs(p.mlm + p.sop - (r.loss as number)) < 1e-5, JSON.stringify(r));
    // at initialisation the masked-LM loss is about ln(30522) and the binary one ln(2)
    assert.ok(p.mlm > 8 && p.mlm < 12 && p.sop > 0.3 && p.sop < 1.5, JSON.stringify(p));
  }
  const evals = await records(`${tmp}/single`, "eval");
  assert.equal(evals.length, 2);
  for (const e of evals) {
    const p = e.parts as Record<string, number>;
    assert.ok(p.mlm_acc >= 0 && p.mlm_acc <= 1 && p.sop_acc >= 0 && p.sop_acc <= 1);
  }
});

Deno.test("BERT pretraining at DP2 and at DP2 with ZeRO-1 equals one process", async () => {
  for (const extra of [[], ["--use-distributed-optimizer"]]) {
    const save = `${tmp}/dp2${extra.length ? "-zero" : ""}`;
    const dp = await trainRun(2, bertArgs(save, extra), save);
    assertClose(dp.losses, base.losses, `DP2 ${extra.join(" ")} training loss`);
    assertClose(dp.evals, base.evals, `DP2 ${extra.join(" ")} validation loss`);
  }
});

Deno.test("a resumed BERT run continues bit for bit; bf16 and fp16 follow fp32", async () => {
  const resumed = await single(`${tmp}/resumed`, ["--load", `${tmp}/single/iter_0000002`]);
  assert.deepEqual(resumed.losses, base.losses.slice(2));
  assert.deepEqual(resumed.evals, base.evals.slice(1));
  const bf16 = await single(`${tmp}/bf16`, ["--bf16"]);
  assertClose(bf16.losses, base.losses, "bf16 BERT loss", 2e-2);
  const fp16 = await single(`${tmp}/fp16`, ["--fp16"]);
  assertClose(fp16.losses, base.losses, "fp16 BERT loss", 2e-2);
});

Deno.test("bad BERT inputs are one line before the first step", async () => {
  const vocab = `${tmp}/vocab.txt`;
  await Deno.writeTextFile(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n");
  const corpus = await tinyCorpus();
  corpus.data.close?.();
  const gpt = `${tmp}/gpt`;
  const pre = await run(TRAIN, trainCliArgs(corpus.data.prefix, gpt, 1, ["--train-iters", "2"]));
  assert.equal(pre.code, 0, pre.out);
  const cases: [string[], RegExp][] = [
    [["--tokenizer", vocab], /vocab\.txt: the vocabulary has no \[MASK\] token/],
    [["--max-position-embeddings", "32"], /seqLength 64 exceeds maxPositionEmbeddings 32/],
    [
      ["--load", `${gpt}/iter_0000002`],
      /the checkpoint holds a decoder \(GPT\), and this run trains an encoder \(BERT\)/,
    ],
    [
      ["--tokenizer", "gpt2"],
      /an encoder masks WordPiece tokens; --tokenizer gpt2 is not WordPiece/,
    ],
    [
      ["--curriculum-learning", "--min-difficulty", "16", "--max-difficulty", "64"],
      /the sequence-length curriculum cuts decoder rows/,
    ],
  ];
  for (const [extra, re] of cases) {
    const { code, out } = await run(TRAIN, bertArgs(`${tmp}/bad`, extra));
    assert.notEqual(code, 0, out);
    assert.match(out, re);
    assert.equal(out.split("\n").filter((l) => l.startsWith("error")).length, 1, out);
    assert.ok(!/step 1\//.test(out), out);
  }
  // a BERT checkpoint as the start of a run with another tokenizer names the one it needs
  const start = await run(
    TRAIN,
    trainCliArgs(corpus.data.prefix, `${tmp}/bad-start`, 1, [
      "--pretrained-checkpoint",
      `${tmp}/single`,
    ]),
  );
  assert.equal(start.code, 2, start.out);
  assert.match(start.out, /vocabulary has 30522 tokens, .*; use --tokenizer bert-base-uncased/);
  // an encoder writes no text: generate (and serve, evaluate) refuse it up front
  const generate = decodeURIComponent(new URL("../tools/generate.ts", import.meta.url).pathname);
  const gen = await run(generate, ["--checkpoint", `${tmp}/single`, "--prompt", "The"]);
  assert.equal(gen.code, 2, gen.out);
  assert.match(gen.out, /^error: .* holds an encoder \(BERT\): .* cannot generate/m);
});

/** The eval records' parts (losses and accuracies), in order. */
async function evalParts(save: string): Promise<Record<string, number>[]> {
  return (await records(save, "eval")).map((e) => e.parts as Record<string, number>);
}

Deno.test("BERT pretraining at TP2, PP2, TP2×PP2 with SP and TP2×DP2 with ZeRO-1 equals one process, accuracies too; a TP2×PP2 checkpoint resumes in one process", async () => {
  const tp = ["--tensor-model-parallel-size", "2"], pp = ["--pipeline-model-parallel-size", "2"];
  const layouts: [number, string[]][] = [
    [2, tp],
    [2, pp],
    [4, [...tp, ...pp, "--sequence-parallel", "true"]],
    [4, [...tp, "--use-distributed-optimizer"]],
  ];
  const want = await evalParts(`${tmp}/single`);
  for (const [n, extra] of layouts) {
    const save = `${tmp}/mp-${n}-${extra.length}`;
    const mp = await trainRun(n, bertArgs(save, extra), save);
    const what = extra.join(" ");
    assertClose(mp.losses, base.losses, `${what} training loss`);
    assertClose(mp.evals, base.evals, `${what} validation loss`);
    const got = await evalParts(save);
    got.forEach((p, i) => {
      for (const name of ["mlm", "sop"]) assertClose([p[name]], [want[i][name]], `${what} ${name}`);
      // the same argmax at every masked position and row (the ranks' sum of the
      // fraction travels in fp32)
      for (const name of ["mlm_acc", "sop_acc"]) {
        assert.ok(Math.abs(p[name] - want[i][name]) < 1e-7, `${what} ${name}`);
      }
    });
  }
  // a checkpoint written by four ranks loads in one process and continues as the run did
  const resumed = await single(`${tmp}/from-mp`, ["--load", `${tmp}/mp-4-6/iter_0000002`]);
  assertClose(resumed.losses, base.losses.slice(2), "TP2×PP2 checkpoint resumed in one process");
  // and a one-process checkpoint at TP2
  const save = `${tmp}/to-tp2`;
  const at = await trainRun(
    2,
    bertArgs(save, [...tp, "--load", `${tmp}/single/iter_0000002`]),
    save,
  );
  assertClose(at.losses, base.losses.slice(2), "one-process checkpoint resumed at TP2");
});

Deno.test("BERT in bf16 at TP2 and in fp16 at PP2 follows fp32", async () => {
  const runs: [string, string[]][] = [
    ["bf16", ["--tensor-model-parallel-size", "2", "--bf16"]],
    ["fp16", ["--pipeline-model-parallel-size", "2", "--fp16"]],
  ];
  for (const [what, extra] of runs) {
    const save = `${tmp}/mp-${what}`;
    const got = await trainRun(2, bertArgs(save, extra), save);
    assertClose(got.losses, base.losses, `${what} ${extra[0]} BERT loss`, 2e-2);
  }
});
