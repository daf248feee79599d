/**
 * Supervised fine-tuning data: JSONL conversations turned into packed training rows whose
 * loss covers the responses only.
 *
 * defines: SftExample, SftSegment, readSftJsonl, parseSftJsonl, tokenizeExample,
 *          TokenizedExample, packExamples, PackedRows, SftDataset, buildSftDatasets
 *
 * Each line of the file is one example, in either form:
 * - `{"prompt": "...", "response": "..."}`: the response is trained;
 * - `{"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}`:
 *   every assistant message is trained, the rest is context. The conversation is rendered
 *   by a chat template (the model's, or the plain `role: content` one).
 *
 * The end-of-text token closes every example and is trained, so the model learns to stop;
 * it (or the beginning-of-text token) opens every example as well, untrained.
 *
 * Packing puts consecutive examples into one row of T + 1 tokens until the next one does
 * not fit (Megatron's sequential packing); a row's tail is padding. The model then sees
 * each example alone: positions restart at every example and attention stays inside it
 * ({@linkcode SamplePacking}). A target counts only where the next token is a response
 * token of the same example, so prompts, the seams between examples and the padding add
 * nothing to the loss or the gradient. An example longer than a row is cut to the row.
 *
 * @module
 */

import { DenotronError, fmtValue } from "../errors.ts";
import { Rng, type SampleDataset, type SamplePacking, splitDocuments } from "./gpt_dataset.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** A piece of an example's text, and whether its tokens are trained. */
export interface SftSegment {
  /** The text. */
  readonly text: string;
  /** Whether the loss covers these tokens (a response), or they are context (a prompt). */
  readonly trained: boolean;
}

/** One chat message. */
export interface SftMessage {
  /** "system", "user" or "assistant". */
  readonly role: string;
  /** The message text. */
  readonly content: string;
}

/** One line of an SFT file. */
export type SftExample =
  | { readonly prompt: string; readonly response: string }
  | { readonly messages: readonly SftMessage[] };

const ROLES = ["system", "user", "assistant"];

/**
 * The examples of a JSONL text; blank lines are skipped.
 *
 * @param text the file's contents
 * @param file the file's name, for messages
 * @returns one example per non-blank line
 * @throws DenotronError naming the file, line and field of the first bad line
 * @example
 * ```ts
 * import { parseSftJsonl } from "./sft_dataset.ts";
 * const [ex] = parseSftJsonl('{"prompt": "2+2=", "response": "4"}\n', "x.jsonl");
 * console.log(ex); // { prompt: "2+2=", response: "4" }
 * ```
 */
export function parseSftJsonl(text: string, file: string): SftExample[] {
  const out: SftExample[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const where = `${file}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new DenotronError(`${where}: not JSON (${(e as Error).message})`);
    }
    out.push(exampleOf(v, where));
  });
  if (out.length === 0) throw new DenotronError(`${file}: no examples`);
  return out;
}

function exampleOf(v: unknown, where: string): SftExample {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new DenotronError(`${where}: expected an object, got ${fmtValue(v)}`);
  }
  const o = v as Record<string, unknown>;
  const str = (key: string, x: unknown) => {
    if (typeof x !== "string") {
      throw new DenotronError(`${where}: "${key}" must be a string, got ${fmtValue(x)}`);
    }
    return x;
  };
  if ("messages" in o) {
    const m = o.messages;
    if (!Array.isArray(m) || m.length === 0) {
      throw new DenotronError(`${where}: "messages" must be a non-empty list of messages`);
    }
    const messages = m.map((x, k) => {
      const field = `messages[${k}]`;
      if (typeof x !== "object" || x === null) {
        throw new DenotronError(`${where}: "${field}" must be {"role", "content"}`);
      }
      const role = str(`${field}.role`, (x as Record<string, unknown>).role);
      if (!ROLES.includes(role)) {
        throw new DenotronError(
          `${where}: "${field}.role" must be one of ${ROLES.join(", ")}, got "${role}"`,
        );
      }
      return { role, content: str(`${field}.content`, (x as Record<string, unknown>).content) };
    });
    if (!messages.some((x) => x.role === "assistant")) {
      throw new DenotronError(`${where}: "messages" has no assistant message to train on`);
    }
    return { messages };
  }
  if (!("prompt" in o) || !("response" in o)) {
    throw new DenotronError(
      `${where}: expected "prompt" and "response", or "messages" (got ${
        Object.keys(o).map((k) => `"${k}"`).join(", ") || "no fields"
      })`,
    );
  }
  return { prompt: str("prompt", o.prompt), response: str("response", o.response) };
}

/**
 * The examples of a JSONL file.
 *
 * @param path the file
 * @returns its examples
 * @throws DenotronError when it cannot be read, or as {@linkcode parseSftJsonl}
 */
export async function readSftJsonl(path: string): Promise<SftExample[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new DenotronError(`${path}: cannot read the fine-tuning data (${(e as Error).message})`);
  }
  return parseSftJsonl(text, path);
}

/**
 * Renders a conversation up to where the assistant's next answer starts (a chat
 * template's `add_generation_prompt`).
 */
export type ChatRenderer = (messages: SftMessage[]) => string;

/**
 * The segments of an example: the prompt then the response, or each assistant message
 * after the template's text leading to it.
 *
 * @param ex the example
 * @param render the chat template (messages only)
 * @param where for messages
 * @throws DenotronError when a template does not render each turn as a prefix of the next
 */
export function segmentsOf(ex: SftExample, render: ChatRenderer, where = "example"): SftSegment[] {
  if ("prompt" in ex) {
    return [{ text: ex.prompt, trained: false }, { text: ex.response, trained: true }];
  }
  const out: SftSegment[] = [];
  let done = ""; // the text so far
  ex.messages.forEach((m, i) => {
    if (m.role !== "assistant") return;
    const before = render(ex.messages.slice(0, i));
    if (!before.startsWith(done)) {
      throw new DenotronError(
        `${where}: the chat template's text for message ${i} does not start with its text ` +
          `for the messages before, so the answers cannot be told from the context`,
      );
    }
    out.push({ text: before.slice(done.length), trained: false });
    out.push({ text: m.content, trained: true });
    done = before + m.content;
  });
  return out;
}

/** An example's tokens and which of them are trained. */
export interface TokenizedExample {
  /** Token ids, end-of-text last. */
  readonly tokens: Int32Array;
  /** (tokens) 1 where the token is trained (a response token, or the closing end-of-text). */
  readonly trained: Uint8Array;
}

/**
 * Tokenizes an example's segments one by one and closes it with end-of-text. It opens
 * with the beginning-of-text token, or, for tokenizers without one (GPT-2's, bytes), the
 * end-of-text token: in pretraining data every document follows one, and `deno task
 * evaluate` puts it before a prompt.
 *
 * @param segments the example's segments
 * @param tokenizer the model's tokenizer
 * @returns the tokens and their trained flags
 */
export function tokenizeExample(segments: SftSegment[], tokenizer: Tokenizer): TokenizedExample {
  const ids: number[] = [];
  const flags: number[] = [];
  ids.push(tokenizer.bosId ?? tokenizer.eotId);
  flags.push(0);
  for (const s of segments) {
    const t = tokenizer.encode(s.text);
    ids.push(...t);
    for (let i = 0; i < t.length; i++) flags.push(s.trained ? 1 : 0);
  }
  ids.push(tokenizer.eotId);
  flags.push(1);
  return { tokens: Int32Array.from(ids), trained: Uint8Array.from(flags) };
}

/** Examples laid into rows of T + 1 tokens. */
export interface PackedRows {
  /** (rows, T + 1) token ids. */
  readonly tokens: Int32Array;
  /** (rows, T) 1 where the target at that input does not count. */
  readonly ignore: Uint8Array;
  /** For each row, where its examples start among the T inputs. */
  readonly starts: number[][];
  /** Examples cut to fit a row. */
  readonly truncated: number;
  /** Examples left with no trained target (their responses lay past the cut). */
  readonly untrained: number;
}

/**
 * Lays tokenized examples into rows of T + 1 tokens: with `pack`, each row takes the
 * next examples while they fit; without, one example per row. The rest of a row is the
 * padding token, a document of its own whose targets do not count.
 *
 * @param examples the tokenized examples, in order
 * @param T inputs per row
 * @param pad the padding token
 * @param pack several examples per row @default true
 * @returns the rows
 * @example
 * ```ts
 * import { packExamples } from "./sft_dataset.ts";
 * const ex = (n: number) => ({ tokens: new Int32Array(n).fill(7), trained: new Uint8Array(n).fill(1) });
 * const rows = packExamples([ex(3), ex(2), ex(4)], 5, 0);
 * console.log(rows.starts); // [[0, 3], [0, 4]]: 3 + 2 tokens, then 4 and padding
 * ```
 */
export function packExamples(
  examples: readonly TokenizedExample[],
  T: number,
  pad: number,
  pack = true,
): PackedRows {
  const L = T + 1;
  const rows: TokenizedExample[][] = [];
  let row: TokenizedExample[] = [], used = 0, truncated = 0, untrained = 0;
  for (const ex of examples) {
    let e = ex;
    if (e.tokens.length > L) {
      truncated++;
      e = { tokens: e.tokens.subarray(0, L), trained: e.trained.subarray(0, L) };
    }
    // the first token is never a target, so a trained token needs one before it
    if (!e.trained.subarray(1).some((f) => f === 1)) {
      untrained++;
      continue;
    }
    if (row.length && (!pack || used + e.tokens.length > L)) {
      rows.push(row);
      row = [];
      used = 0;
    }
    row.push(e);
    used += e.tokens.length;
  }
  if (row.length) rows.push(row);
  const tokens = new Int32Array(rows.length * L).fill(pad);
  const ignore = new Uint8Array(rows.length * T).fill(1);
  const starts: number[][] = [];
  rows.forEach((r, k) => {
    const s: number[] = [];
    let at = 0;
    for (const e of r) {
      s.push(at);
      tokens.set(e.tokens, k * L + at);
      // input at + j predicts token at + j + 1 of the same example
      for (let j = 0; j + 1 < e.tokens.length; j++) {
        if (e.trained[j + 1]) ignore[k * T + at + j] = 0;
      }
      at += e.tokens.length;
    }
    if (at < T) s.push(at); // the padding is a document of its own
    starts.push(s);
  });
  return { tokens, ignore, starts, truncated, untrained };
}

/** Packed fine-tuning rows as training samples, in a seeded order. */
export class SftDataset implements SampleDataset {
  readonly name: string;
  readonly seqLength: number;
  readonly length: number;
  readonly shuffleIndex: Int32Array;
  /** The rows. */
  readonly rows: PackedRows;
  /** Examples in these rows (before any was dropped). */
  readonly examples: number;

  /**
   * Wraps packed rows; their order is a seeded shuffle.
   *
   * @param rows the packed rows (T + 1 tokens each)
   * @param o the split's name, T, the shuffle seed, the examples they hold
   */
  constructor(
    rows: PackedRows,
    o: { name: string; seqLength: number; seed: number; examples: number },
  ) {
    this.rows = rows;
    this.name = o.name;
    this.seqLength = o.seqLength;
    this.examples = o.examples;
    this.length = rows.starts.length;
    if (this.length === 0) {
      throw new DenotronError(`${o.name} fine-tuning data: no example has a response to train on`);
    }
    this.shuffleIndex = new Rng(o.seed).shuffle(
      Int32Array.from({ length: this.length }, (_, i) => i),
    );
  }

  sample(i: number, out: Int32Array = new Int32Array(this.seqLength + 1)): Int32Array {
    const L = this.seqLength + 1;
    out.set(this.rows.tokens.subarray(i * L, (i + 1) * L));
    return out;
  }

  packing(i: number): SamplePacking {
    const T = this.seqLength;
    return { starts: this.rows.starts[i], ignore: this.rows.ignore.subarray(i * T, (i + 1) * T) };
  }

  /** One line: rows, examples, and what did not fit. */
  describe(): string {
    const r = this.rows;
    const tokens = r.ignore.length - r.ignore.reduce((a, x) => a + x, 0);
    return `${this.name}: ${this.examples} examples in ${this.length} rows of ` +
      `${this.seqLength + 1} tokens, ${tokens} trained targets` +
      (r.truncated ? `, ${r.truncated} cut to the row length` : "") +
      (r.untrained ? `, ${r.untrained} left out (nothing to train after the cut)` : "");
  }
}

/** Options of {@linkcode buildSftDatasets}. */
export interface SftSplitOptions {
  /** Inputs per row (T). */
  seqLength: number;
  /** Train / valid / test weights over the examples (in file order). */
  split: string;
  /** Shuffles the rows. */
  seed: number;
  /** Several examples per row. @default true */
  pack?: boolean;
  /** Renders chat messages (see {@linkcode segmentsOf}). */
  render: ChatRenderer;
}

/**
 * Train / valid / test datasets of fine-tuning examples: one file cut by `split`, or
 * separate files used whole.
 *
 * @param files the train file (cut by `split` when it is the only one), and optionally
 *   valid and test files
 * @param tokenizer the model's tokenizer
 * @param o row length, split, seed, packing, chat template
 * @returns the datasets of the non-empty splits
 */
export async function buildSftDatasets(
  files: { train: string; valid?: string; test?: string },
  tokenizer: Tokenizer,
  o: SftSplitOptions,
): Promise<{ train?: SftDataset; valid?: SftDataset; test?: SftDataset }> {
  const names = ["train", "valid", "test"] as const;
  const parts: [string, SftExample[]][] = [];
  const trainAll = await readSftJsonl(files.train);
  if (files.valid || files.test) {
    parts.push([files.train, trainAll]);
    parts.push([files.valid ?? "", files.valid ? await readSftJsonl(files.valid) : []]);
    parts.push([files.test ?? "", files.test ? await readSftJsonl(files.test) : []]);
  } else {
    for (const [a, b] of splitDocuments(o.split, trainAll.length)) {
      parts.push([files.train, trainAll.slice(a, b)]);
    }
  }
  const out: { train?: SftDataset; valid?: SftDataset; test?: SftDataset } = {};
  parts.forEach(([file, examples], k) => {
    if (examples.length === 0) return;
    const tokenized = examples.map((ex, i) =>
      tokenizeExample(segmentsOf(ex, o.render, `${file} example ${i + 1}`), tokenizer)
    );
    const rows = packExamples(tokenized, o.seqLength, tokenizer.eotId, o.pack ?? true);
    out[names[k]] = new SftDataset(rows, {
      name: names[k],
      seqLength: o.seqLength,
      seed: o.seed + k,
      examples: examples.length,
    });
  });
  return out;
}
