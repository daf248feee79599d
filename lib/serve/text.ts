/**
 * defines: TextStream — generated token ids to text pieces that are safe to send: never
 * half a UTF-8 character, never the start of what may become a stop string, and nothing
 * from a stop string on.
 *
 * @module
 */
import type { Tokenizer } from "../data/tokenizer.ts";

/**
 * The text of one sequence as its tokens arrive.
 *
 * @example
 * ```ts
 * import { ByteTokenizer } from "../data/tokenizer.ts";
 * import { TextStream } from "./text.ts";
 * const s = new TextStream(new ByteTokenizer(), ["\n\n"]);
 * const ids = [...new TextEncoder().encode("ab\n\ncd")];
 * console.log(ids.map((t) => s.push(t)).join("") + s.end()); // "ab"
 * console.log(s.stopped); // true
 * ```
 */
export class TextStream {
  readonly #tokenizer: Tokenizer;
  readonly #stops: readonly string[];
  readonly #hold: number;
  readonly #ids: number[] = [];
  #text = "";
  #sent = 0;
  /** Whether a stop string was reached (the sequence should end). */
  stopped = false;

  /**
   * @param tokenizer decodes the ids
   * @param stops texts that end the sequence (not included in its text)
   */
  constructor(tokenizer: Tokenizer, stops: readonly string[] = []) {
    this.#tokenizer = tokenizer;
    this.#stops = stops;
    this.#hold = Math.max(0, ...stops.map((s) => s.length - 1));
  }

  /** The text so far, up to a stop string when one was reached. */
  get text(): string {
    return this.#text;
  }

  /**
   * Adds a token.
   *
   * @param token the new id
   * @returns the new text that may be sent now (possibly empty)
   */
  push(token: number): string {
    if (this.stopped) return "";
    this.#ids.push(token);
    const text = this.#tokenizer.decode(this.#ids);
    // A token can end inside a multi-byte character: wait for the next one.
    if (text.endsWith("\uFFFD")) return "";
    let cut = -1;
    for (const s of this.#stops) {
      const at = text.indexOf(s, Math.max(0, this.#sent - s.length));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.#text = text.slice(0, cut);
      return this.#take(this.#text.length);
    }
    this.#text = text;
    return this.#take(text.length - this.#hold);
  }

  /**
   * Ends the stream.
   *
   * @returns what was held back (a partial character decodes to U+FFFD)
   */
  end(): string {
    if (!this.stopped && this.#ids.length > 0) {
      this.#text = this.#tokenizer.decode(this.#ids);
    }
    return this.#take(this.#text.length);
  }

  #take(upTo: number): string {
    if (upTo <= this.#sent) return "";
    const piece = this.#text.slice(this.#sent, upTo);
    this.#sent = upTo;
    return piece;
  }
}
