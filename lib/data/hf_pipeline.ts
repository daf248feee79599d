/**
 * The text stages of a Hugging Face `tokenizer.json`: normalizer,
 * pre-tokenizer and decoder, each read from its JSON into a plain function.
 *
 * defines: Normalizer, PreTokenizer, Decoder, parseNormalizer, parsePreTokenizer,
 *          parseDecoder, byteLevelWord, escapeRegex
 *
 * The kinds read are those of the Llama, Mistral, TinyLlama and SmolLM files:
 *
 * - normalizers: `Sequence`, `Prepend`, `Replace`, `NFC`/`NFD`/`NFKC`/`NFKD`,
 *   `Lowercase`, `Strip`;
 * - pre-tokenizers: `Sequence`, `Split` (every delimiter behaviour, `invert`),
 *   `ByteLevel`, `Metaspace`, `Digits`;
 * - decoders: `Sequence`, `ByteLevel`, `Metaspace`, `Replace`, `ByteFallback`,
 *   `Fuse`, `Strip`.
 *
 * Any other kind is refused with the field that names it. Each behaves as the
 * `tokenizers` crate documents and implements it; `Split` regexes are taken as
 * JavaScript regexes with the `u` flag (the crate uses Oniguruma; the patterns
 * these files ship mean the same in both).
 *
 * @module
 */

import { gpt2ByteToUnicode } from "./tokenizer.ts";
import { isObject, type JsonFields, type JsonObject } from "./hf_json.ts";

/** Normalized text of one segment (a stretch between added tokens). */
export type Normalizer = (text: string) => string;

/** A pre-tokenizer: a segment's text to its words, and what it means for cuts. */
export interface PreTokenizer {
  /**
   * Words of one normalized segment.
   *
   * @param pieces the text so far, in pieces
   * @param atStart whether `pieces[0]` starts at offset 0 of the encoded text
   */
  split(pieces: string[], atStart: boolean): string[];
  /**
   * A last per-word map (ByteLevel's bytes-to-characters), kept apart so
   * that the word cache is keyed by the text before it.
   */
  mapWord?: (word: string) => string;
  /** Whether some step adds text at a segment's start (a prefix space or ▁) or strips its edges. */
  touchesEdges: boolean;
  /** Whether some step cuts the text by a regex (ByteLevel's or a Split). */
  regexSplit: boolean;
}

/** A decoder: token strings to strings, joined by the caller. */
export type Decoder = (tokens: string[]) => string[];

/** What a field's `type` says, or the failure naming it. */
function kind(f: JsonFields, o: JsonObject, field: string, known: string[]): string {
  const type = f.string(o, "type", `${field}.type`);
  if (!known.includes(type)) {
    f.fail(`${field}.type`, `"${type}" is not supported (supported: ${known.join(", ")})`);
  }
  return type;
}

/** Items of a Sequence's list field, each an object. */
function items(f: JsonFields, o: JsonObject, key: string, field: string): JsonObject[] {
  return f.array(o, key, `${field}.${key}`).map((item, i) => {
    if (!isObject(item)) f.fail(`${field}.${key}[${i}]`, "is not an object");
    return item;
  });
}

/** A `pattern` field: `{String: s}` (literal) or `{Regex: r}`, as a global regex. */
function pattern(f: JsonFields, o: JsonObject, field: string): RegExp {
  const p = f.object(o, "pattern", `${field}.pattern`);
  if (typeof p.String === "string") return new RegExp(escapeRegex(p.String), "gu");
  if (typeof p.Regex === "string") {
    try {
      return new RegExp(p.Regex, "gu");
    } catch (e) {
      f.fail(
        `${field}.pattern.Regex`,
        `is not a regex JavaScript accepts (${(e as Error).message})`,
      );
    }
  }
  return f.fail(`${field}.pattern`, 'has neither a "String" nor a "Regex" string');
}

/**
 * A literal for a `u`-mode regex (where escaping anything but syntax characters is an error).
 *
 * @param s the text
 * @returns a regex source matching exactly `s`
 */
export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The one-character `replacement`/`content` field of Metaspace and Strip. */
function char(f: JsonFields, o: JsonObject, key: string, field: string): string {
  const c = f.string(o, key, `${field}.${key}`);
  if ([...c].length !== 1) f.fail(`${field}.${key}`, `is not one character (got "${c}")`);
  return c;
}

const NORMALIZERS = [
  "Sequence",
  "Prepend",
  "Replace",
  "NFC",
  "NFD",
  "NFKC",
  "NFKD",
  "Lowercase",
  "Strip",
];

/**
 * Reads a `normalizer` field.
 *
 * @param f the file's field readers
 * @param o the normalizer's JSON
 * @param field its path, for messages
 * @returns the normalizer, and whether it adds text at a segment's start or strips its edges
 */
export function parseNormalizer(
  f: JsonFields,
  o: JsonObject,
  field = "normalizer",
): { normalize: Normalizer; touchesEdges: boolean } {
  switch (kind(f, o, field, NORMALIZERS)) {
    case "Sequence": {
      const steps = items(f, o, "normalizers", field).map((n, i) =>
        parseNormalizer(f, n, `${field}.normalizers[${i}]`)
      );
      return {
        normalize: (s) => steps.reduce((acc, step) => step.normalize(acc), s),
        touchesEdges: steps.some((s) => s.touchesEdges),
      };
    }
    case "Prepend": {
      const prefix = f.string(o, "prepend", `${field}.prepend`);
      return { normalize: (s) => s === "" ? s : prefix + s, touchesEdges: true };
    }
    case "Replace": {
      const re = pattern(f, o, field);
      const content = f.string(o, "content", `${field}.content`);
      return { normalize: (s) => s.replace(re, () => content), touchesEdges: false };
    }
    case "Lowercase":
      return { normalize: (s) => s.toLowerCase(), touchesEdges: false };
    case "Strip": {
      const left = f.boolean(o, "strip_left", `${field}.strip_left`, true);
      const right = f.boolean(o, "strip_right", `${field}.strip_right`, true);
      const strip = (s: string) => {
        const a = left ? s.trimStart() : s;
        return right ? a.trimEnd() : a;
      };
      return { normalize: strip, touchesEdges: true };
    }
    default: {
      const form = o.type as "NFC" | "NFD" | "NFKC" | "NFKD";
      return { normalize: (s) => s.normalize(form), touchesEdges: false };
    }
  }
}

/** GPT-2's pre-tokenizer regex, which ByteLevel applies when `use_regex` is set. */
const BYTE_LEVEL_SPLIT =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

// Filled on first use: tokenizer.ts, which defines the map, imports this module.
let BYTE_TO_CHAR: string[] = [];
let CHAR_TO_BYTE = new Map<string, number>();
function byteMaps(): void {
  if (BYTE_TO_CHAR.length > 0) return;
  BYTE_TO_CHAR = gpt2ByteToUnicode();
  CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));
}

/**
 * A word's UTF-8 bytes spelled with GPT-2's byte characters, as ByteLevel
 * does before the model sees it.
 *
 * @param word the word
 * @returns one character per byte
 * @example
 * ```ts
 * import { byteLevelWord } from "./hf_pipeline.ts";
 * byteLevelWord(" é"); // "ĠÃ©"
 * ```
 */
export function byteLevelWord(word: string): string {
  byteMaps();
  let out = "";
  for (const ch of word) {
    let cp = ch.codePointAt(0)!;
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; // a lone surrogate, as TextEncoder does
    if (cp < 0x80) out += BYTE_TO_CHAR[cp];
    else if (cp < 0x800) out += BYTE_TO_CHAR[0xc0 | (cp >> 6)] + BYTE_TO_CHAR[0x80 | (cp & 63)];
    else if (cp < 0x10000) {
      out += BYTE_TO_CHAR[0xe0 | (cp >> 12)] + BYTE_TO_CHAR[0x80 | ((cp >> 6) & 63)] +
        BYTE_TO_CHAR[0x80 | (cp & 63)];
    } else {
      out += BYTE_TO_CHAR[0xf0 | (cp >> 18)] + BYTE_TO_CHAR[0x80 | ((cp >> 12) & 63)] +
        BYTE_TO_CHAR[0x80 | ((cp >> 6) & 63)] + BYTE_TO_CHAR[0x80 | (cp & 63)];
    }
  }
  return out;
}

type Behavior = "Removed" | "Isolated" | "MergedWithPrevious" | "MergedWithNext" | "Contiguous";
const BEHAVIORS: Behavior[] = [
  "Removed",
  "Isolated",
  "MergedWithPrevious",
  "MergedWithNext",
  "Contiguous",
];

/**
 * Splits `s` by the matches of `re` with the crate's delimiter behaviours
 * ("the-final--countdown" on "-": Removed: the, final, countdown; Isolated:
 * the, -, final, -, -, countdown; MergedWithPrevious: the-, final-, -,
 * countdown; MergedWithNext: the, -final, -, -countdown; Contiguous: the, -,
 * final, --, countdown). Empty pieces are dropped.
 */
function splitBy(s: string, re: RegExp, behavior: Behavior, invert: boolean, out: string[]) {
  // Spans [start, end, isMatch] covering s; empty matches are skipped.
  const spans: [number, number, boolean][] = [];
  let last = 0;
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    if (m.index > last) spans.push([last, m.index, invert]);
    spans.push([m.index, m.index + m[0].length, !invert]);
    last = m.index + m[0].length;
  }
  if (last < s.length) spans.push([last, s.length, invert]);
  const kept: [number, number][] = [];
  if (behavior === "MergedWithNext") {
    for (let i = spans.length - 1, prevMatch = false; i >= 0; i--) {
      const [a, b, isMatch] = spans[i];
      if (isMatch && !prevMatch && kept.length > 0) kept[kept.length - 1][0] = a;
      else kept.push([a, b]);
      prevMatch = isMatch;
    }
    kept.reverse();
  } else {
    let prevMatch = false;
    for (const [a, b, isMatch] of spans) {
      if (behavior === "Removed" && isMatch) continue;
      const merge = kept.length > 0 &&
        ((behavior === "MergedWithPrevious" && isMatch && !prevMatch) ||
          (behavior === "Contiguous" && isMatch === prevMatch));
      if (merge) kept[kept.length - 1][1] = b;
      else kept.push([a, b]);
      prevMatch = isMatch;
    }
  }
  for (const [a, b] of kept) if (b > a) out.push(s.slice(a, b));
}

type Step = (pieces: string[], atStart: boolean) => string[];

/** A step that splits every piece by a regex. */
function regexStep(re: RegExp, behavior: Behavior, invert = false): Step {
  return (pieces) => {
    const out: string[] = [];
    for (const p of pieces) splitBy(p, re, behavior, invert, out);
    return out;
  };
}

const PRE_TOKENIZERS = ["Sequence", "Split", "ByteLevel", "Metaspace", "Digits"];

/** One pre-tokenizer: its steps, and the last ByteLevel's map if it ends the chain. */
interface Parsed {
  steps: Step[];
  mapWord?: (word: string) => string;
  touchesEdges: boolean;
  regexSplit: boolean;
}

function parseSteps(f: JsonFields, o: JsonObject, field: string): Parsed {
  switch (kind(f, o, field, PRE_TOKENIZERS)) {
    case "Sequence": {
      const parts = items(f, o, "pretokenizers", field).map((p, i) =>
        parseSteps(f, p, `${field}.pretokenizers[${i}]`)
      );
      const steps: Step[] = [];
      parts.forEach((p, i) => {
        steps.push(...p.steps);
        // A ByteLevel map that is not last must run where it stands.
        if (p.mapWord && i < parts.length - 1) steps.push(mapStep(p.mapWord));
      });
      return {
        steps,
        mapWord: parts.at(-1)?.mapWord,
        touchesEdges: parts.some((p) => p.touchesEdges),
        regexSplit: parts.some((p) => p.regexSplit),
      };
    }
    case "Split": {
      const behavior = f.string(o, "behavior", `${field}.behavior`) as Behavior;
      if (!BEHAVIORS.includes(behavior)) {
        f.fail(`${field}.behavior`, `"${behavior}" is not one of ${BEHAVIORS.join(", ")}`);
      }
      const invert = f.boolean(o, "invert", `${field}.invert`, false);
      return {
        steps: [regexStep(pattern(f, o, field), behavior, invert)],
        touchesEdges: false,
        regexSplit: true,
      };
    }
    case "ByteLevel": {
      const prefix = f.boolean(o, "add_prefix_space", `${field}.add_prefix_space`, true);
      const useRegex = f.boolean(o, "use_regex", `${field}.use_regex`, true);
      const steps: Step[] = [];
      if (prefix) steps.push((ps) => ps.map((p) => p.startsWith(" ") ? p : " " + p));
      if (useRegex) steps.push(regexStep(BYTE_LEVEL_SPLIT, "Isolated"));
      return { steps, mapWord: byteLevelWord, touchesEdges: prefix, regexSplit: useRegex };
    }
    case "Metaspace": {
      const rep = char(f, o, "replacement", field);
      const scheme = prependScheme(f, o, field);
      const split = f.boolean(o, "split", `${field}.split`, true);
      const sep = new RegExp(escapeRegex(rep), "gu");
      const step: Step = (pieces, atStart) => {
        const out: string[] = [];
        pieces.forEach((p, i) => {
          let s = p.replaceAll(" ", rep);
          const prepend = scheme === "always" || (scheme === "first" && atStart && i === 0);
          if (prepend && !s.startsWith(rep)) s = rep + s;
          if (split) splitBy(s, sep, "MergedWithNext", false, out);
          else if (s !== "") out.push(s);
        });
        return out;
      };
      return { steps: [step], touchesEdges: scheme !== "never", regexSplit: false };
    }
    default: { // Digits
      const each = f.boolean(o, "individual_digits", `${field}.individual_digits`, false);
      return {
        steps: [regexStep(/\p{N}/gu, each ? "Isolated" : "Contiguous")],
        touchesEdges: false,
        regexSplit: true,
      };
    }
  }
}

function mapStep(map: (w: string) => string): Step {
  return (pieces) => pieces.map(map);
}

/** Metaspace's `prepend_scheme`, or the older `add_prefix_space` it replaced. */
function prependScheme(f: JsonFields, o: JsonObject, field: string): "always" | "first" | "never" {
  const scheme = f.optionalString(o, "prepend_scheme", `${field}.prepend_scheme`);
  if (scheme === undefined) {
    return f.boolean(o, "add_prefix_space", `${field}.add_prefix_space`, true) ? "always" : "never";
  }
  if (scheme !== "always" && scheme !== "first" && scheme !== "never") {
    f.fail(`${field}.prepend_scheme`, `"${scheme}" is not one of always, first, never`);
  }
  return scheme;
}

/**
 * Reads a `pre_tokenizer` field; `undefined` (null in the file) keeps each
 * segment whole.
 *
 * @param f the file's field readers
 * @param o the pre-tokenizer's JSON, or undefined
 * @returns the pre-tokenizer
 */
export function parsePreTokenizer(f: JsonFields, o: JsonObject | undefined): PreTokenizer {
  if (o === undefined) {
    return { split: (ps) => ps.filter((p) => p !== ""), touchesEdges: false, regexSplit: false };
  }
  const { steps, mapWord, touchesEdges, regexSplit } = parseSteps(f, o, "pre_tokenizer");
  return {
    split: (pieces, atStart) => {
      let ps = pieces.filter((p) => p !== "");
      for (const step of steps) ps = step(ps, atStart && ps.length > 0);
      return ps;
    },
    mapWord,
    touchesEdges,
    regexSplit,
  };
}

const DECODERS = ["Sequence", "ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip"];

const utf8 = new TextDecoder("utf-8");
const utf8Encoder = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a `decoder` field; `undefined` (null in the file) joins tokens with
 * spaces, as the crate does.
 *
 * @param f the file's field readers
 * @param o the decoder's JSON, or undefined
 * @param field its path, for messages
 * @returns the decoder
 */
export function parseDecoder(f: JsonFields, o: JsonObject | undefined, field = "decoder"): Decoder {
  if (o === undefined) return (tokens) => [tokens.join(" ")];
  switch (kind(f, o, field, DECODERS)) {
    case "Sequence": {
      const steps = items(f, o, "decoders", field).map((d, i) =>
        parseDecoder(f, d, `${field}.decoders[${i}]`)
      );
      return (tokens) => steps.reduce((acc, step) => step(acc), tokens);
    }
    case "ByteLevel":
      // Byte characters back to bytes; a token with any other character
      // (an added token such as "<|begin_of_text|>" may have one) gives its UTF-8.
      byteMaps();
      return (tokens) => {
        const bytes: number[] = [];
        for (const t of tokens) {
          const mapped = Array.from(t, (c) => CHAR_TO_BYTE.get(c));
          if (mapped.every((b) => b !== undefined)) bytes.push(...(mapped as number[]));
          else bytes.push(...utf8Encoder.encode(t));
        }
        return [utf8.decode(new Uint8Array(bytes))];
      };
    case "Metaspace": {
      const rep = char(f, o, "replacement", field);
      const strip = prependScheme(f, o, field) !== "never";
      // The crate drops every replacement character of the first token, not just a leading one.
      return (tokens) => tokens.map((t, i) => t.replaceAll(rep, i === 0 && strip ? "" : " "));
    }
    case "Replace": {
      const re = pattern(f, o, field);
      const content = f.string(o, "content", `${field}.content`);
      return (tokens) => tokens.map((t) => t.replace(re, () => content));
    }
    case "ByteFallback":
      return byteFallback;
    case "Fuse":
      return (tokens) => [tokens.join("")];
    default: { // Strip
      const c = char(f, o, "content", field);
      const start = f.count(o, "start", `${field}.start`, 0);
      const stop = f.count(o, "stop", `${field}.stop`, 0);
      return (tokens) =>
        tokens.map((t) => {
          const chars = [...t];
          let a = 0;
          while (a < start && a < chars.length && chars[a] === c) a++;
          let b = chars.length;
          while (chars.length - b < stop && b > a && chars[b - 1] === c) b--;
          return chars.slice(a, b).join("");
        });
    }
  }
}

/**
 * Runs of `<0xNN>` tokens become their UTF-8 text; a run that is not valid
 * UTF-8 becomes one U+FFFD per byte, as the crate does.
 */
function byteFallback(tokens: string[]): string[] {
  const out: string[] = [];
  let run: number[] = [];
  const flush = () => {
    if (run.length === 0) return;
    try {
      out.push(utf8Strict.decode(new Uint8Array(run)));
    } catch {
      out.push(...run.map(() => "\ufffd"));
    }
    run = [];
  };
  for (const t of tokens) {
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
    if (m) run.push(parseInt(m[1], 16));
    else {
      flush();
      out.push(t);
    }
  }
  flush();
  return out;
}
