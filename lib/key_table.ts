/**
 * Configuration keys declared once: an `as const` table gives each key its kind, default,
 * command-line flag, bounds and (as a JSDoc line) its documentation; the TypeScript type,
 * the defaults and the checked reader all follow from it.
 *
 * defines: KeyKind, KeyValue, KeyOptions, KeyDecl, KeySection, ValueOf, SectionType,
 *          sectionDefaults, readValue, ConfigError
 *
 * A table is a plain object literal, `{ ... } as const satisfies KeySection`: `as const`
 * keeps the literal kinds and choices that {@link SectionType} maps to property types,
 * `satisfies` checks every row against {@link KeyDecl}. (Plain literals rather than helper
 * calls keep the public API free of inferred "slow types".)
 *
 * The table sits at the bottom of lib/ so that a layer can declare its own keys
 * (lib/parallel/parallel_config.ts declares the parallel section) and lib/train/config.ts
 * can gather every section without an upward import.
 *
 * @module
 */

import { fmtValue } from "./errors.ts";

/**
 * How a key's value is written and checked. "ints": a list of integers ("8,8,300").
 * "words": a list of strings, given on the command line as the words after the flag
 * (`--data-path 0.3 a 0.7 b`, as Megatron's nargs="*"); in YAML a list, or one string
 * that is one word (so a path may hold spaces).
 */
export type KeyKind = "int" | "number" | "bool" | "string" | "ints" | "words";

/** A key's value as JSON holds it. */
export type KeyValue = number | boolean | string | readonly number[] | readonly string[] | null;

/** What a key may take besides its kind. */
export interface KeyOptions {
  /** null is a value (usually "derive it" or "off"). */
  readonly nullable?: boolean;
  /** The property is optional in the TypeScript type (configs written before the key). */
  readonly optional?: boolean;
  /** Other names accepted in YAML and on the command line (Megatron's spellings). */
  readonly aliases?: readonly string[];
  /** Smallest allowed value (for "ints": of each item). */
  readonly min?: number;
  /** `min` itself is refused. */
  readonly exclusiveMin?: boolean;
  /** Largest allowed value. Integers are also bounded by Number.MAX_SAFE_INTEGER. */
  readonly max?: number;
  /** `max` itself is refused. */
  readonly exclusiveMax?: boolean;
}

/** One configuration key. */
export interface KeyDecl extends KeyOptions {
  /** How the value is written and checked. */
  readonly kind: KeyKind;
  /** The value when nothing sets the key. */
  readonly default: KeyValue;
  /** The command-line name, Megatron's where Megatron has the key (`--train-iters`). */
  readonly flag: `--${string}`;
  /** For "string": the values allowed. */
  readonly choices?: readonly string[];
}

/** A section of the table: key name to declaration (its JSDoc line documents the key). */
export type KeySection = Readonly<Record<string, KeyDecl>>;

/** The TypeScript type of a declared key's value. */
export type ValueOf<D> =
  | (D extends { kind: "int" | "number" } ? number
    : D extends { kind: "bool" } ? boolean
    : D extends { kind: "ints" } ? number[]
    : D extends { kind: "words" } ? string[]
    : D extends { choices: readonly (infer C)[] } ? C
    : string)
  | (D extends { nullable: true } ? null : never);

/** The object type of a section: one property per key, optional where declared so. */
export type SectionType<S extends KeySection> = (
  & { -readonly [K in keyof S as S[K] extends { optional: true } ? never : K]: ValueOf<S[K]> }
  & { -readonly [K in keyof S as S[K] extends { optional: true } ? K : never]?: ValueOf<S[K]> }
) extends infer T ? { [K in keyof T]: T[K] } : never;

/**
 * A section's defaults, as a fresh mutable object.
 *
 * @param section the declarations
 * @returns every key's default
 * @example
 * ```ts
 * import { type KeySection, sectionDefaults } from "./key_table.ts";
 * const EVAL = {
 *   // Micro-batches per evaluation.
 *   evalIters: { kind: "int", default: 20, flag: "--eval-iters", min: 0 },
 * } as const satisfies KeySection;
 * sectionDefaults(EVAL); // { evalIters: 20 }
 * ```
 */
export function sectionDefaults<S extends KeySection>(section: S): SectionType<S> {
  const out: Record<string, unknown> = {};
  for (const [key, d] of Object.entries(section)) {
    out[key] = Array.isArray(d.default) ? [...d.default] : d.default;
  }
  return out as SectionType<S>;
}

/** A configuration mistake, phrased as a sentence that names the key. */
export class ConfigError extends Error {
  /** "ConfigError", so that a message printed with its name says what kind it is. */
  override name = "ConfigError";
}

// A decimal number as a person types it: no hex, no "Infinity", no empty string.
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function bounds(d: KeyDecl, what: string): { ok: (n: number) => boolean; say: string }[] {
  const out = [];
  if (d.min !== undefined) {
    const min = d.min;
    out.push(
      d.exclusiveMin
        ? { ok: (n: number) => n > min, say: `${what} > ${min}` }
        : { ok: (n: number) => n >= min, say: `${what} >= ${min}` },
    );
  }
  const max = d.kind === "number" ? d.max : Math.min(d.max ?? Infinity, Number.MAX_SAFE_INTEGER);
  if (max !== undefined) {
    out.push(
      d.exclusiveMax
        ? { ok: (n: number) => n < max, say: `${what} < ${max}` }
        : { ok: (n: number) => n <= max, say: `${what} <= ${max}` },
    );
  }
  return out;
}

/**
 * Checks one value against its declaration and converts it (command-line strings are
 * parsed). Errors name the source, the key, the bound or type expected, the value and
 * the flag.
 *
 * @param key the key's name
 * @param d its declaration
 * @param value from YAML, an object or the command line
 * @param where the source with ": " ("command line: "), or ""
 * @returns the value, of the key's type
 * @throws {ConfigError} when the value does not fit
 * @example
 * ```ts
 * import { type KeyDecl, readValue } from "./key_table.ts";
 * const d: KeyDecl = { kind: "int", default: 800, flag: "--train-iters", min: 1, max: 1e9 };
 * readValue("trainIters", d, "100", ""); // 100
 * // readValue("trainIters", d, "1.5", "") throws
 * // ConfigError: trainIters: expected an integer, got '1.5' (--train-iters)
 * ```
 */
export function readValue(key: string, d: KeyDecl, value: unknown, where: string): KeyValue {
  const fail = (expected: string): never => {
    // cut, so that a megabyte pasted into a value is not echoed back in full
    const shown = typeof value === "string" && value.length <= 60 ? `'${value}'` : fmtValue(value);
    throw new ConfigError(`${where}${key}: expected ${expected}, got ${shown} (${d.flag})`);
  };
  if (value === null || value === "null" || value === "none") {
    if (d.nullable) return null;
    if (value === null) fail(`a value (${key} cannot be null)`);
  }
  switch (d.kind) {
    case "int":
    case "number": {
      const what = d.kind === "int" ? "an integer" : "a number";
      const n = typeof value === "string" && DECIMAL.test(value.trim()) ? Number(value) : value;
      if (typeof n !== "number" || !Number.isFinite(n)) return fail(what);
      if (d.kind === "int" && !Number.isInteger(n)) fail(what);
      for (const b of bounds(d, what)) if (!b.ok(n)) fail(b.say);
      return n;
    }
    case "bool":
      if (value === "true" || value === true) return true;
      if (value === "false" || value === false) return false;
      return fail("true or false");
    case "ints": {
      const items = typeof value === "string"
        ? value.split(/[,\s]+/).filter((x) => x !== "")
        : value;
      const what = `a list of integers${d.min === undefined ? "" : ` >= ${d.min}`} like 8,8,300`;
      if (!Array.isArray(items) || items.length === 0) return fail(what);
      return items.map((x) => {
        const n = typeof x === "string" && DECIMAL.test(x) ? Number(x) : x;
        if (!Number.isSafeInteger(n) || n < (d.min ?? -Infinity)) fail(what);
        return n as number;
      });
    }
    case "words": {
      const items = Array.isArray(value) ? value : [value];
      const what = "one or more words (a path, or weight path pairs)";
      if (items.length === 0) return fail(what);
      return items.map((x) => {
        const w = typeof x === "number" && Number.isFinite(x) ? String(x) : x;
        if (typeof w !== "string" || w === "") fail(what);
        return w as string;
      });
    }
    case "string": {
      const s = typeof value === "number" ? String(value) : value;
      if (typeof s !== "string") return fail("a string");
      if (d.choices && !d.choices.includes(s)) fail(`one of ${d.choices.join(", ")}`);
      return s;
    }
  }
}
