/**
 * Reading fields of a JSON file with errors that name the file and the field.
 *
 * defines: JsonFields
 *
 * @module
 */

import { causeText, DenotronError } from "../errors.ts";

/** A JSON object as parsed. */
export type JsonObject = Record<string, unknown>;

/**
 * Field readers for one file: each failure is a one-line {@link DenotronError}
 * "FILE: FIELD PROBLEM", the field written as a path (`model.merges[3]`).
 *
 * @example
 * ```ts
 * import { JsonFields } from "./hf_json.ts";
 * const f = new JsonFields("tokenizer.json");
 * const model = f.object({ model: { type: "BPE" } }, "model", "model");
 * f.string(model, "type", "model.type"); // "BPE"
 * ```
 */
export class JsonFields {
  /** @param file the file named in messages */
  constructor(readonly file: string) {}

  /**
   * Throws the error for a field.
   *
   * @param field the field's path
   * @param problem what is wrong, starting with a verb ("is missing")
   */
  fail(field: string, problem: string): never {
    // values quoted from the file (a token, a pattern, a type) can be any length
    throw new DenotronError(`${this.file}: ${clip(field, 120)} ${clip(problem, 240)}`);
  }

  /**
   * Parses the file's text.
   *
   * @param text the text
   * @returns the top-level object
   */
  parse(text: string): JsonObject {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new DenotronError(`${this.file}: not valid JSON (${causeText(e)})`);
    }
    if (!isObject(value)) throw new DenotronError(`${this.file}: expected a JSON object`);
    return value;
  }

  /**
   * A field that must be an object.
   *
   * @param o the holder
   * @param key the field's name
   * @param field its path, for messages
   * @returns the object
   */
  object(o: JsonObject, key: string, field: string): JsonObject {
    const v = o[key];
    if (v === undefined || v === null) this.fail(field, "is missing");
    if (!isObject(v)) this.fail(field, `is not an object (got ${describe(v)})`);
    return v;
  }

  /**
   * A field that may be null or absent, else an object.
   *
   * @param o the holder
   * @param key the field's name
   * @param field its path, for messages
   * @returns the object, or undefined
   */
  optionalObject(o: JsonObject, key: string, field: string): JsonObject | undefined {
    const v = o[key];
    return v === undefined || v === null ? undefined : this.object(o, key, field);
  }

  /**
   * A field that must be a string.
   *
   * @param o the holder
   * @param key the field's name
   * @param field its path, for messages
   * @returns the string
   */
  string(o: JsonObject, key: string, field: string): string {
    const v = o[key];
    if (v === undefined || v === null) this.fail(field, "is missing");
    if (typeof v !== "string") this.fail(field, `is not a string (got ${describe(v)})`);
    return v;
  }

  /**
   * A field that may be null or absent, else a string.
   *
   * @param o the holder
   * @param key the field's name
   * @param field its path, for messages
   * @returns the string, or undefined
   */
  optionalString(o: JsonObject, key: string, field: string): string | undefined {
    const v = o[key];
    return v === undefined || v === null ? undefined : this.string(o, key, field);
  }

  /**
   * A boolean field.
   *
   * @param o the holder
   * @param key the field's name
   * @param field its path, for messages
   * @param dflt the value when null or absent
   * @returns the boolean
   */
  boolean(o: JsonObject, key: string, field: string, dflt: boolean): boolean {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "boolean") this.fail(field, `is not true or false (got ${describe(v)})`);
    return v;
  }

  /**
   * A field that must be a non-negative integer.
   *
   * @param o the holder
   * @param key the field's name
   * @param field its path, for messages
   * @param dflt the value when null or absent; without it the field is required
   * @returns the integer
   */
  count(o: JsonObject, key: string, field: string, dflt?: number): number {
    const v = o[key];
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
    if (v === undefined || v === null) this.fail(field, "is missing");
    if (!Number.isInteger(v) || (v as number) < 0) {
      this.fail(field, `is not a non-negative integer (got ${describe(v)})`);
    }
    return v as number;
  }

  /**
   * A field that must be an array.
   *
   * @param o the holder
   * @param key the field's name
   * @param field its path, for messages
   * @returns the array
   */
  array(o: JsonObject, key: string, field: string): unknown[] {
    const v = o[key];
    if (v === undefined || v === null) this.fail(field, "is missing");
    if (!Array.isArray(v)) this.fail(field, `is not an array (got ${describe(v)})`);
    return v;
  }
}

/**
 * Whether a parsed value is a (non-array) object.
 *
 * @param v the value
 * @returns true for `{...}`
 */
export function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** `s`, or its first `max` characters and how long it was. */
function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}... (${s.length} characters)` : s;
}

/** A short description of a value for messages: its JSON, cut to 40 characters. */
function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
