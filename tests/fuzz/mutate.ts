/**
 * Mutators: bytes (flips, truncation, extension, splicing, integers written at
 * field offsets), text lines, and JSON trees (a value replaced by one of another
 * type, a huge or negative number, a "NaN" string, deep nesting, a long string; keys
 * dropped or added). Every choice comes from the {@link Rng} given, so a mutation is
 * a function of the input's seed.
 *
 * defines: mutateBytes, writeIntAt, mutateText, mutateJson, weirdJson, weirdScalarText,
 *          RawJson
 *
 * @module
 */

import type { Rng } from "./rng.ts";

/** Unsigned 64-bit values that break size arithmetic: 2^53 + 1, 2^62, 2^64 - 1... */
const U64S = [
  0n,
  1n,
  2n,
  7n,
  255n,
  (1n << 31n) - 1n,
  1n << 31n,
  (1n << 32n) - 1n,
  1n << 32n,
  (1n << 53n) - 1n,
  (1n << 53n) + 1n,
  1n << 62n,
  (1n << 63n) - 1n,
  1n << 63n,
  (1n << 64n) - 1n,
];

/**
 * Writes an interesting integer, `width` bytes little-endian, at `at` (in place).
 *
 * @param rng the input's generator
 * @param bytes the buffer
 * @param at the offset; ignored where the value would not fit
 * @param width 1, 2, 4 or 8
 */
export function writeIntAt(rng: Rng, bytes: Uint8Array, at: number, width: 1 | 2 | 4 | 8): void {
  if (at < 0 || at + width > bytes.length) return;
  let v = rng.chance(0.7) ? rng.pick(U64S) : BigInt(rng.int(1 << 16));
  if (rng.chance(0.25)) v = -v; // two's complement: -1, -2^53 - 1...
  const mask = (1n << BigInt(8 * width)) - 1n;
  v &= mask;
  for (let i = 0; i < width; i++) bytes[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/**
 * One byte-level mutation of `bytes`, chosen at random.
 *
 * @param rng the input's generator
 * @param bytes the original (not modified)
 * @param donors other files of the input, to splice from
 * @param fields offsets and widths of the format's integer fields, to hit them often
 * @returns the mutated copy and what was done
 */
export function mutateBytes(
  rng: Rng,
  bytes: Uint8Array,
  donors: readonly Uint8Array[] = [],
  fields: readonly [at: number, width: 1 | 2 | 4 | 8][] = [],
): { bytes: Uint8Array; what: string } {
  const n = bytes.length;
  const pos = () => (rng.chance(0.5) ? rng.int(Math.min(n, 64) + 1) : rng.int(n + 1));
  const op = rng.int(fields.length ? 9 : 8);
  switch (op) {
    case 0: { // flip bits of a few bytes
      const out = bytes.slice();
      const k = 1 + rng.int(8);
      for (let i = 0; i < k && n > 0; i++) out[rng.int(n)] ^= 1 << rng.int(8);
      return { bytes: out, what: `flip ${k}` };
    }
    case 1: { // a few bytes set to boundary values
      const out = bytes.slice();
      const k = 1 + rng.int(4);
      for (let i = 0; i < k && n > 0; i++) out[rng.int(n)] = rng.pick([0, 0xff, 0x7f, 0x80, 0x20]);
      return { bytes: out, what: `set ${k}` };
    }
    case 2: { // truncate
      const at = rng.chance(0.3) ? rng.int(Math.min(n, 40) + 1) : rng.int(n + 1);
      return { bytes: bytes.slice(0, at), what: `truncate ${at}` };
    }
    case 3: { // extend
      const k = rng.pick([1, 7, 8, 64, 4096]);
      const out = new Uint8Array(n + k);
      out.set(bytes);
      if (rng.chance(0.5)) out.set(rng.bytes(k), n);
      return { bytes: out, what: `extend ${k}` };
    }
    case 4: { // splice: a chunk of this file or a donor copied over a position
      const src = donors.length && rng.chance(0.5) ? rng.pick(donors) : bytes;
      if (src.length === 0 || n === 0) return { bytes: bytes.slice(), what: "splice none" };
      const from = rng.int(src.length);
      const len = 1 + rng.int(Math.min(64, src.length - from));
      const at = rng.int(n);
      const out = bytes.slice();
      out.set(src.subarray(from, from + Math.min(len, n - at)), at);
      return { bytes: out, what: `splice ${len}@${at}` };
    }
    case 5: { // insert random bytes
      const at = pos();
      const ins = rng.bytes(1 + rng.int(16));
      const out = new Uint8Array(n + ins.length);
      out.set(bytes.subarray(0, at));
      out.set(ins, at);
      out.set(bytes.subarray(at), at + ins.length);
      return { bytes: out, what: `insert ${ins.length}@${at}` };
    }
    case 6: { // delete a range
      const at = pos();
      const len = Math.min(1 + rng.int(16), n - at);
      const out = new Uint8Array(n - len);
      out.set(bytes.subarray(0, at));
      out.set(bytes.subarray(at + len), at);
      return { bytes: out, what: `delete ${len}@${at}` };
    }
    case 7: { // an integer written at a random 8-byte-aligned offset
      const out = bytes.slice();
      const width = rng.pick([1, 4, 8] as const);
      writeIntAt(rng, out, rng.int(Math.max(1, n / 8)) * 8, width);
      return { bytes: out, what: `int${8 * width} somewhere` };
    }
    default: { // an integer written over one of the format's fields
      const out = bytes.slice();
      const [at, width] = rng.pick(fields);
      writeIntAt(rng, out, at, width);
      return { bytes: out, what: `int${8 * width}@${at}` };
    }
  }
}

/** JSON text to splice in as is (numbers JSON.stringify cannot write, deep nesting). */
export class RawJson {
  /** @param text the JSON text */
  constructor(readonly text: string) {}
}

/**
 * A JSON value that readers often mishandle.
 *
 * @param rng the input's generator
 * @returns the value (RawJson for literals the serializer cannot produce)
 */
export function weirdJson(rng: Rng): unknown {
  switch (rng.int(6)) {
    case 0:
      return rng.pick([0, -1, 1.5, -0.5, 3, 2 ** 31, 2 ** 32, 2 ** 24, 65536, 1e308, 5e-324]);
    case 1: // literals beyond double precision or range
      return new RawJson(
        rng.pick([
          "9007199254740993",
          "4611686018427387904",
          "-9007199254740993",
          "18446744073709551615",
          "1e400",
          "-1e400",
          "1e-400",
          "-0",
          "1.0000000000000002",
        ]),
      );
    case 2:
      return rng.pick([
        "NaN",
        "Infinity",
        "-Infinity",
        "-1",
        "12",
        "",
        " ",
        "\u0000",
        "💥",
        "null",
        "a".repeat(1 + rng.int(3) * 50_000),
      ]);
    case 3:
      return rng.pick([null, true, false]);
    case 4:
      return rng.pick<unknown>([[], {}, [1, 2, 3], { a: 1 }, [null], ["x"], [[2, 3]]]);
    default: { // deep nesting
      const d = rng.pick([64, 1000, 20_000, 50_000]);
      return new RawJson(
        rng.chance(0.5) ? "[".repeat(d) + "]".repeat(d) : '{"a":'.repeat(d) + "1" + "}".repeat(d),
      );
    }
  }
}

/** Stands for the one RawJson of a tree while JSON.stringify writes it. */
const RAW_MARK = "\u0001raw\u0001";

/**
 * Writes a tree holding at most one {@link RawJson} leaf. JSON.stringify without a
 * replacer does not recurse on the stack, so deeply nested trees are fine.
 */
function jsonText(tree: unknown, raw: RawJson | undefined): string {
  const text = JSON.stringify(tree) ?? "null";
  return raw ? text.replace(JSON.stringify(RAW_MARK), () => raw.text) : text;
}

/** A value to store in the tree, and the RawJson it stands for, if any. */
function placed(v: unknown): { value: unknown; raw: RawJson | undefined } {
  return v instanceof RawJson ? { value: RAW_MARK, raw: v } : { value: v, raw: undefined };
}

/** Every (container, key) in a tree down to depth 32, the root excluded (no recursion). */
function slots(root: unknown): [Record<string | number, unknown>, string | number][] {
  const out: [Record<string | number, unknown>, string | number][] = [];
  const todo: [unknown, number][] = [[root, 0]];
  while (todo.length) {
    const [v, depth] = todo.pop()!;
    if (v === null || typeof v !== "object" || v instanceof RawJson || depth > 32) continue;
    const c = v as Record<string | number, unknown>;
    for (const k of Array.isArray(v) ? v.keys() : Object.keys(v)) {
      out.push([c, k]);
      todo.push([c[k], depth + 1]);
    }
  }
  return out;
}

/**
 * One structural mutation of a parsed JSON document (the tree is copied first).
 *
 * @param rng the input's generator
 * @param doc the parsed document
 * @param keys field names the format uses, to add as unexpected or misplaced keys
 * @returns the mutated document's JSON text and what was done
 */
export function mutateJson(
  rng: Rng,
  doc: unknown,
  keys: readonly string[] = [],
): { text: string; what: string } {
  // JSON, not structuredClone: the latter recurses, and a document may be nested deeply
  const root = JSON.parse(JSON.stringify(doc) ?? "null");
  const all = slots(root);
  if (all.length === 0 || rng.chance(0.03)) {
    const p = placed(weirdJson(rng));
    return { text: jsonText(p.value, p.raw), what: "root replaced" };
  }
  const [c, k] = rng.pick(all);
  const op = rng.int(10);
  if (op < 6) {
    const p = placed(weirdJson(rng));
    c[k] = p.value;
    return { text: jsonText(root, p.raw), what: `${k} replaced` };
  }
  if (op === 6 && !Array.isArray(c)) {
    delete c[k];
    return { text: jsonText(root, undefined), what: `${k} deleted` };
  }
  if (op === 7) {
    c[k] = rng.chance(0.5) ? [c[k]] : { value: c[k] };
    return { text: jsonText(root, undefined), what: `${k} wrapped` };
  }
  if (op === 8 && typeof c[k] === "number") {
    const x = c[k] as number;
    c[k] = rng.pick([x + 1, x - 1, -x, x * 2, x * 1024, x + 0.5, 0]);
    return { text: jsonText(root, undefined), what: `${k} nudged` };
  }
  const name = keys.length && rng.chance(0.7) ? rng.pick(keys) : `x${rng.int(100)}`;
  const target = rng.chance(0.5) || Array.isArray(c) ? root : c;
  const p = placed(weirdJson(rng));
  if (target !== null && typeof target === "object" && !Array.isArray(target)) {
    (target as Record<string, unknown>)[name] = p.value;
  }
  return { text: jsonText(root, p.raw), what: `${name} added` };
}

/**
 * A YAML or command-line scalar that readers often mishandle.
 *
 * @param rng the input's generator
 * @returns the text
 */
export function weirdScalarText(rng: Rng): string {
  return rng.pick([
    "0",
    "-1",
    "-0",
    "1.5",
    "1e400",
    "-1e400",
    "1e-400",
    "9007199254740993",
    "4611686018427387904",
    "18446744073709551615",
    "2147483648",
    "NaN",
    ".nan",
    "Infinity",
    ".inf",
    "-.inf",
    "0x10",
    "1_000",
    "",
    " ",
    "~",
    "null",
    "none",
    "true",
    "yes",
    "[]",
    "{}",
    "[1, 2]",
    "8,8,300",
    "'quoted'",
    "\u0000",
    "x".repeat(100_000),
    String(rng.int(1 << 20)),
    String(-rng.int(1 << 10)),
  ]);
}

/**
 * One line-level mutation of a text file.
 *
 * @param rng the input's generator
 * @param text the original
 * @returns the mutated text and what was done
 */
export function mutateText(rng: Rng, text: string): { text: string; what: string } {
  const lines = text.split("\n");
  const i = rng.int(lines.length);
  switch (rng.int(7)) {
    case 0:
      lines.splice(i, 1);
      return { text: lines.join("\n"), what: `line ${i} deleted` };
    case 1:
      lines.splice(i, 0, lines[i]);
      return { text: lines.join("\n"), what: `line ${i} doubled` };
    case 2: {
      const j = rng.int(lines.length);
      [lines[i], lines[j]] = [lines[j], lines[i]];
      return { text: lines.join("\n"), what: `lines ${i}, ${j} swapped` };
    }
    case 3: { // the value after "key:" or the second word replaced
      const line = lines[i];
      const colon = line.indexOf(":");
      const space = line.indexOf(" ");
      const cut = colon >= 0 ? colon + 1 : space >= 0 ? space + 1 : line.length;
      lines[i] = line.slice(0, cut) + (colon >= 0 ? " " : "") + weirdScalarText(rng);
      return { text: lines.join("\n"), what: `line ${i} value` };
    }
    case 4:
      lines.splice(i, 0, rng.pick(["\t", "  - x", "? ", "&a [*a]", "%YAML 9", "--- !x", "a b c"]));
      return { text: lines.join("\n"), what: `line inserted at ${i}` };
    case 5:
      lines[i] = " ".repeat(1 + rng.int(4)) + lines[i];
      return { text: lines.join("\n"), what: `line ${i} indented` };
    default: {
      const b = mutateBytes(rng, new TextEncoder().encode(text));
      return { text: new TextDecoder().decode(b.bytes), what: b.what };
    }
  }
}
