/**
 * Evaluation tasks at each evaluation of a training run (--eval-lambada, --eval-hellaswag,
 * --eval-rouge):
 * the metrics in metrics.jsonl equal the harness run on the checkpoint saved at that
 * iteration; a bad task file is one line before training starts.
 */
import assert from "assert";
import { fromCheckpoint } from "../lib/infer/sources.ts";
import { gptEvalModel } from "../lib/eval/scoring.ts";
import { evaluateTask, greedyFirstLine } from "../lib/eval/tasks.ts";
import { runScript, tinyCorpus, TRAIN_SCRIPT, trainCliArgs } from "./train_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "denotron-train-eval-" });
const corpus = await tinyCorpus();
corpus.data.close?.();
const lambada = `${tmp}/lambada.jsonl`;
await Deno.writeTextFile(
  lambada,
  [
    "The state of the union is strong",
    "Congress shall make no law respecting an establishment",
    "We the people, in order to form a more perfect union",
  ].map((text) => JSON.stringify({ text })).join("\n") + "\n",
);
const hellaswag = `${tmp}/hellaswag.jsonl`;
await Deno.writeTextFile(
  hellaswag,
  JSON.stringify({ ctx: "The revenue of the year", endings: [" exceeded", " zebra"], label: 0 }) +
    "\n",
);

const rougeFile = `${tmp}/rouge.jsonl`;
await Deno.writeTextFile(
  rougeFile,
  [["The state of the", "union is strong"], ["We the people", "of the United States"]]
    .map(([prompt, reference]) => JSON.stringify({ prompt, reference })).join("\n") + "\n",
);

Deno.test("--eval-lambada, --eval-hellaswag and --eval-rouge: each evaluation logs the harness's metrics for that iteration's weights", async () => {
  const save = `${tmp}/run`;
  const r = await runScript(
    TRAIN_SCRIPT,
    trainCliArgs(corpus.data.prefix, save, 1, [
      "--eval-lambada",
      lambada,
      "--eval-hellaswag",
      hellaswag,
      "--eval-rouge",
      rougeFile,
      "--eval-max-new-tokens",
      "6",
    ]),
  );
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /rouge\/rouge1_f1 [\d.]+/);
  assert.match(r.out, /eval at step 2: .*\| lambada\/acc [\d.]+ .*\| hellaswag\/acc_norm [\d.]+/);
  const evals = (await Deno.readTextFile(`${save}/metrics.jsonl`)).trim().split("\n")
    .map((l) => JSON.parse(l)).filter((rec) => rec.kind === "eval");
  assert.deepEqual(evals.map((e) => e.iteration), [2, 4]);
  for (const e of evals) {
    const src = await fromCheckpoint(`${save}/iter_${String(e.iteration).padStart(7, "0")}`);
    try {
      src.model.eval();
      const model = gptEvalModel(src.model);
      const want: Record<string, number> = {};
      for (
        const task of [{ kind: "lambada", path: lambada }, {
          kind: "hellaswag",
          path: hellaswag,
        }] as const
      ) {
        const got = await evaluateTask(model, src.tokenizer, { ...task, limit: 100 });
        for (const [k, v] of Object.entries(got.metrics)) want[`${task.kind}/${k}`] = v;
      }
      const generate = greedyFirstLine(src.model, src.tokenizer, 6);
      const rouge = await evaluateTask(model, src.tokenizer, {
        kind: "rouge",
        path: rougeFile,
        limit: 100,
        generate,
      });
      for (const [k, v] of Object.entries(rouge.metrics)) want[`rouge/${k}`] = v;
      assert.deepEqual(e.tasks, want, `iteration ${e.iteration}`);
    } finally {
      src.model.dispose();
    }
  }
});

Deno.test("a bad evaluation task file is one error line before the first step", async () => {
  const bad = `${tmp}/bad.jsonl`;
  await Deno.writeTextFile(bad, '{"txt": "no text field"}\n');
  const r = await runScript(
    TRAIN_SCRIPT,
    trainCliArgs(corpus.data.prefix, `${tmp}/bad`, 1, ["--eval-lambada", bad]),
  );
  assert.equal(r.code, 2, r.out);
  assert.match(r.out, /error: .*bad\.jsonl:1: field "text" is missing/);
  assert.ok(!/iter\s+1\b|step 1/.test(r.out), r.out);
});
