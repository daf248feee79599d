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
