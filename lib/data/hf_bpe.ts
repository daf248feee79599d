/**
 * The `model` of a Hugging Face `tokenizer.json` whose `type` is "BPE".
 *
 * defines: HfBpeModel
 *
 * A word is spelled with the vocabulary's characters; a character missing
 * from it becomes its UTF-8 bytes as `<0xNN>` tokens when `byte_fallback` is
 * set (Llama 2), else `unk_token` (consecutive ones fused into one with
 * `fuse_unk`), else nothing. The symbols are then merged by rank
 * ({@link BpeMerges}). With `ignore_merges` (Llama 3) a word that is itself in
 * the vocabulary is taken whole. This is the `tokenizers` crate's
 * `BPE::merge_word`, quirks included.
 *
 * @module
 */

import { fmtValue } from "../errors.ts";
import { BpeMerges } from "./bpe.ts";
import type { JsonFields, JsonObject } from "./hf_json.ts";

/** One more than the largest token id a vocabulary may use (the models' limit, 2^24). */
export const MAX_TOKEN_ID = 2 ** 24;

const utf8 = new TextEncoder();

/**
 * A BPE model read from its JSON.
 *
 * @example
 * ```ts
 * import { HfBpeModel } from "./hf_bpe.ts";
 * import { JsonFields } from "./hf_json.ts";
 * const m = new HfBpeModel(new JsonFields("tokenizer.json"), {
 *   type: "BPE",
 *   vocab: { a: 0, b: 1, ab: 2 },
 *   merges: [["a", "b"]],
 * });
 * m.encodeWord("abba"); // [2, 1, 0]
 * ```
 */
export class HfBpeModel {
  /** token -> id. */
  readonly vocab = new Map<string, number>();
  /** One more than the largest id of the vocabulary. */
  readonly idSpace: number;
  readonly #merges: BpeMerges;
  /** byte -> id of its `<0xNN>` token, -1 when missing; undefined without byte fallback. */
  readonly #byteIds?: Int32Array;
  readonly #unkId?: number;
  readonly #fuseUnk: boolean;
  readonly #ignoreMerges: boolean;

  /**
   * @param f the file's field readers (for messages)
   * @param model the `model` object
   */
  constructor(f: JsonFields, model: JsonObject) {
    const type = f.optionalString(model, "type", "model.type") ?? "BPE";
    if (type !== "BPE") {
      f.fail("model.type", `"${type}" is not supported (only "BPE" models are read)`);
    }
    for (const key of ["continuing_subword_prefix", "end_of_word_suffix"]) {
      const v = f.optionalString(model, key, `model.${key}`);
      if (v) f.fail(`model.${key}`, `"${v}" is not supported (Llama-family files have none)`);
    }
    const dropout = model.dropout;
    if (dropout !== undefined && dropout !== null && dropout !== 0) {
      f.fail("model.dropout", `${fmtValue(dropout)} is not supported (it is for training)`);
    }

    let maxId = -1;
    for (const [token, id] of Object.entries(f.object(model, "vocab", "model.vocab"))) {
      // ids index arrays and are stored as int32: the vocabulary limit of the models
      if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= MAX_TOKEN_ID) {
        f.fail(
          `model.vocab[${fmtValue(token, 40)}]`,
          `is not an integer id in [0, ${MAX_TOKEN_ID}) (got ${fmtValue(id)})`,
        );
      }
      this.vocab.set(token, id as number);
      maxId = Math.max(maxId, id as number);
    }
    this.idSpace = maxId + 1;

    this.#merges = new BpeMerges(this.idSpace);
    f.array(model, "merges", "model.merges").forEach((m, i) => {
      const [a, b] = mergePair(f, m, `model.merges[${i}]`);
      const [left, right, merged] = [a, b, a + b].map((t) => this.vocab.get(t));
      if (left === undefined || right === undefined || merged === undefined) {
        f.fail(`model.merges[${i}]`, `("${a}" "${b}") names a token missing from model.vocab`);
      }
      // A repeated pair takes its last rank, as the crate's map does.
      this.#merges.set(left, right, merged, i);
    });

    this.#fuseUnk = f.boolean(model, "fuse_unk", "model.fuse_unk", false);
    this.#ignoreMerges = f.boolean(model, "ignore_merges", "model.ignore_merges", false);
    const unk = f.optionalString(model, "unk_token", "model.unk_token");
    if (unk !== undefined) {
      this.#unkId = this.vocab.get(unk);
      if (this.#unkId === undefined) f.fail("model.unk_token", `"${unk}" is not in model.vocab`);
    }
    if (f.boolean(model, "byte_fallback", "model.byte_fallback", false)) {
      this.#byteIds = Int32Array.from(
        { length: 256 },
        (_, b) => this.vocab.get(byteToken(b)) ?? -1,
      );
    }
  }

  /**
   * The ids of one word (already pre-tokenized, and byte-mapped for ByteLevel files).
   *
   * @param word the word
   * @returns its ids
   */
  encodeWord(word: string): number[] {
    if (this.#ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) return [id];
    }
    const symbols: number[] = [];
    let unkPending = false;
    const flushUnk = () => {
      if (unkPending) symbols.push(this.#unkId!);
      unkPending = false;
    };
    for (const ch of word) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        flushUnk();
        symbols.push(id);
        continue;
      }
      if (this.#byteIds) {
        const byteIds = Array.from(utf8.encode(ch), (b) => this.#byteIds![b]);
        if (byteIds.every((b) => b >= 0)) {
          // The crate appends byte tokens without closing a pending unk first.
          symbols.push(...byteIds);
          continue;
        }
      }
      if (this.#unkId === undefined) continue; // the crate drops the character too
      if (unkPending && !this.#fuseUnk) symbols.push(this.#unkId);
      unkPending = true;
    }
    flushUnk();
    return this.#merges.apply(symbols);
  }
}

/** "<0x0A>": the vocabulary's spelling of a byte-fallback token. */
function byteToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
}

/** A merge as `"left right"` (older files) or `["left", "right"]`. */
function mergePair(f: JsonFields, m: unknown, field: string): [string, string] {
  if (typeof m === "string") {
    const parts = m.split(" ");
    if (parts.length === 2) return [parts[0], parts[1]];
  } else if (Array.isArray(m) && m.length === 2 && m.every((s) => typeof s === "string")) {
    return [m[0], m[1]];
  }
  return f.fail(
    field,
    `is not a "left right" string or a pair of strings (got ${JSON.stringify(m)})`,
  );
}
