/**
 * `deno task finetune`: fine-tuning defaults under the training flags, a JSONL file from a
 * pretrained checkpoint, the built-in email-subjects task end to end (prepare, fine-tune,
 * generate on the held-out split, ROUGE beside the lead baseline, checked against ROUGE
 * computed here from the written file), and its errors.
 */
import assert from "assert";
import { rouge } from "../lib/eval/rouge.ts";
import {
  launchTrain,
  readCliRun,
  runScript as run,
  tinyCorpus,
  TRAIN_SCRIPT,
  trainCliArgs,
} from "./train_helpers.ts";

const FINETUNE = decodeURIComponent(new URL("../tools/finetune.ts", import.meta.url).pathname);
const tmp = await Deno.makeTempDir({ prefix: "denotron-finetune-" });
const corpus = await tinyCorpus();
corpus.data.close?.();

/** The tiny model's shape and a short schedule (4 iterations). */
const TINY = [
  "--tokenizer",
  "byte",
  "--n-layer",
  "2",
  "--n-head",
  "2",
  "--n-embd",
  "32",
  "--dropout",
  "0",
  "--micro-batch-size",
  "2",
  "--global-batch-size",
  "4",
  "--train-iters",
  "4",
  "--lr-warmup-iters",
  "1",
  "--eval-interval",
  "4",
  "--eval-iters",
  "1",
  "--log-interval",
  "1",
];

/** The same for encoders, which read the task's WordPiece vocabulary. */
const ENCODER_TINY = TINY.slice(2);

// the base model: positions for the task's 128-token rows
const pre = await run(
  TRAIN_SCRIPT,
  trainCliArgs(corpus.data.prefix, `${tmp}/pre`, 2, [
    "--seq-length",
    "128",
    "--train-iters",
    "2",
  ]),
);
assert.equal(pre.code, 0, pre.out);
const PRETRAINED = `${tmp}/pre/iter_0000002`;

Deno.test("deno task finetune trains a JSONL file from a pretrained checkpoint with fine-tuning defaults", async () => {
  const data = `${tmp}/qa.jsonl`;
  await Deno.writeTextFile(
    data,
    Array.from({ length: 20 }, (_, i) => JSON.stringify({ prompt: `Q${i}?`, response: ` A${i}.` }))
      .join("\n"),
  );
  const save = `${tmp}/qa`;
  const r = await run(FINETUNE, [
    "--pretrained-checkpoint",
    PRETRAINED,
    "--data-path",
    data,
    "--split",
    "80,20,0",
    "--seq-length",
    "32",
    ...TINY,
    "--save",
    save,
  ]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /lr 0\.0003 \(cosine, warmup 1\)/, "the fine-tuning learning rate");
  assert.match(r.out, /train: 16 examples/);
  assert.match(r.out, /\(pretrained checkpoint\)/);
  const m = await readCliRun(save, r.out);
  assert.equal(m.losses.length, 4);
});

Deno.test("deno task finetune --task email-subjects fine-tunes, generates held-out subjects and scores them beside the lead baseline", async () => {
  const save = `${tmp}/email`;
  const r = await run(FINETUNE, [
    "--task",
    "email-subjects",
    "--pretrained-checkpoint",
    PRETRAINED,
    "--seq-length",
    "128",
    ...TINY,
    "--rouge-limit",
    "4",
    "--max-new-tokens",
    "8",
    "--save",
    save,
  ]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /held-out subject lines \(4 emails\)/);
  assert.match(r.out, /rouge \(fine-tuned model\) +4 +rouge1_f1=/);
  assert.match(r.out, /rouge \(lead baseline\) +4 +rouge1_f1=/);
  const out = JSON.parse(await Deno.readTextFile(`${save}/summaries.json`));
  assert.equal(out.examples.length, 4);
  for (const e of out.examples) assert.equal(typeof e.generated, "string");
  // the lead baseline's ROUGE, computed here from the file's own fields
  const mean = (f: (e: { reference: string; lead: string }) => number) =>
    out.examples.reduce((a: number, e: { reference: string; lead: string }) => a + f(e), 0) / 4;
  const lead = out.results[1].metrics;
  assert.ok(Math.abs(lead.rouge1_f1 - mean((e) => rouge(e.lead, e.reference).rouge1.f1)) < 1e-12);
  assert.ok(Math.abs(lead.rougeL_f1 - mean((e) => rouge(e.lead, e.reference).rougeL.f1)) < 1e-12);
  const model = out.results[0].metrics;
  const gen = mean((e) => rouge((e as { generated?: string }).generated!, e.reference).rouge1.f1);
  assert.ok(Math.abs(model.rouge1_f1 - gen) < 1e-12);
});

Deno.test("deno task finetune --task spam puts a fresh classification head on a pretrained BERT and scores the held-out mail beside the bag-of-words baseline", async () => {
  const bert = `${tmp}/bert`;
  const p = await run(TRAIN_SCRIPT, [
    "--model",
    "bert-tiny",
    "--seq-length",
    "64",
    ...ENCODER_TINY,
    "--train-iters",
    "2",
    "--save",
    bert,
  ]);
  assert.equal(p.code, 0, p.out);
  const spam = (save: string, extra: string[] = []) => [
    "--task",
    "spam",
    "--pretrained-checkpoint",
    `${bert}/iter_0000002`,
    "--seq-length",
    "64",
    ...ENCODER_TINY,
    ...extra,
    "--save",
    save,
  ];
  const save = `${tmp}/spam`;
  const r = await run(FINETUNE, spam(save));
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SpamAssassin: train \d+ messages/);
  assert.match(r.out, /token types=2 pooler, classifier of 2/);
  assert.match(r.out, /fine-tuned encoder +[\d.]+%/);
  assert.match(r.out, /bag-of-words logistic regression +9\d\.\d%/);
  const out = JSON.parse(await Deno.readTextFile(`${save}/spam.json`));
  const m = out.model;
  assert.equal(m.count, out.test);
  assert.equal(m.truePositives + m.falsePositives + m.trueNegatives + m.falseNegatives, m.count);
  assert.ok(Math.abs(m.accuracy - (m.truePositives + m.trueNegatives) / m.count) < 1e-12);
  assert.ok(out.baseline.test.accuracy > 0.95, JSON.stringify(out.baseline));
  // under TP2 the same fine-tuning, scored from its last checkpoint read back whole
  const tpSave = `${tmp}/spam-tp2`;
  const tp = await launchTrain(
    2,
    spam(tpSave, ["--tensor-model-parallel-size", "2"]),
    {},
    FINETUNE,
  );
  assert.equal(tp.code, 0, tp.output);
  assert.match(tp.output, /fine-tuned encoder +[\d.]+%/);
  const tpm = JSON.parse(await Deno.readTextFile(`${tpSave}/spam.json`)).model;
  // the same weights to rounding: at most a near-tie between the two classes may flip
  assert.ok(Math.abs(tpm.accuracy - m.accuracy) <= 2 / m.count, `${tpm.accuracy} vs ${m.accuracy}`);
  // without a pretrained encoder there is nothing to put the head on
  const bad = await run(FINETUNE, ["--task", "spam", ...ENCODER_TINY, "--save", `${tmp}/bad-spam`]);
  assert.equal(bad.code, 2, bad.out);
  assert.match(bad.out, /--task spam puts a classification head on a pretrained encoder/);
});

Deno.test("deno task finetune: an unknown task or a row too short for it is one line", async () => {
  const cases: [string[], RegExp][] = [
    [["--task", "nope"], /^error: --task nope is not a built-in task \(email-subjects, spam\)$/],
    [["--task", "email-subjects", "--seq-length", "64"], /needs --seq-length 96 or more, got 64/],
  ];
  for (const [args, re] of cases) {
    const r = await run(FINETUNE, [...args, "--save", `${tmp}/bad`]);
    assert.equal(r.code, 2, r.out);
    assert.match(r.out.trim(), re);
  }
});
