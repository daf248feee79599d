/**
 * `deno task evaluate`: score a trained or imported GPT on evaluation tasks and print
 * a table (and JSON with --output). See docs/evaluation.md.
 *
 * ```
 * deno task evaluate --checkpoint checkpoints/run --perplexity-text data/valid.txt
 * deno task evaluate --hf path/to/gpt2 --lambada lambada.jsonl --hellaswag hellaswag.jsonl
 * ```
 *
 * @module
 */
import { parseFlags } from "../lib/cli_args.ts";
import { DenotronError } from "../lib/errors.ts";
import { gptEvalModel } from "../lib/eval/scoring.ts";
import {
  type EvalTask,
  evaluateTask,
  formatTable,
  greedyFirstLine,
  readJsonl,
  TASK_FIELDS,
  type TaskResult,
} from "../lib/eval/tasks.ts";
import { intFlag, MODEL_SOURCE_FLAGS, modelSource, runMain } from "./cli.ts";

const USAGE = `usage: deno task evaluate (--checkpoint DIR | --hf DIR) TASK... [options]

  --checkpoint DIR          a training save directory (its latest checkpoint) or DIR/iter_NNNNNNN
  --hf DIR                  a Hugging Face GPT-2 or Llama directory
tasks (at least one):
  --perplexity-data PREFIX  an indexed dataset (PREFIX.bin + PREFIX.idx): perplexity, bits per byte
  --perplexity-text FILE    a text file: perplexity, bits per byte
  --lambada FILE            JSONL {"text"}: last-word accuracy (greedy)
  --hellaswag FILE          JSONL {"ctx","endings","label"}: acc and acc_norm
  --rouge FILE              JSONL {"prompt","reference"}: greedy generation, ROUGE-1/2/L F1
options:
  --stride N                sliding-window stride for perplexity (default: the context length)
  --limit N                 examples (documents) per task at most (default: all)
  --max-new-tokens N        tokens generated per --rouge prompt (default: 64)
  --output FILE             also write the results as JSON to FILE
  --help                    this text`;

async function main(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      ...MODEL_SOURCE_FLAGS,
      "perplexity-data": { type: "string" },
      "perplexity-text": { type: "string" },
      lambada: { type: "string" },
      hellaswag: { type: "string" },
      rouge: { type: "string" },
      stride: { type: "string" },
      limit: { type: "string" },
      "max-new-tokens": { type: "string", default: "64" },
      output: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const load = modelSource(values);
  const limit = values.limit === undefined
    ? undefined
    : intFlag("limit", values.limit, 1, Number.MAX_SAFE_INTEGER);
  const stride = values.stride === undefined
    ? undefined
    : intFlag("stride", values.stride, 1, 1_000_000);
  const maxNewTokens = intFlag("max-new-tokens", values["max-new-tokens"], 1, 1_000_000);
  // Files are checked before the model is loaded.
  const paths = ["perplexity-data", "perplexity-text", "lambada", "hellaswag", "rouge"] as const;
  for (const flag of paths) {
    const p = values[flag];
    if (p === undefined) continue;
    for (const f of flag === "perplexity-data" ? [`${p}.bin`, `${p}.idx`] : [p]) {
      try {
        Deno.statSync(f);
      } catch {
        throw new DenotronError(`--${flag}: ${f} does not exist`);
      }
    }
  }
  for (const kind of ["lambada", "hellaswag", "rouge"] as const) {
    if (values[kind] !== undefined) await readJsonl(values[kind], TASK_FIELDS[kind]);
  }
  if (paths.every((f) => values[f] === undefined)) {
    console.error(`error: give at least one task\n${USAGE}`);
    return 2;
  }

  const source = await load();
  const { model, tokenizer } = source;
  console.error(`evaluate: ${model} from ${source.origin}`);
  const scorer = gptEvalModel(model);
  if (stride !== undefined && stride > scorer.contextLength) {
    throw new DenotronError(
      `--stride ${stride} is over the model's context length ${scorer.contextLength}`,
    );
  }
  const tasks: EvalTask[] = [];
  if (values["perplexity-data"]) {
    tasks.push({
      kind: "perplexity",
      format: "indexed",
      path: values["perplexity-data"],
      stride,
      limit,
    });
  }
  if (values["perplexity-text"]) {
    tasks.push({
      kind: "perplexity",
      format: "text",
      path: values["perplexity-text"],
      stride,
      limit,
    });
  }
  if (values.lambada) tasks.push({ kind: "lambada", path: values.lambada, limit });
  if (values.hellaswag) tasks.push({ kind: "hellaswag", path: values.hellaswag, limit });
  if (values.rouge) {
    const gen = greedyFirstLine(model, tokenizer, maxNewTokens);
    tasks.push({ kind: "rouge", path: values.rouge, limit, generate: gen });
  }
  const results: TaskResult[] = [];
  for (const task of tasks) results.push(await evaluateTask(scorer, tokenizer, task));
  console.log(formatTable(results));
  if (values.output) {
    await Deno.writeTextFile(
      values.output,
      JSON.stringify({ model: source.origin, results }, null, 2) + "\n",
    );
  }
  model.dispose();
  return 0;
}

if (import.meta.main) await runMain(() => main(Deno.args));
