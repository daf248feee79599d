/**
 * BAD outcomes already reported against files this suite's authors could not change
 * at the time (each owned by work in progress elsewhere). The runner counts a BAD
 * outcome that one of these matches as "known" instead of "bad", so the suite fails
 * on anything new while these stay visible in the table. When a fix lands, delete
 * its entry: `deno task fuzz` then names any entry that matched nothing.
 *
 * defines: KnownDefect, KNOWN_DEFECTS, knownDefect
 *
 * @module
 */

/** One reported defect. */
export interface KnownDefect {
  /** The readers that find it. */
  readers: readonly string[];
  /** Matches the BAD detail (as the child prints it: reason, then the message). */
  pattern: RegExp;
  /** Where the fix belongs. */
  file: string;
  /** What is wrong, and an input that shows it. */
  note: string;
}

/** The defects, by reader. */
export const KNOWN_DEFECTS: readonly KnownDefect[] = [];

/**
 * The known defect a BAD outcome is, if any.
 *
 * @param reader the reader
 * @param detail the BAD detail
 * @returns the entry, or undefined for a new defect
 */
export function knownDefect(reader: string, detail: string): KnownDefect | undefined {
  return KNOWN_DEFECTS.find((k) => k.readers.includes(reader) && k.pattern.test(detail));
}
