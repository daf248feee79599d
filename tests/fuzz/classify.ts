/**
 * What happened to one fuzz input, and whether that is acceptable.
 *
 * defines: Outcome, OUTCOMES, FAILING, Verdict, MAX_MESSAGE, classifyError, oneLine, LINE_PREFIX,
 *          ChildLine
 *
 * A reader may accept an input, or refuse it with a clean error: one line, at most
 * {@link MAX_MESSAGE} characters, naming what the input names (its file or
 * directory; for a command line, "command line" and a flag or key). Anything else is
 * BAD: a TypeError, RangeError or other engine error escaping our code, a message
 * that names neither file nor field, one spread over several lines or echoing a
 * megabyte of input. Crashes (the subprocess died) and hangs (it ran past the time
 * limit) are decided by the runner, not here.
 *
 * @module
 */

/**
 * The outcomes, in table order. "known": a BAD outcome listed in tests/fuzz/known.ts
 * (decided by the runner).
 */
export type Outcome = "accepted" | "clean" | "known" | "bad" | "crash" | "hang";

/** Every outcome, in table order. */
export const OUTCOMES: readonly Outcome[] = ["accepted", "clean", "known", "bad", "crash", "hang"];

/** Outcomes that fail the suite. */
export const FAILING: readonly Outcome[] = ["bad", "crash", "hang"];

/** An outcome with the message (or reason) behind it. */
export interface Verdict {
  /** What happened. */
  outcome: Outcome;
  /** The error's name and message (first line, shortened), or why it is BAD. */
  detail: string;
}

/** Longest message accepted as a sentence. */
export const MAX_MESSAGE = 4000;

/** Engine errors that mean our code did not check something. */
const ENGINE_ERRORS = new Set([
  "TypeError",
  "RangeError",
  "SyntaxError",
  "ReferenceError",
  "EvalError",
  "URIError",
]);

/**
 * A message cut to one short line, for tables and reports.
 *
 * @param text any text
 * @param max characters kept
 * @returns the first line, at most `max` characters
 */
export function oneLine(text: string, max = 240): string {
  const first = text.split("\n")[0];
  return first.length > max ? first.slice(0, max) + `… (${text.length} chars)` : first;
}

/**
 * Classifies an error thrown by a reader.
 *
 * @param e what was thrown
 * @param mustName groups of strings; the message must contain one string of every group
 * @returns "clean" or "bad", with the message
 */
export function classifyError(e: unknown, mustName: readonly (readonly string[])[]): Verdict {
  if (!(e instanceof Error)) {
    return { outcome: "bad", detail: `threw a non-Error: ${oneLine(String(e))}` };
  }
  const shown = `${e.name}: ${oneLine(e.message)}`;
  if (ENGINE_ERRORS.has(e.name)) return { outcome: "bad", detail: `engine error: ${shown}` };
  if (e.message.includes("\n")) return { outcome: "bad", detail: `several lines: ${shown}` };
  if (e.message.length > MAX_MESSAGE) {
    return { outcome: "bad", detail: `${e.message.length}-character message: ${shown}` };
  }
  for (const group of mustName) {
    if (!group.some((s) => e.message.includes(s))) {
      const names = group.slice(0, 3).map((s) => JSON.stringify(s)).join(", ");
      return {
        outcome: "bad",
        detail: `names none of ${names}${group.length > 3 ? ", ..." : ""}: ${shown}`,
      };
    }
  }
  return { outcome: "clean", detail: shown };
}

/** The prefix of every line a fuzz subprocess prints for the runner. */
export const LINE_PREFIX = "@@fuzz ";

/** What a fuzz subprocess prints for one input. */
export interface ChildLine {
  /** The input's number. */
  i: number;
  /** Its outcome. */
  o: Outcome;
  /** The message, for anything but "accepted". */
  d?: string;
  /** The mutations, for a BAD outcome. */
  w?: string;
}
