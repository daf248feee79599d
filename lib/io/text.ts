/**
 * defines: decodeUtf8 — the text of a file that must be UTF-8 (vocabularies, JSON),
 * refused with the file and line when it is not, instead of read leniently (bad bytes as
 * U+FFFD: a token no text matches, loaded quietly). transformers opens these files as
 * UTF-8 and refuses other bytes too.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";

const strict = new TextDecoder("utf-8", { fatal: true });

/**
 * `bytes` as UTF-8 text.
 *
 * @param bytes the file's contents
 * @param file the file, for the message
 * @param what what the file is, for the message (e.g. "a vocab.txt is UTF-8 text, one token
 *   per line")
 * @returns the text (a leading byte-order mark dropped, as Deno.readTextFile does)
 * @throws {DenotronError} `${file}: line N is not valid UTF-8; ${what}`
 * @example
 * ```ts
 * import { decodeUtf8 } from "./text.ts";
 * try {
 *   decodeUtf8(Uint8Array.of(0x61, 0x0a, 0xe9), "v.txt", "a vocabulary is UTF-8");
 * } catch (e) {
 *   console.log((e as Error).message); // v.txt: line 2 is not valid UTF-8; a vocabulary is UTF-8
 * }
 * ```
 */
export function decodeUtf8(bytes: Uint8Array, file: string, what: string): string {
  try {
    return strict.decode(bytes);
  } catch {
    let line = 1;
    for (let start = 0; start < bytes.length; line++) {
      const end = bytes.indexOf(0x0a, start);
      const stop = end < 0 ? bytes.length : end;
      try {
        strict.decode(bytes.subarray(start, stop));
      } catch {
        break;
      }
      start = stop + 1;
    }
    throw new DenotronError(`${file}: line ${line} is not valid UTF-8; ${what}`);
  }
}
