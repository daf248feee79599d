/**
 * `deno task finetune`: supervised fine-tuning through the one training loop
 * (`deno task train --sft` with fine-tuning defaults), from a pretrained checkpoint or a
 * Hugging Face model, on JSONL prompt/response or chat examples — or on a built-in task.
 *
 *   deno task finetune --pretrained-checkpoint runs/sotu --data-path chats.jsonl --save runs/sft
 *   deno task finetune --init-from-hf gpt2/ --tokenizer gpt2 --data-path chats.jsonl
 *   deno task finetune --task email-subjects --pretrained-checkpoint runs/sotu-256
 *     # email body → subject line (SpamAssassin's non-spam mail), then ROUGE on the
 *     # held-out split against the lead (first-line) baseline
 *   deno task finetune --task spam --pretrained-checkpoint runs/bert-tiny
 *     # spam or not: a classification head on a pretrained BERT, then accuracy, precision
 *     # and recall on held-out mail beside a bag-of-words logistic regression
 *   deno task launch --nproc-per-node 4 tools/finetune.ts --tensor-model-parallel-size 2 ...
 *
 * Every flag of `deno task train` works here; the defaults below come first, so a flag
 * given on the command line wins.
 *
 * @module
 */
import { closestName, parseFlags } from "../lib/cli_args.ts";
import { ConfigError } from "../lib/key_table.ts";
import { EMAIL_SUBJECT_FILES, prepareEmailSubjects } from "../lib/data/email_subjects.ts";
import { evaluateTask, formatTable, greedyFirstLine, readJsonl } from "../lib/eval/tasks.ts";
import { gptEvalModel } from "../lib/eval/scoring.ts";
import { configHelp } from "../lib/train/config.ts";
import { intFlag, runMain } from "./cli.ts";
import { type FinishedRun, trainCommand } from "./train.ts";
import { spamTaskOptions } from "./spam_task.ts";

const CACHE_DIR = ".cache";

/** Fine-tuning's defaults over pretraining's: a smaller, short schedule from given weights. */
const FINETUNE_DEFAULTS = [
  "--sft",
  "--lr",
  "3e-4",
  "--min-lr",
  "3e-5",
  "--lr-warmup-iters",
  "10",
  "--train-iters",
  "200",
  "--eval-interval",
  "50",
  "--eval-iters",
  "10",
  "--save",
  "runs/finetune",
];

/** The built-in tasks: their data, and the defaults they need. */
const TASKS = {
  "email-subjects": {
    about: "email body → subject line (SpamAssassin non-spam mail), scored by ROUGE",
    defaults: ["--seq-length", "256", "--save", "runs/email-subjects", "--train-iters", "300"],
  },
  "spam": {
    about: "spam or not (SpamAssassin): a classification head on a pretrained BERT, " +
      "scored beside a bag-of-words logistic regression",
    defaults: [
      "--seq-length",
      "128",
      "--tokenizer",
      "bert-base-uncased",
      "--save",
      "runs/spam",
      // chosen on the validation loss: 1e-3 over 600 steps beat 3e-4 over 300 (RESULTS.md)
      "--lr",
      "1e-3",
      "--min-lr",
      "1e-4",
      "--train-iters",
      "600",
      "--eval-interval",
      "100",
      "--micro-batch-size",
      "16",
      "--global-batch-size",
      "32",
    ],
  },
} as const;
type TaskName = keyof typeof TASKS;

const USAGE =
  `usage: deno task finetune [--task NAME] [--rouge-limit N] [--max-new-tokens N] [train flags]

Supervised fine-tuning (deno task train --sft) with fine-tuning defaults:
  ${FINETUNE_DEFAULTS.join(" ")}
Start from --pretrained-checkpoint DIR (a Denotron run) or --init-from-hf DIR; give the
examples with --data-path FILE.jsonl (cut by --split) or --train-data-path and
--valid-data-path. Each line: {"prompt", "response"} or {"messages": [{"role", "content"}]}.

  --task NAME          a built-in task instead of --data-path:
${Object.entries(TASKS).map(([k, t]) => `                         ${k}: ${t.about}`).join("\n")}
  --rouge-limit N      held-out examples scored after training (default: all)
  --max-new-tokens N   tokens generated per held-out prompt (default: 48)

The training flags:
`;

/** This command's own flags, besides the training run's. */
const OWN_FLAGS = ["task", "rouge-limit", "max-new-tokens"];

async function main(args: string[]): Promise<void> {
  try {
    await finetune(args);
  } catch (e) {
    // a misspelt flag of this command reaches the training config as an unknown option
    const typo = e instanceof ConfigError && e.message.match(/unknown option --([\w-]+)/)?.[1];
    const meant = typo && closestName(typo, OWN_FLAGS);
    if (meant) {
      throw new ConfigError(`command line: unknown option --${typo}; did you mean --${meant}?`);
    }
    throw e;
  }
}

async function finetune(args: string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE + configHelp());
    return;
  }
  // this command's own flags; everything else is the training run's
  const own = new Set(OWN_FLAGS.map((f) => `--${f}`));
  const mine: string[] = [], rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const flag = args[i].split("=")[0];
    if (!own.has(flag)) {
      rest.push(args[i]);
      continue;
    }
    mine.push(args[i]);
    if (!args[i].includes("=") && i + 1 < args.length) mine.push(args[++i]);
  }
  const { values } = parseFlags({
    args: mine,
    options: {
      task: { type: "string" },
      "rouge-limit": { type: "string" },
      "max-new-tokens": { type: "string" },
    },
  });
  const limit = values["rouge-limit"] === undefined
    ? undefined
    : intFlag("rouge-limit", values["rouge-limit"], 1, 1e9);
  const maxNewTokens = values["max-new-tokens"] === undefined
    ? 48
    : intFlag("max-new-tokens", values["max-new-tokens"], 1, 4096);
  if (values.task === undefined) {
    await trainCommand([...FINETUNE_DEFAULTS, ...rest]);
    return;
  }
  const task = values.task;
  if (!(task in TASKS)) {
    throw new ConfigError(
      `--task ${task} is not a built-in task (${Object.keys(TASKS).join(", ")})`,
    );
  }
  const t = TASKS[task as TaskName];
  if (task === "spam") {
    await trainCommand([...FINETUNE_DEFAULTS, ...t.defaults, ...rest], spamTaskOptions(CACHE_DIR));
    return;
  }
  const seq = lastValue([...t.defaults, ...rest], "--seq-length") ?? "256";
  // the body leaves room for the prompt's words, the subject and the end-of-text tokens
  const bodyChars = Number(seq) - 64;
  if (!(bodyChars >= 32)) {
    throw new ConfigError(`--task ${task} needs --seq-length 96 or more, got ${seq}`);
  }
  const data = await prepareEmailSubjects(CACHE_DIR, bodyChars);
  const files = [
    "--train-data-path",
    `${data.dir}/${EMAIL_SUBJECT_FILES.train}`,
    "--valid-data-path",
    `${data.dir}/${EMAIL_SUBJECT_FILES.valid}`,
  ];
  const test = `${data.dir}/${EMAIL_SUBJECT_FILES.test}`;
  await trainCommand([...FINETUNE_DEFAULTS, ...t.defaults, ...files, ...rest], {
    afterTraining: (run) => scoreSummaries(run, test, { limit, maxNewTokens }),
  });
}

/** The last value given for `flag` in `args` (`--flag v` or `--flag=v`), if any. */
function lastValue(args: string[], flag: string): string | undefined {
  let v: string | undefined;
  args.forEach((a, i) => {
    if (a === flag) v = args[i + 1];
    else if (a.startsWith(`${flag}=`)) v = a.slice(flag.length + 1);
  });
  return v;
}

/**
 * ROUGE of the fine-tuned model's greedy subject lines on the held-out split, beside the
 * lead baseline (each body's first line), printed as a table and written to
 * `SAVE/summaries.json` with every generation.
 */
async function scoreSummaries(
  run: FinishedRun,
  test: string,
  o: { limit?: number; maxNewTokens: number },
): Promise<void> {
  const { trainer, log } = run;
  const model = await run.wholeModel();
  if (!model) {
    log(`\nROUGE: under model parallelism the summaries are scored from the checkpoint: --save`);
    return;
  }
  model.eval();
  const rows = (await readJsonl(test, { prompt: "string", reference: "string", lead: "string" }))
    .slice(0, o.limit);
  const leads = new Map(rows.map((r) => [r.prompt as string, r.lead as string]));
  const generated = new Map<string, string>();
  const complete = greedyFirstLine(model, trainer.tokenizer, o.maxNewTokens);
  const scorer = gptEvalModel(model);
  const task = (generate: (p: string) => string) => ({
    kind: "rouge" as const,
    path: test,
    ...(o.limit ? { limit: o.limit } : {}),
    generate,
  });
  const tuned = await evaluateTask(
    scorer,
    trainer.tokenizer,
    task((p) => {
      const s = complete(p);
      generated.set(p, s);
      return s;
    }),
  );
  const lead = await evaluateTask(scorer, trainer.tokenizer, task((p) => leads.get(p)!));
  tuned.task = "rouge (fine-tuned model)";
  lead.task = "rouge (lead baseline)";
  log(`\nheld-out subject lines (${rows.length} emails):\n${formatTable([tuned, lead])}`);
  for (const r of rows.slice(0, 3)) {
    log(`  reference: ${r.reference}\n  generated: ${generated.get(r.prompt as string)}`);
  }
  const save = trainer.config.checkpoints.save;
  if (save) {
    const out = `${save}/summaries.json`;
    await Deno.writeTextFile(
      out,
      JSON.stringify(
        {
          test,
          results: [tuned, lead],
          examples: rows.map((r) => ({
            reference: r.reference,
            generated: generated.get(r.prompt as string),
            lead: r.lead,
          })),
        },
        null,
        2,
      ) + "\n",
    );
    log(`summaries: ${out}`);
  }
}

if (import.meta.main) await runMain(() => main(Deno.args));
