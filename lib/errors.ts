/**
 * Errors raised at the public API before any native call. Messages are sentences that
 * name the op, the argument and the shapes involved.
 *
 * @module
 */

/** A wrong shape, dtype, device or value given to a Denotron op or module. */
export class DenotronError extends Error {
  /** A sentence naming the bad value and the way out. */
  constructor(message: string) {
    super(message);
    this.name = "DenotronError";
  }
}

/** Formats a shape as `[2, 3, 4]`. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * A value as it appears in an error message: JSON, cut to `max` characters, so a bad
 * field is shown without echoing a megabyte of input (and a deeply nested value without
 * recursing).
 *
 * @param value any value
 * @param max characters kept
 * @default max 60
 * @returns the text
 * @example
 * ```ts
 * import { fmtValue } from "./errors.ts";
 * fmtValue([1, 2]); // "[1,2]"
 * fmtValue("x".repeat(100), 8); // '"xxxxxxx… (102 characters)'
 * ```
 */
export function fmtValue(value: unknown, max = 60): string {
  let text: string;
  try {
    text = typeof value === "number" ? String(value) : JSON.stringify(value) ?? String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}

/**
 * The message of a caught error as one short line, for "(...)" after our own sentence:
 * JSON.parse quotes the text around a syntax error, line breaks included.
 *
 * @param e what was caught
 * @param max characters kept
 * @default max 200
 * @returns the message, line breaks as spaces, cut to `max` characters
 */
export function causeText(e: unknown, max = 200): string {
  const text = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, " ");
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
