/**
 * Hugging Face `tokenizer.json` files with a BPE model: byte-level ones
 * (GPT-2, Llama 3, SmolLM2) and SentencePiece-style ones with byte fallback
 * (Llama 2, Mistral, TinyLlama).
 *
 * defines: HfTokenizer, HfTokenizerOptions, tokenizerFromJson, loadHfTokenizer
 *
 * Encoding follows the `tokenizers` crate step by step:
 *
 * 1. added tokens whose `normalized` is false (the special ones: `<s>`,
 *    `<|begin_of_text|>`...) are cut out of the raw text, leftmost and
 *    longest first, with their `lstrip` / `rstrip` / `single_word` rules;
 * 2. each stretch between them is normalized (Llama 2: "▁" prepended, spaces
 *    to "▁"), then cut at the added tokens whose `normalized` is true;
 * 3. the pre-tokenizer splits a stretch into words (Llama 3: its split regex,
 *    then bytes spelled as GPT-2's byte characters; Llama 2 has none, so a
 *    stretch is one word);
 * 4. the BPE model ({@link HfBpeModel}) spells each word with its
 *    characters, falls back to `<0xNN>` byte tokens (or `unk_token`) for
 *    characters not in the vocabulary, and merges by rank; with
 *    `ignore_merges` a word that is itself in the vocabulary is taken whole.
 *
 * Decoding maps ids back to token strings (special tokens to their text) and
 * runs the file's decoder. The post-processor is not applied: `encode` adds no
 * beginning-of-text id; {@link HfTokenizer.bosId} is there for callers that
 * want it (`preprocess --prepend-bos`).
 *
 * @module
 */

import { DenotronError, fmtValue } from "../errors.ts";
import { decodeUtf8 } from "../io/text.ts";
import { HfBpeModel, MAX_TOKEN_ID } from "./hf_bpe.ts";
import { isObject, JsonFields, type JsonObject } from "./hf_json.ts";
import {
  type Decoder,
  escapeRegex,
  type Normalizer,
  parseDecoder,
  parseNormalizer,
  parsePreTokenizer,
  type PreTokenizer,
} from "./hf_pipeline.ts";
import { safeCut, type Tokenizer } from "./tokenizer.ts";

/** Options for {@link tokenizerFromJson} and {@link loadHfTokenizer}. */
export interface HfTokenizerOptions {
  /** Name for configs and cache keys. @default "hf-" and a hash of the file */
  name?: string;
  /** The file named in error messages. @default "tokenizer.json" */
  file?: string;
  /** `tokenizer_config.json`, as text or parsed, for `bos_token` and `eos_token`. */
  config?: string | JsonObject;
  /** The config file named in error messages. @default "tokenizer_config.json" */
  configFile?: string;
  /** End-of-text token (its text); overrides the config. */
  eos?: string;
  /** Beginning-of-text token (its text); overrides the config. */
  bos?: string;
  /** Words cached (their ids) before the cache is cleared. @default 200000 */
  cacheSize?: number;
}

/** One entry of `added_tokens`. */
interface AddedToken {
  id: number;
  content: string;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
}

/** Words longer than this (in UTF-16 units) are not cached, as in the crate. */
const MAX_CACHED_WORD = 256;

/** End-of-text tokens looked for when neither the options nor the config name one. */
const EOS_GUESSES = ["</s>", "<|end_of_text|>", "<|endoftext|>"];
const BOS_GUESSES = ["<s>", "<|begin_of_text|>"];

/**
 * A tokenizer read from a `tokenizer.json`. Build it with
 * {@link tokenizerFromJson} or {@link loadHfTokenizer}.
 *
 * @example
 * ```ts
 * import { tokenizerFromJson } from "./hf_tokenizer.ts";
 * const tok = tokenizerFromJson({
 *   added_tokens: [{ id: 3, content: "</s>", special: true }],
 *   normalizer: null,
 *   pre_tokenizer: null,
 *   decoder: { type: "Fuse" },
 *   model: { type: "BPE", vocab: { a: 0, b: 1, ab: 2, "</s>": 3 }, merges: ["a b"] },
 * });
 * tok.encode("abab</s>"); // [2, 2, 3]
 * tok.decode([2, 1]); // "abb"
 * ```
 */
export class HfTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly eotId: number;
  readonly bosId?: number;
  readonly #model: HfBpeModel;
  /** id -> token string as the decoder sees it. */
  readonly #tokens: (string | undefined)[];
  readonly #rawAdded?: AddedTokenMatcher;
  readonly #normAdded?: AddedTokenMatcher;
  readonly #normalize?: Normalizer;
  readonly #pre: PreTokenizer;
  readonly #decode: Decoder;
  readonly #cache = new Map<string, number[]>();
  readonly #cacheSize: number;
  /** Whether GPT-2's newline cut is safe here; found on first use. */
  #cuttable?: boolean;
  readonly #edgeSensitive: boolean;

  /**
   * Prefer {@link tokenizerFromJson}; this one takes the parsed file.
   *
   * @param json the parsed `tokenizer.json`
   * @param options file names for messages, tokens, cache size
   */
  constructor(json: JsonObject, options: HfTokenizerOptions = {}) {
    // Typed, so that TypeScript sees f.fail() end the flow.
    const f: JsonFields = new JsonFields(options.file ?? "tokenizer.json");
    this.name = options.name ?? "hf";
    this.#cacheSize = options.cacheSize ?? 200_000;
    this.#model = new HfBpeModel(f, f.object(json, "model", "model"));
    const added = parseAddedTokens(f, json);
    this.vocabSize = Math.max(this.#model.idSpace, ...added.map((t) => t.id + 1));
    this.#tokens = new Array(this.vocabSize);
    for (const [token, id] of this.#model.vocab) this.#tokens[id] = token;

    // Text stages.
    const normalizer = f.optionalObject(json, "normalizer", "normalizer");
    const norm = normalizer ? parseNormalizer(f, normalizer) : undefined;
    this.#normalize = norm?.normalize;
    this.#pre = parsePreTokenizer(f, f.optionalObject(json, "pre_tokenizer", "pre_tokenizer"));
    this.#decode = parseDecoder(f, f.optionalObject(json, "decoder", "decoder"));
    this.#edgeSensitive = (norm?.touchesEdges ?? false) || this.#pre.touchesEdges ||
      !this.#pre.regexSplit || added.some((t) => t.content.includes("\n"));

    // Added tokens: matched before normalization unless `normalized`, where
    // they are matched (and decoded) in their normalized form.
    const formOf = (t: AddedToken) =>
      t.normalized && this.#normalize ? this.#normalize(t.content) : t.content;
    for (const t of added) this.#tokens[t.id] = formOf(t);
    const raw = added.filter((t) => !t.normalized);
    const normed = added.filter((t) => t.normalized);
    if (raw.length > 0) this.#rawAdded = new AddedTokenMatcher(raw, formOf);
    if (normed.length > 0) this.#normAdded = new AddedTokenMatcher(normed, formOf);

    // Beginning and end of text: named by the options or the config, else found.
    const config = readConfig(options);
    const cf = new JsonFields(options.configFile ?? "tokenizer_config.json");
    const named = (key: "eos" | "bos"): number | undefined => {
      const [token, from, field] = options[key] !== undefined
        ? [options[key], new JsonFields("options"), key]
        : [configToken(cf, config, `${key}_token`), cf, `${key}_token`];
      if (token === undefined) return undefined;
      const id = this.tokenId(token);
      if (id === undefined) from.fail(field, `"${token}" is not a token of ${f.file}`);
      return id;
    };
    const found = (names: (string | undefined)[]): number | undefined => {
      for (const name of names) {
        const id = name === undefined ? undefined : this.tokenId(name);
        if (id !== undefined) return id;
      }
      return undefined;
    };
    const eot = named("eos") ?? found(EOS_GUESSES);
    if (eot === undefined) {
      f.fail(
        "added_tokens",
        `has no end-of-text token (none of ${EOS_GUESSES.join(", ")}); ` +
          `name one as eos_token in ${cf.file} beside it`,
      );
    }
    this.eotId = eot;
    this.bosId = named("bos") ?? found([templateBos(json), ...BOS_GUESSES]);
  }

  /**
   * The id of a token, added tokens first.
   *
   * @param token the token's text as the file spells it ("▁the", "Ġthe", "<s>")
   * @returns its id, or undefined
   */
  tokenId(token: string): number | undefined {
    return this.#rawAdded?.idOf(token) ?? this.#normAdded?.idOf(token) ??
      this.#model.vocab.get(token);
  }

  /**
   * Token ids of `text`. Added tokens in the text (`<s>`, `<|begin_of_text|>`)
   * become their ids, as the `tokenizers` crate does by default.
   *
   * @param text any string
   * @returns the ids, without a beginning-of-text id
   */
  encode(text: string): number[] {
    const out: number[] = [];
    const segments = this.#rawAdded ? this.#rawAdded.split(text) : [text];
    segments.forEach((segment, i) => {
      if (typeof segment === "number") {
        out.push(segment);
        return;
      }
      const normalized = this.#normalize ? this.#normalize(segment) : segment;
      const parts = this.#normAdded ? this.#normAdded.split(normalized) : [normalized];
      parts.forEach((part, j) => {
        if (typeof part === "number") out.push(part);
        else {
          for (const word of this.#pre.split([part], i === 0 && j === 0)) {
            this.#encodeWord(word, out);
          }
        }
      });
    });
    return out;
  }

  /**
   * Text from token ids, through the file's decoder. Special tokens decode to
   * their text (`</s>`); none is skipped.
   *
   * @param ids ids in [0, vocabSize)
   * @returns the text
   */
  decode(ids: ArrayLike<number>): string {
    const tokens: string[] = new Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const t = this.#tokens[ids[i]];
      if (t === undefined) {
        throw new RangeError(
          `${this.name}.decode: id ${ids[i]} is not a token (vocabulary [0, ${this.vocabSize}))`,
        );
      }
      tokens[i] = t;
    }
    return this.#decode(tokens).join("");
  }

  /**
   * GPT-2's newline cut ({@link safeCut}) where it keeps the ids of the whole:
   * no normalizer or pre-tokenizer step adds or strips text at a stretch's
   * edges, the pre-tokenizer splits by a regex, no added token holds a
   * newline, and a probe text encodes the same cut and whole. Elsewhere
   * (Llama 2's "▁" prefix) there is no cut.
   *
   * @param text the text
   * @param atLeast the earliest cut wanted
   * @returns the cut index, or -1
   */
  safeCut(text: string, atLeast: number): number {
    this.#cuttable ??= !this.#edgeSensitive && this.#probeCuts();
    return this.#cuttable ? safeCut(text, atLeast) : -1;
  }

  #probeCuts(): boolean {
    const probe = "The cat.\nIt's 12\n345 apples\n  x\n\ny\n.z é\nü 🙂\n-a\t\nb'\nS";
    const parts: number[] = [];
    for (let at = 0; at < probe.length;) {
      const cut = safeCut(probe, at + 1);
      const end = cut < 0 ? probe.length : cut;
      parts.push(...this.encode(probe.slice(at, end)));
      at = end;
    }
    const whole = this.encode(probe);
    return whole.length === parts.length && whole.every((id, i) => id === parts[i]);
  }

  /** Appends the ids of one pre-tokenized word. */
  #encodeWord(word: string, out: number[]): void {
    let ids = this.#cache.get(word);
    if (ids === undefined) {
      ids = this.#model.encodeWord(this.#pre.mapWord ? this.#pre.mapWord(word) : word);
      if (word.length <= MAX_CACHED_WORD) {
        if (this.#cache.size >= this.#cacheSize) this.#cache.clear();
        this.#cache.set(word, ids);
      }
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }
}

function parseAddedTokens(f: JsonFields, json: JsonObject): AddedToken[] {
  if (json.added_tokens === undefined || json.added_tokens === null) return [];
  return f.array(json, "added_tokens", "added_tokens").map((t, i) => {
    const field = `added_tokens[${i}]`;
    if (!isObject(t)) f.fail(field, "is not an object");
    const content = f.string(t, "content", `${field}.content`);
    if (content === "") f.fail(`${field}.content`, "is empty");
    const special = f.boolean(t, "special", `${field}.special`, false);
    return {
      id: tokenId(f, t, field),
      content,
      singleWord: f.boolean(t, "single_word", `${field}.single_word`, false),
      lstrip: f.boolean(t, "lstrip", `${field}.lstrip`, false),
      rstrip: f.boolean(t, "rstrip", `${field}.rstrip`, false),
      normalized: f.boolean(t, "normalized", `${field}.normalized`, !special),
    };
  });
}

/** The crate's `\w` and `\s` (Unicode word characters and White_Space). */
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const SPACE = /\p{White_Space}/u;

/** Finds added tokens in text: leftmost match first, the longest there. */
class AddedTokenMatcher {
  readonly #re: RegExp;
  readonly #byForm = new Map<string, AddedToken>();

  constructor(tokens: AddedToken[], formOf: (t: AddedToken) => string) {
    for (const t of tokens) this.#byForm.set(formOf(t), t);
    // Longest first: a regex alternation takes the first alternative that matches.
    const forms = [...this.#byForm.keys()].sort((a, b) => b.length - a.length);
    this.#re = new RegExp(forms.map(escapeRegex).join("|"), "gu");
  }

  idOf(form: string): number | undefined {
    return this.#byForm.get(form)?.id;
  }

  /** The text as stretches (strings, never empty) and added-token ids, in order. */
  split(s: string): (string | number)[] {
    const out: (string | number)[] = [];
    let done = 0;
    const re = this.#re;
    re.lastIndex = 0;
    for (let m = re.exec(s); m !== null; m = re.exec(s)) {
      const t = this.#byForm.get(m[0])!;
      let start = m.index;
      let stop = start + m[0].length;
      if (t.singleWord) {
        const wordBefore = start > 0 && WORD_CHAR.test(lastChar(s, start));
        const wordAfter = stop < s.length &&
          WORD_CHAR.test(String.fromCodePoint(s.codePointAt(stop)!));
        if (wordBefore || wordAfter) continue;
      }
      if (t.lstrip) { while (start > done && SPACE.test(s[start - 1])) start--; }
      if (t.rstrip) {
        while (stop < s.length && SPACE.test(s[stop])) stop++;
        re.lastIndex = stop;
      }
      if (start > done) out.push(s.slice(done, start));
      out.push(t.id);
      done = stop;
    }
    if (done < s.length || out.length === 0) out.push(s.slice(done));
    return out;
  }
}

function lastChar(s: string, end: number): string {
  const lo = s.charCodeAt(end - 1);
  return lo >= 0xdc00 && lo <= 0xdfff && end >= 2 ? s.slice(end - 2, end) : s[end - 1];
}

function readConfig(options: HfTokenizerOptions): JsonObject | undefined {
  const c = options.config;
  if (c === undefined) return undefined;
  if (typeof c !== "string") return c;
  return new JsonFields(options.configFile ?? "tokenizer_config.json").parse(c);
}

/** `bos_token` / `eos_token` of a config: a string, `{content}`, or null. */
function configToken(f: JsonFields, config: JsonObject | undefined, key: string) {
  if (config === undefined) return undefined;
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (isObject(v)) return f.string(v, "content", `${key}.content`);
  return f.fail(key, `is not a string or an object with "content" (got ${fmtValue(v)})`);
}

/** The special token a TemplateProcessing post-processor puts first, if any. */
function templateBos(json: JsonObject): string | undefined {
  const find = (pp: unknown): string | undefined => {
    if (!isObject(pp)) return undefined;
    if (pp.type === "Sequence" && Array.isArray(pp.processors)) {
      for (const p of pp.processors) {
        const found = find(p);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    if (pp.type !== "TemplateProcessing" || !Array.isArray(pp.single)) return undefined;
    const first = pp.single[0];
    const special = isObject(first) && isObject(first.SpecialToken)
      ? first.SpecialToken
      : undefined;
    return typeof special?.id === "string" ? special.id : undefined;
  };
  return find(json.post_processor);
}

/**
 * Builds a tokenizer from the text (or parsed form) of a `tokenizer.json`.
 *
 * @param json the file's text, or its parsed object
 * @param options names, `tokenizer_config.json`, bos/eos overrides, cache size
 * @returns the tokenizer
 * @throws {DenotronError} a one-line message naming the file and the field
 * @example
 * ```ts
 * import { tokenizerFromJson } from "./hf_tokenizer.ts";
 * try {
 *   tokenizerFromJson("{}", { file: "my/tokenizer.json" });
 * } catch (e) {
 *   (e as Error).message; // "my/tokenizer.json: model is missing"
 * }
 * ```
 */
export function tokenizerFromJson(
  json: string | JsonObject,
  options: HfTokenizerOptions = {},
): HfTokenizer {
  const f = new JsonFields(options.file ?? "tokenizer.json");
  const parsed = typeof json === "string" ? f.parse(json) : json;
  const name = options.name ?? (typeof json === "string" ? `hf-${fnv1a(json)}` : undefined);
  return new HfTokenizer(parsed, { ...options, name });
}

/**
 * Reads a `tokenizer.json` (or the directory holding one) and, when it is
 * there, the `tokenizer_config.json` beside it for `bos_token` and `eos_token`.
 *
 * @param path the file, or its directory
 * @param options names, bos/eos overrides, cache size
 * @returns the tokenizer, named "hf-DIRECTORY-HASH" unless `options.name` is given
 * @throws {DenotronError} a one-line message naming the file and the field
 */
export async function loadHfTokenizer(
  path: string,
  options: HfTokenizerOptions = {},
): Promise<HfTokenizer> {
  let file = path;
  try {
    if ((await Deno.stat(path)).isDirectory) file = `${path.replace(/\/+$/, "")}/tokenizer.json`;
  } catch (e) {
    throw new DenotronError(`cannot read tokenizer file ${path}: ${(e as Error).message}`);
  }
  let text: string;
  try {
    text = decodeUtf8(await Deno.readFile(file), file, "tokenizer.json is UTF-8 JSON");
  } catch (e) {
    if (e instanceof DenotronError) throw e;
    throw new DenotronError(`cannot read tokenizer file ${file}: ${(e as Error).message}`);
  }
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : ".";
  const configFile = `${dir}/tokenizer_config.json`;
  let config: string | undefined;
  try {
    config = decodeUtf8(await Deno.readFile(configFile), configFile, "it is UTF-8 JSON");
  } catch (e) {
    if (e instanceof DenotronError) throw e;
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new DenotronError(`cannot read ${configFile}: ${(e as Error).message}`);
    }
  }
  const base = (dir === "." ? Deno.cwd() : dir).split("/").filter((s) => s !== "").at(-1) ?? "";
  const name = `hf-${base.replace(/[^A-Za-z0-9._-]/g, "_")}-${fnv1a(text)}`;
  return tokenizerFromJson(text, { name, file, config, configFile, ...options });
}

/** FNV-1a of a string's UTF-16 units, as 8 hex digits: a cheap cache-key hash. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** An added token's id: an integer below the models' vocabulary limit. */
function tokenId(f: JsonFields, t: JsonObject, field: string): number {
  const id = f.count(t, "id", `${field}.id`);
  if (id >= MAX_TOKEN_ID) f.fail(`${field}.id`, `${id} is not below ${MAX_TOKEN_ID}`);
  return id;
}
