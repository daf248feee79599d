/**
 * A rule-based sentence splitter for `preprocess --split-sentences` (BERT data), in place
 * of the NLTK punkt model Megatron's preprocess_data.py loads.
 *
 * defines: ABBREVIATIONS, sentenceBreaks, splitSentences, streamSentences
 *
 * A sentence ends
 *
 * 1. after a run of `.`, `?` or `!` (with any closing quotes or brackets after it) that
 *    is followed by whitespace and then an upper-case letter, an opening quote or an
 *    opening bracket; or
 * 2. at a blank line (a paragraph break), whatever comes before it.
 *
 * Rule 1 does not apply after a single `.` that ends an abbreviation: a word of
 * {@link ABBREVIATIONS} ("Dr. Smith"), a single letter (the initial in "John F.
 * Kennedy") or a dotted acronym ("U.S. Army"). The price is that a sentence ending in one
 * of them ("... in the U.S. The next") runs on into the next sentence.
 *
 * @module
 */

/** Words (lower case, their final period included) after which a period ends no sentence. */
export const ABBREVIATIONS: ReadonlySet<string> = new Set([
  "mr.",
  "mrs.",
  "ms.",
  "dr.",
  "prof.",
  "sr.",
  "jr.",
  "st.",
  "mt.",
  "vs.",
  "etc.",
  "e.g.",
  "i.e.",
  "cf.",
  "no.",
  "fig.",
  "inc.",
  "ltd.",
  "co.",
  "gen.",
  "gov.",
  "sen.",
  "rep.",
  "rev.",
  "capt.",
  "col.",
  "lt.",
]);

/** A terminator run, its closers, the whitespace after it, and a look at what follows. */
const END_RE = /[.?!]+["'”’»)\]]*(?=\s+["'“‘«(\[]?\p{Lu}|\s+["'“‘«(\[])/gu;
const PARAGRAPH_RE = /\n[^\S\n]*\n/g;
const INITIAL_OR_ACRONYM = /^(?:\p{L}\.)*\p{L}$/u;

/**
 * Where the sentences of `text` end: offsets just after each sentence's terminator (or
 * at the start of a blank line), ascending, the end of the text not included.
 *
 * @param text any text
 * @returns the cut offsets, each in (0, text.length)
 * @example
 * ```ts
 * import { sentenceBreaks } from "./sentences.ts";
 * sentenceBreaks("Hi there. Dr. Who? Yes."); // [9, 18]
 * ```
 */
export function sentenceBreaks(text: string): number[] {
  const cuts: number[] = [];
  for (const m of text.matchAll(END_RE)) {
    if (m[0] === "." && endsAbbreviation(text, m.index)) continue;
    cuts.push(m.index + m[0].length);
  }
  for (const m of text.matchAll(PARAGRAPH_RE)) cuts.push(m.index);
  return [...new Set(cuts)].filter((c) => c > 0).sort((a, b) => a - b);
}

/** Whether the word ending at the period at `dot` is an abbreviation or an initial. */
function endsAbbreviation(text: string, dot: number): boolean {
  let start = dot;
  while (start > 0 && !/\s/.test(text[start - 1])) start--;
  const word = text.slice(start, dot).replace(/^["'“‘«(\[]+/, "");
  return ABBREVIATIONS.has(word.toLowerCase() + ".") || INITIAL_OR_ACRONYM.test(word);
}

/**
 * Splits text into sentences by the rules of this module.
 *
 * @param text any text
 * @returns the sentences, trimmed, none empty
 * @example
 * ```ts
 * import { splitSentences } from "./sentences.ts";
 * splitSentences("Mr. Smith went. Did he? Yes!"); // ["Mr. Smith went.", "Did he?", "Yes!"]
 * ```
 */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  let at = 0;
  for (const cut of [...sentenceBreaks(text), text.length]) {
    const s = text.slice(at, cut).trim();
    if (s !== "") out.push(s);
    at = cut;
  }
  return out;
}

/**
 * Sentences of a text that arrives in pieces: the text after the last break of what has
 * arrived is held back until a later piece ends it, so a sentence cut by a piece boundary
 * comes out whole.
 *
 * @param pieces consecutive pieces of one text
 * @param maxHeld characters held back at most; a longer unbroken run is given out as is
 * @default maxHeld 1 << 22
 * @returns the sentences in order, as {@link splitSentences} gives them for the whole text
 *   (unless a run passed `maxHeld`)
 */
export async function* streamSentences(
  pieces: AsyncIterable<string>,
  maxHeld = 1 << 22,
): AsyncGenerator<string> {
  let pending = "";
  for await (const piece of pieces) {
    pending += piece;
    let at = 0;
    for (const cut of sentenceBreaks(pending)) {
      const s = pending.slice(at, cut).trim();
      if (s !== "") yield s;
      at = cut;
    }
    pending = pending.slice(at);
    if (pending.length > maxHeld) {
      const s = pending.trim();
      if (s !== "") yield s;
      pending = "";
    }
  }
  const s = pending.trim();
  if (s !== "") yield s;
}
