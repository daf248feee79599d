/**
 * An input made of files, and its mutation: each step picks a file and mutates it by
 * its kind (a JSON document by its fields, a safetensors file by its header, an index
 * by its integer fields, text by its lines, anything by its bytes), or the set
 * itself (a file deleted, emptied, swapped for another, turned into a directory).
 *
 * defines: FileKind, FileSet, kindOf, mutateFileSet, writeFileSet, idxFields
 *
 * @module
 */

import { dirname, join } from "node:path";
import { mutateBytes, mutateJson, mutateText, writeIntAt } from "./mutate.ts";
import type { Rng } from "./rng.ts";

/** How a file is mutated. */
export type FileKind = "json" | "safetensors" | "idx" | "text" | "bytes";

/** Files by path relative to the input's root; "dir" is an (empty) directory. */
export type FileSet = Map<string, Uint8Array | "dir">;

/**
 * The kind of a file, from its name.
 *
 * @param name the file's name
 * @returns its kind
 */
export function kindOf(name: string): FileKind {
  if (name.endsWith(".json")) return "json";
  if (name.endsWith(".safetensors")) return "safetensors";
  if (name.endsWith(".idx")) return "idx";
  if (/\.(txt|yaml|yml)$|(^|\/)latest$/.test(name)) return "text";
  return "bytes";
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Field names of the formats, added as unexpected or misplaced keys. */
const JSON_KEYS = [
  "dtype",
  "shape",
  "data_offsets",
  "__metadata__",
  "weight_map",
  "n_embd",
  "n_layer",
  "layer_norm_epsilon",
  "iteration",
  "rng",
  "lossScaler",
  "checksums",
  "<|endoftext|>",
];

/** Offsets and widths of an `.idx` file's integer fields (header, first entries of each table). */
export function idxFields(bytes: Uint8Array): [number, 1 | 2 | 4 | 8][] {
  const out: [number, 1 | 2 | 4 | 8][] = [[9, 8], [17, 1], [18, 8], [26, 8]];
  if (bytes.length < 34) return out;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const S = Number(view.getBigUint64(18, true));
  const D1 = Number(view.getBigUint64(26, true));
  if (34 + 12 * S + 8 * D1 > bytes.length) return out;
  for (let i = 0; i < Math.min(S, 4); i++) out.push([34 + 4 * i, 4], [34 + 4 * S + 8 * i, 8]);
  for (let i = 0; i < Math.min(D1, 4); i++) out.push([34 + 12 * S + 8 * i, 8]);
  out.push([34 + 12 * S + 8 * (D1 - 1), 8]);
  return out;
}

/** mutateJson, or null for a document nested too deeply to copy (an earlier mutation's). */
function jsonMutation(rng: Rng, doc: unknown): { text: string; what: string } | null {
  try {
    return mutateJson(rng, doc, JSON_KEYS);
  } catch (e) {
    if (e instanceof RangeError) return null;
    throw e;
  }
}

function mutateJsonFile(rng: Rng, bytes: Uint8Array): { bytes: Uint8Array; what: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(fromUtf8.decode(bytes));
  } catch {
    return mutateBytes(rng, bytes);
  }
  if (rng.chance(0.15)) return mutateBytes(rng, bytes);
  const m = jsonMutation(rng, doc);
  return m ? { bytes: utf8.encode(m.text), what: m.what } : mutateBytes(rng, bytes);
}

/** A safetensors file with its header mutated as JSON (length prefix kept right), or its bytes. */
function mutateSafetensorsFile(rng: Rng, bytes: Uint8Array): { bytes: Uint8Array; what: string } {
  const r = rng.int(10);
  if (bytes.length < 8 || r >= 8) return mutateBytes(rng, bytes, [], [[0, 8]]);
  if (r === 7) {
    const out = bytes.slice();
    writeIntAt(rng, out, 0, 8);
    return { bytes: out, what: "header length" };
  }
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  let header: unknown;
  try {
    header = JSON.parse(fromUtf8.decode(bytes.subarray(8, 8 + n)));
  } catch {
    return mutateBytes(rng, bytes);
  }
  const m = jsonMutation(rng, header);
  if (!m) return mutateBytes(rng, bytes);
  let json = utf8.encode(m.text);
  if (rng.chance(0.8)) { // padded to 8 with spaces, as writers do
    const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const data = bytes.subarray(8 + n);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return { bytes: out, what: `header ${m.what}` };
}

function mutateOne(
  rng: Rng,
  name: string,
  bytes: Uint8Array,
  donors: Uint8Array[],
): { bytes: Uint8Array; what: string } {
  switch (kindOf(name)) {
    case "json":
      return mutateJsonFile(rng, bytes);
    case "safetensors":
      return mutateSafetensorsFile(rng, bytes);
    case "idx":
      return mutateBytes(rng, bytes, donors, rng.chance(0.6) ? idxFields(bytes) : []);
    case "text": {
      if (rng.chance(0.3)) return mutateBytes(rng, bytes, donors);
      const m = mutateText(rng, fromUtf8.decode(bytes));
      return { bytes: utf8.encode(m.text), what: m.what };
    }
    default:
      return mutateBytes(rng, bytes, donors);
  }
}

/**
 * Mutates a file set: one to three steps, each on one file (most often) or on the set.
 *
 * @param rng the input's generator
 * @param files the valid input (not modified)
 * @param weight how often each file is picked (default 1)
 * @returns the mutated set, what was done, and which files were touched
 */
export function mutateFileSet(
  rng: Rng,
  files: FileSet,
  weight: (name: string) => number = () => 1,
): { files: FileSet; what: string[]; touched: Set<string> } {
  const out: FileSet = new Map(files);
  const what: string[] = [];
  const touched = new Set<string>();
  const steps = rng.chance(0.7) ? 1 : 2 + rng.int(2);
  for (let s = 0; s < steps; s++) {
    const names = [...out.keys()];
    if (names.length === 0) break;
    const total = names.reduce((a, n) => a + weight(n), 0);
    let x = rng.next() * total;
    const name = names.find((n) => (x -= weight(n)) < 0) ?? names[names.length - 1];
    const bytes = out.get(name)!;
    touched.add(name);
    if (rng.chance(0.08) || bytes === "dir") {
      const op = rng.int(4);
      const other = rng.pick(names);
      if (op === 0) out.delete(name);
      else if (op === 1) out.set(name, new Uint8Array(0));
      else if (op === 2) out.set(name, out.get(other)!);
      else out.set(name, "dir");
      what.push(`${name}: ${["deleted", "emptied", `= ${other}`, "made a directory"][op]}`);
      continue;
    }
    const donors = [...out.values()].filter((v): v is Uint8Array => v !== "dir");
    const m = mutateOne(rng, name, bytes, donors);
    out.set(name, m.bytes);
    what.push(`${name}: ${m.what}`);
  }
  return { files: out, what, touched };
}

/**
 * Writes a file set under `root` (created; its parents must exist).
 *
 * @param root the input's directory
 * @param files the files
 */
export async function writeFileSet(root: string, files: FileSet): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  for (const [name, bytes] of files) {
    const path = join(root, name);
    await Deno.mkdir(dirname(path), { recursive: true });
    if (bytes === "dir") await Deno.mkdir(path, { recursive: true });
    else await Deno.writeFile(path, bytes);
  }
}
