/**
 * Text files or JSON lines to a Megatron indexed dataset, streamed.
 *
 * defines: preprocess, safeCut, PreprocessOptions, PreprocessStats
 *
 * A `.jsonl` input gives one document per line (its `jsonKey` field); any
 * other file is one document, read and tokenized in chunks that each become
 * one sequence of that document (Megatron's multi-sequence documents), so a
 * large file never sits in memory whole. Chunks end where the tokenizer's
 * `safeCut` allows (GPT-2's {@link safeCut} by default); a tokenizer that
 * allows no cut gets each plain-text file whole.
 *
 * With `splitSentences` (Megatron's `--split-sentences`, for BERT data) every sentence
 * ({@link streamSentences}) is one sequence of its document, and a sentence that
 * tokenizes to nothing is dropped.
 *
 * @module
 */

import { DenotronError } from "../errors.ts";
import { IndexedDatasetWriter } from "./indexed_dataset.ts";
import { splitSentences, streamSentences } from "./sentences.ts";
import { safeCut, type Tokenizer } from "./tokenizer.ts";

/** Options for {@link preprocess}. */
export interface PreprocessOptions {
  /** Input files: `.jsonl` / `.json` (one JSON object per line) or plain text. */
  inputs: string[];
  /** Output path without `.bin` / `.idx`. */
  outputPrefix: string;
  /** The tokenizer; its vocabulary picks the element type. */
  tokenizer: Tokenizer;
  /** Field holding the text in JSON lines. @default "text" */
  jsonKey?: string;
  /** Append the end-of-text id to every document. @default false */
  appendEod?: boolean;
  /**
   * Start every document with the tokenizer's beginning-of-text id (Llama
   * models are trained so); an error for a tokenizer without one.
   * @default false
   */
  prependBos?: boolean;
  /** Write each sentence as one sequence of its document. @default false */
  splitSentences?: boolean;
  /** Characters of plain text tokenized at a time. @default 1 << 22 */
  chunkChars?: number;
  /** Called about once a second with progress. @default none */
  onProgress?: (stats: PreprocessStats) => void;
}

/** Running totals of a {@link preprocess} call. */
export interface PreprocessStats {
  /** Input bytes read so far. */
  bytesRead: number;
  /** Total input bytes. */
  bytesTotal: number;
  /** Documents written. */
  documents: number;
  /** Tokens written. */
  tokens: number;
  /** Seconds since the start. */
  seconds: number;
}

/**
 * Tokenizes the inputs into `outputPrefix.bin` / `.idx`. The output appears
 * only when complete; on error nothing under the output names changes.
 *
 * @param options inputs, output, tokenizer and switches
 * @returns the final totals
 * @example
 * ```ts
 * import { preprocess } from "./preprocess.ts";
 * import { ByteTokenizer } from "./tokenizer.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.jsonl`, '{"text": "hi"}\n{"text": "yo"}\n');
 * const stats = await preprocess({
 *   inputs: [`${dir}/a.jsonl`],
 *   outputPrefix: `${dir}/out`,
 *   tokenizer: new ByteTokenizer(),
 *   appendEod: true,
 * });
 * stats.tokens; // 6
 * ```
 */
export async function preprocess(options: PreprocessOptions): Promise<PreprocessStats> {
  const { inputs, tokenizer } = options;
  if (inputs.length === 0) throw new DenotronError("preprocess: no input files given");
  const stats: PreprocessStats = {
    bytesRead: 0,
    bytesTotal: 0,
    documents: 0,
    tokens: 0,
    seconds: 0,
  };
  for (const path of inputs) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (e) {
      throw new DenotronError(`${path}: cannot read input (${(e as Error).message})`);
    }
    if (!info.isFile) throw new DenotronError(`${path}: not a file`);
    stats.bytesTotal += info.size;
  }
  const start = performance.now();
  let lastReport = start;
  const tick = () => {
    const now = performance.now();
    stats.seconds = (now - start) / 1000;
    if (options.onProgress && now - lastReport >= 1000) {
      lastReport = now;
      options.onProgress({ ...stats });
    }
  };
  const bos = options.prependBos ? tokenizer.bosId : undefined;
  if (options.prependBos && bos === undefined) {
    throw new DenotronError(
      `tokenizer ${tokenizer.name} has no beginning-of-text token to prepend`,
    );
  }
  const writer = await IndexedDatasetWriter.create(options.outputPrefix, {
    vocabSize: tokenizer.vocabSize,
  });
  const eod = options.appendEod ? tokenizer.eotId : undefined;
  const cut = (text: string, atLeast: number) =>
    tokenizer.safeCut ? tokenizer.safeCut(text, atLeast) : safeCut(text, atLeast);
  try {
    for (const path of inputs) {
      const isJson = /\.jsonl?$/i.test(path);
      let seen = 0;
      const onBytes = (n: number) => {
        stats.bytesRead += n;
        seen += n;
        tick();
      };
      if (isJson) {
        const key = options.jsonKey ?? "text";
        for await (const [line, lineNo] of readLines(path, onBytes)) {
          if (line.trim() === "") continue;
          const text = jsonField(line, key, `${path}:${lineNo}`);
          if (options.splitSentences) {
            await writeSentences(writer, tokenizer, splitSentences(text), bos, eod, stats);
            continue;
          }
          const ids = tokenizer.encode(text);
          if (bos !== undefined) ids.unshift(bos);
          await writer.addDocument(ids, eod);
          stats.documents++;
          stats.tokens += ids.length + (eod === undefined ? 0 : 1);
        }
      } else {
        const chunks: number[][] = [];
        const size = options.chunkChars ?? 1 << 22;
        let first = true;
        const pieces = readTextChunks(path, size, cut, onBytes);
        for await (const piece of options.splitSentences ? streamSentences(pieces) : pieces) {
          const ids = tokenizer.encode(piece);
          if (ids.length === 0 && options.splitSentences) continue;
          if (first && bos !== undefined) ids.unshift(bos);
          first = false;
          chunks.push(ids);
          if (chunks.length === 2) await writeSequence(writer, chunks.shift()!, stats);
        }
        if (chunks.length === 0) chunks.push(bos === undefined ? [] : [bos]);
        if (eod !== undefined) chunks[0].push(eod);
        await writeSequence(writer, chunks[0], stats);
        writer.endDocument();
        stats.documents++;
      }
      if (seen === 0) throw new DenotronError(`${path}: input is empty`);
    }
    await writer.finalize();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  stats.seconds = (performance.now() - start) / 1000;
  return stats;
}

/** One document of sentences, one sequence each (bos on the first, eod on the last). */
async function writeSentences(
  w: IndexedDatasetWriter,
  tokenizer: Tokenizer,
  sentences: string[],
  bos: number | undefined,
  eod: number | undefined,
  stats: PreprocessStats,
) {
  const all = sentences.map((s) => tokenizer.encode(s)).filter((ids) => ids.length > 0);
  if (bos !== undefined) (all[0] ??= []).unshift(bos);
  if (eod !== undefined && all.length > 0) all[all.length - 1].push(eod);
  for (const ids of all) await writeSequence(w, ids, stats);
  w.endDocument();
  stats.documents++;
}

async function writeSequence(w: IndexedDatasetWriter, ids: number[], stats: PreprocessStats) {
  await w.addSequence(ids);
  stats.tokens += ids.length;
}

function jsonField(line: string, key: string, where: string): string {
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (e) {
    throw new DenotronError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  if (obj === null || typeof obj !== "object" || !(key in obj)) {
    throw new DenotronError(`${where}: no "${key}" field (choose another with --json-key)`);
  }
  const text = (obj as Record<string, unknown>)[key];
  if (typeof text !== "string") throw new DenotronError(`${where}: "${key}" is not a string`);
  return text;
}

/** Streams a file's decoded text, calling `onBytes` with each raw chunk size. */
async function* readText(path: string, onBytes: (n: number) => void): AsyncGenerator<string> {
  using file = await Deno.open(path, { read: true });
  const decoder = new TextDecoder("utf-8");
  for await (const bytes of file.readable) {
    onBytes(bytes.length);
    yield decoder.decode(bytes, { stream: true });
  }
  const rest = decoder.decode();
  if (rest) yield rest;
}

/** Yields [line, 1-based line number]. */
async function* readLines(
  path: string,
  onBytes: (n: number) => void,
): AsyncGenerator<[string, number]> {
  let pending = "";
  let lineNo = 0;
  for await (const text of readText(path, onBytes)) {
    pending += text;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) yield [line, ++lineNo];
  }
  if (pending !== "") yield [pending, ++lineNo];
}

/** Yields pieces of about `size` characters, each ending at a place `safeCut` allows. */
async function* readTextChunks(
  path: string,
  size: number,
  safeCut: (text: string, atLeast: number) => number,
  onBytes: (n: number) => void,
): AsyncGenerator<string> {
  let pending = "";
  for await (const text of readText(path, onBytes)) {
    pending += text;
    while (pending.length >= size) {
      const cut = safeCut(pending, size);
      if (cut <= 0) break;
      yield pending.slice(0, cut);
      pending = pending.slice(cut);
    }
  }
  if (pending !== "") yield pending;
}

/** GPT-2's cut rule, kept here for callers of this module (it lives in `tokenizer.ts`). */
export { safeCut } from "./tokenizer.ts";
