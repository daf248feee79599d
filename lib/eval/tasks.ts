/**
 * defines: EvalTask, TaskResult, FieldKind, TASK_FIELDS, taskName, readJsonl, evaluateTask,
 * formatTable, greedyFirstLine — the evaluation tasks over
 * files: perplexity (indexed dataset or text), LAMBADA, HellaSwag-style multiple choice
 * and ROUGE-scored generation. {@linkcode evaluateTask} is the one entry point, for the
 * CLI and for the trainer at each evaluation.
 *
 * @module
 */
import { IndexedDataset } from "../data/indexed_dataset.ts";
import type { Tokenizer } from "../data/tokenizer.ts";
import { DenotronError } from "../errors.ts";
import { generate } from "../infer/generate.ts";
import type { GPT } from "../nn/gpt.ts";
import { rouge } from "./rouge.ts";
import {
  type EvalModel,
  lambadaScore,
  multipleChoiceScore,
  perplexityFrom,
  streamNll,
} from "./scoring.ts";

/** One task and its data. */
export type EvalTask =
  | {
    kind: "perplexity";
    path: string;
    format: "indexed" | "text";
    stride?: number;
    limit?: number;
  }
  | { kind: "lambada"; path: string; limit?: number }
  | { kind: "hellaswag"; path: string; limit?: number }
  | {
    kind: "rouge";
    path: string;
    limit?: number;
    /** Greedy continuation of a prompt; the CLI passes one built on lib/infer. */
    generate: (prompt: string) => string;
  };

/** A task's metrics (name to value) and how many examples gave them. */
export interface TaskResult {
  /** The task's name, e.g. "lambada" or "perplexity(text)". */
  task: string;
  /** The data it read. */
  path: string;
  /** Examples (or documents) scored. */
  examples: number;
  /** Metric name to value, e.g. acc, acc_norm, perplexity, bits_per_byte, rouge1_f1. */
  metrics: Record<string, number>;
}

/** The task's name as printed. */
export function taskName(task: EvalTask): string {
  return task.kind === "perplexity" ? `perplexity(${task.format})` : task.kind;
}

/** The JSONL fields each file-of-examples task needs. */
export const TASK_FIELDS = {
  lambada: { text: "string" },
  hellaswag: { ctx: "string", endings: "string[]", label: "integer" },
  rouge: { prompt: "string", reference: "string" },
} as const satisfies Record<string, Record<string, FieldKind>>;

/** What a JSONL field must hold: a string, a non-empty list of strings, an integer. */
export type FieldKind = "string" | "string[]" | "integer";

const KIND_TEXT = {
  string: "a string",
  "string[]": "a non-empty list of strings",
  integer: "an integer",
} as const;

/**
 * Reads a JSONL file: one object per non-empty line, with the named fields checked.
 * Errors are one sentence naming the file, the line and the field.
 *
 * @param path the file
 * @param fields required field names and their kinds
 * @returns the objects, in order
 */
export async function readJsonl(
  path: string,
  fields: Readonly<Record<string, FieldKind>>,
): Promise<Record<string, unknown>[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new DenotronError(`${path}: cannot read the file (${(e as Error).message})`);
  }
  const rows: Record<string, unknown>[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const where = `${path}:${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw new DenotronError(`${where}: not a JSON object (bad JSON)`);
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      throw new DenotronError(`${where}: not a JSON object`);
    }
    const obj = row as Record<string, unknown>;
    for (const [name, kind] of Object.entries(fields)) {
      const v = obj[name];
      const ok = kind === "string"
        ? typeof v === "string"
        : kind === "integer"
        ? Number.isInteger(typeof v === "string" ? Number(v) : v) && v !== ""
        : Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string");
      if (!ok) {
        const want = KIND_TEXT[kind];
        throw new DenotronError(
          `${where}: field "${name}" ${
            v === undefined ? `is missing (want ${want})` : `is not ${want}`
          }`,
        );
      }
    }
    rows.push(obj);
  });
  if (rows.length === 0) throw new DenotronError(`${path}: no examples (the file is empty)`);
  return rows;
}

const utf8 = new TextEncoder();

async function perplexityTask(
  model: EvalModel,
  tokenizer: Tokenizer,
  task: Extract<EvalTask, { kind: "perplexity" }>,
): Promise<TaskResult> {
  let nll = 0;
  let tokens = 0;
  let bytes = 0;
  let docs = 0;
  // Each document is one stream behind an end-of-text token, so its first token is
  // scored too; bytes are those of the document's decoded text.
  const score = (ids: readonly number[]) => {
    const r = streamNll(model, [tokenizer.eotId, ...ids], task.stride);
    nll += r.nll;
    tokens += r.tokens;
    bytes += utf8.encode(tokenizer.decode(ids)).length;
    docs++;
  };
  if (task.format === "text") {
    let text: string;
    try {
      text = await Deno.readTextFile(task.path);
    } catch (e) {
      throw new DenotronError(`${task.path}: cannot read the file (${(e as Error).message})`);
    }
    score(tokenizer.encode(text));
  } else {
    using ds = await IndexedDataset.open(task.path);
    const n = Math.min(ds.documentCount, task.limit ?? Infinity);
    for (let d = 0; d < n; d++) {
      // A document is the run of sequences documentIndices[d] .. documentIndices[d+1].
      const ids: number[] = [];
      for (let s = ds.documentIndices[d]; s < ds.documentIndices[d + 1]; s++) {
        for (const t of ds.read(s)) ids.push(t);
      }
      // A trailing end-of-document token (preprocess --append-eod) is the next
      // document's context, not this document's text.
      while (ids.length > 0 && ids[ids.length - 1] === tokenizer.eotId) ids.pop();
      score(ids);
    }
  }
  const r = perplexityFrom(nll, tokens, bytes);
  return {
    task: taskName(task),
    path: task.path,
    examples: docs,
    metrics: { perplexity: r.perplexity, loss: r.loss, bits_per_byte: r.bitsPerByte, tokens },
  };
}

/**
 * Runs one task.
 *
 * @param model the scorer (e.g. {@linkcode gptEvalModel})
 * @param tokenizer the model's tokenizer
 * @param task what to run
 * @returns the task's metrics
 */
export async function evaluateTask(
  model: EvalModel,
  tokenizer: Tokenizer,
  task: EvalTask,
): Promise<TaskResult> {
  if (task.kind === "perplexity") return await perplexityTask(model, tokenizer, task);
  const encode = (s: string) => tokenizer.encode(s);
  const limit = task.limit ?? Infinity;
  const result = (examples: number, metrics: Record<string, number>): TaskResult => ({
    task: taskName(task),
    path: task.path,
    examples,
    metrics,
  });
  if (task.kind === "lambada") {
    const rows = (await readJsonl(task.path, TASK_FIELDS.lambada)).slice(0, limit);
    let right = 0;
    let nll = 0;
    let count = 0;
    for (const [i, row] of rows.entries()) {
      let s;
      try {
        s = lambadaScore(model, encode, tokenizer.eotId, row.text as string);
      } catch (e) {
        throw new DenotronError(
          `${task.path}: example ${i + 1}: field "text": ${(e as Error).message}`,
        );
      }
      if (s.greedy) right++;
      nll -= s.logProb;
      count += s.tokens;
    }
    return result(rows.length, { acc: right / rows.length, perplexity: Math.exp(nll / count) });
  }
  if (task.kind === "hellaswag") {
    const rows = (await readJsonl(task.path, TASK_FIELDS.hellaswag))
      .slice(0, limit);
    let acc = 0;
    let accNorm = 0;
    rows.forEach((row, i) => {
      const endings = row.endings as string[];
      const label = Number(row.label);
      if (label < 0 || label >= endings.length) {
        throw new DenotronError(
          `${task.path}: example ${
            i + 1
          }: field "label" ${label} is not an index into its ${endings.length} endings`,
        );
      }
      const s = multipleChoiceScore(model, encode, tokenizer.eotId, row.ctx as string, endings);
      if (s.pick === label) acc++;
      if (s.pickNorm === label) accNorm++;
    });
    return result(rows.length, { acc: acc / rows.length, acc_norm: accNorm / rows.length });
  }
  const rows = (await readJsonl(task.path, TASK_FIELDS.rouge)).slice(
    0,
    limit,
  );
  const sums = { rouge1: 0, rouge2: 0, rougeL: 0 };
  for (const row of rows) {
    const r = rouge(task.generate(row.prompt as string), row.reference as string);
    sums.rouge1 += r.rouge1.f1;
    sums.rouge2 += r.rouge2.f1;
    sums.rougeL += r.rougeL.f1;
  }
  const n = Math.max(1, rows.length);
  return result(rows.length, {
    rouge1_f1: sums.rouge1 / n,
    rouge2_f1: sums.rouge2 / n,
    rougeL_f1: sums.rougeL / n,
  });
}

/**
 * The results as a plain-text table, one row per task.
 *
 * @param results from {@linkcode evaluateTask}
 */
export function formatTable(results: readonly TaskResult[]): string {
  const rows = results.map((r) => [
    r.task,
    String(r.examples),
    Object.entries(r.metrics).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(4)}`)
      .join(" "),
  ]);
  const head = ["task", "examples", "metrics"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/**
 * The generation a ROUGE task scores: the greedy continuation of the prompt (after an
 * end-of-text token, as a document starts), stopped at end-of-text, up to its first line.
 *
 * @param model the model (eval mode)
 * @param tokenizer its tokenizer
 * @param maxNewTokens tokens generated at most
 * @returns prompt → the generated line, trimmed
 */
export function greedyFirstLine(
  model: GPT,
  tokenizer: Tokenizer,
  maxNewTokens: number,
): (prompt: string) => string {
  return (prompt) => {
    const ids = generate(model, [tokenizer.eotId, ...tokenizer.encode(prompt)], {
      maxNewTokens,
      temperature: 0,
      stopAt: tokenizer.eotId,
    }).filter((t) => t !== tokenizer.eotId);
    return tokenizer.decode(ids).trim().split("\n")[0];
  };
}
