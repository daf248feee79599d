/**
 * The safetensors format, read and written without any tensor class.
 *
 * defines: readSafetensors, writeSafetensors, encodeSafetensors, decodeSafetensors
 *
 * Layout: a u64 little-endian header length N, N bytes of JSON
 * (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
 * "__metadata__": {"key": "value"}}`), then the data buffer; offsets are
 * relative to the buffer start, data is little-endian and row-major.
 *
 * @module
 */

import { causeText, DenotronError, fmtValue } from "../errors.ts";
import { createHash } from "node:crypto";
import { writeAll, writeFileAtomic } from "./atomic.ts";

/** Element types of the format, with their sizes in bytes. */
export const SAFETENSORS_DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

/** A safetensors element type name. */
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPE_SIZES;

/** One tensor: raw little-endian bytes plus what they mean. */
export interface TensorEntry {
  /** Element type. */
  dtype: SafetensorsDType;
  /** Dimensions, row-major. */
  shape: number[];
  /** `product(shape) * size(dtype)` bytes. */
  data: Uint8Array;
}

/** The contents of a file: named tensors and optional string metadata. */
export interface SafetensorsFile {
  /** Tensors by name, in file order. */
  tensors: Map<string, TensorEntry>;
  /** The `__metadata__` strings, if any. */
  metadata: Record<string, string>;
}

/** Largest header accepted (the reference implementation's limit). */
const MAX_HEADER = 100_000_000;

/**
 * Typed-array view of a tensor's bytes for the common dtypes (F16 and BF16
 * come back as Uint16Array bit patterns).
 *
 * @param t the tensor
 * @returns a typed array over a copy of the bytes, so alignment is never an issue
 * @example
 * ```ts
 * import { typedView } from "./safetensors.ts";
 * typedView({ dtype: "F32", shape: [1], data: new Uint8Array([0, 0, 128, 63]) }); // Float32Array [1]
 * ```
 */
export function typedView(
  t: TensorEntry,
):
  | Float32Array
  | Float64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | BigInt64Array
  | BigUint64Array {
  const b = t.data.slice().buffer;
  switch (t.dtype) {
    case "F32":
      return new Float32Array(b);
    case "F64":
      return new Float64Array(b);
    case "I32":
      return new Int32Array(b);
    case "U32":
      return new Uint32Array(b);
    case "I16":
      return new Int16Array(b);
    case "U16":
    case "F16":
    case "BF16":
      return new Uint16Array(b);
    case "I8":
      return new Int8Array(b);
    case "I64":
      return new BigInt64Array(b);
    case "U64":
      return new BigUint64Array(b);
    default:
      return new Uint8Array(b);
  }
}

/**
 * Wraps a typed array as a tensor entry (bytes are shared, not copied).
 *
 * @param dtype element type; its size must match the array's
 * @param shape dimensions
 * @param array the values
 * @returns the entry
 * @example
 * ```ts
 * import { tensorEntry } from "./safetensors.ts";
 * tensorEntry("F32", [2], new Float32Array([1, 2])).data.length; // 8
 * ```
 */
export function tensorEntry(
  dtype: SafetensorsDType,
  shape: number[],
  array: ArrayBufferView,
): TensorEntry {
  return {
    dtype,
    shape,
    data: new Uint8Array(array.buffer, array.byteOffset, array.byteLength),
  };
}

function expectedBytes(t: { dtype: SafetensorsDType; shape: number[] }): number {
  return t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_SIZES[t.dtype];
}

function checkEntry(name: string, t: TensorEntry, where: string): void {
  if (!(t.dtype in SAFETENSORS_DTYPE_SIZES)) {
    throw new DenotronError(`${where}: tensor "${name}": unknown dtype ${fmtValue(t.dtype)}`);
  }
  if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new DenotronError(`${where}: tensor "${name}": bad shape ${fmtValue(t.shape)}`);
  }
  const want = expectedBytes(t);
  if (t.data.length !== want) {
    throw new DenotronError(
      `${where}: tensor "${name}": shape [${t.shape}] of ${t.dtype} needs ${want} bytes, got ${t.data.length}`,
    );
  }
}

/**
 * Builds the header bytes (length prefix included, JSON padded with spaces
 * to a multiple of 8 so the data buffer starts aligned).
 */
function encodeHeader(file: SafetensorsFile, where: string): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(file.metadata).length > 0) {
    for (const [k, v] of Object.entries(file.metadata)) {
      if (typeof v !== "string") {
        throw new DenotronError(`${where}: metadata "${k}" must be a string`);
      }
    }
    header.__metadata__ = file.metadata;
  }
  let offset = 0;
  for (const [name, t] of file.tensors) {
    if (name === "__metadata__") {
      throw new DenotronError(`${where}: "__metadata__" is not a tensor name`);
    }
    checkEntry(name, t, where);
    header[name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [offset, offset + t.data.length],
    };
    offset += t.data.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/**
 * Serializes tensors to one buffer.
 *
 * @param file tensors (written in map order) and metadata
 * @returns the file's bytes
 * @example
 * ```ts
 * import { decodeSafetensors, encodeSafetensors, tensorEntry } from "./safetensors.ts";
 * const bytes = encodeSafetensors({
 *   tensors: new Map([["w", tensorEntry("F32", [2], new Float32Array([1, 2]))]]),
 *   metadata: { format: "pt" },
 * });
 * decodeSafetensors(bytes, "mem").tensors.get("w")!.shape; // [2]
 * ```
 */
export function encodeSafetensors(file: SafetensorsFile): Uint8Array {
  const head = encodeHeader(file, "safetensors");
  let size = head.length;
  for (const t of file.tensors.values()) size += t.data.length;
  const out = new Uint8Array(size);
  out.set(head, 0);
  let at = head.length;
  for (const t of file.tensors.values()) (out.set(t.data, at), at += t.data.length);
  return out;
}

/**
 * Writes a safetensors file to a temporary name and renames it into place;
 * an existing file is replaced only by a complete new one.
 *
 * @param path destination
 * @param file tensors and metadata
 * @returns the SHA-256 of the bytes written (hex), once the file is in place
 */
export async function writeSafetensors(path: string, file: SafetensorsFile): Promise<string> {
  const head = encodeHeader(file, path);
  const hash = createHash("sha256");
  await writeFileAtomic(path, async (f) => {
    hash.update(head);
    await writeAll(f, head);
    for (const t of file.tensors.values()) {
      hash.update(t.data);
      await writeAll(f, t.data);
    }
  });
  return hash.digest("hex");
}

/**
 * Parses and checks a header, given the total file size.
 *
 * @returns entries with offsets relative to the file start
 */
function parseHeader(
  json: Uint8Array,
  dataStart: number,
  fileSize: number,
  where: string,
): {
  entries: [string, SafetensorsDType, number[], number, number][];
  metadata: Record<string, string>;
} {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    throw new DenotronError(`${where}: header is not valid JSON (${causeText(e)})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new DenotronError(`${where}: header must be a JSON object`);
  }
  const metadata: Record<string, string> = {};
  const entries: [string, SafetensorsDType, number[], number, number][] = [];
  const bufferSize = fileSize - dataStart;
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
        throw new DenotronError(`${where}: __metadata__ must be an object of strings`);
      }
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== "string") {
          throw new DenotronError(`${where}: __metadata__ "${k}" is not a string`);
        }
        metadata[k] = v;
      }
      continue;
    }
    const bad = (what: string): never => {
      throw new DenotronError(`${where}: tensor "${name}": ${what}`);
    };
    if (raw === null || typeof raw !== "object") bad("entry is not an object");
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== "string" || !(dtype in SAFETENSORS_DTYPE_SIZES)) {
      bad(`unknown dtype ${fmtValue(dtype)}`);
    }
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      bad(`bad shape ${fmtValue(shape)}`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      offsets.some((o) => !Number.isSafeInteger(o) || o < 0) || offsets[0] > offsets[1]
    ) {
      bad(`bad data_offsets ${fmtValue(offsets)}`);
    }
    const [begin, end] = offsets as number[];
    if (end > bufferSize) {
      bad(
        `data_offsets [${begin}, ${end}] run past the ${bufferSize}-byte data buffer (truncated?)`,
      );
    }
    const want = expectedBytes({ dtype: dtype as SafetensorsDType, shape: shape as number[] });
    if (end - begin !== want) {
      bad(`shape [${shape}] of ${dtype} needs ${want} bytes, data_offsets give ${end - begin}`);
    }
    entries.push([name, dtype as SafetensorsDType, shape as number[], begin, end]);
  }
  // The buffer must be covered exactly once: sorted ranges that abut.
  const sorted = [...entries].sort((a, b) => a[3] - b[3] || a[4] - b[4]);
  let covered = 0;
  for (const [name, , , begin, end] of sorted) {
    if (begin < covered) {
      throw new DenotronError(
        `${where}: tensor "${name}": data_offsets [${begin}, ${end}] overlap another tensor`,
      );
    }
    if (begin > covered) {
      throw new DenotronError(
        `${where}: tensor "${name}": gap before data_offsets [${begin}, ${end}]`,
      );
    }
    covered = end;
  }
  if (covered !== bufferSize) {
    throw new DenotronError(
      `${where}: ${bufferSize - covered} bytes after the last tensor are not described`,
    );
  }
  return {
    entries: entries.map(([n, d, s, b, e]) => [n, d, s, b + dataStart, e + dataStart]),
    metadata,
  };
}

function headerLength(prefix: Uint8Array, fileSize: number, where: string): number {
  if (fileSize < 8) {
    throw new DenotronError(
      `${where}: file is ${fileSize} bytes, too short for a safetensors header`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(Math.min(MAX_HEADER, fileSize - 8))) {
    throw new DenotronError(
      `${where}: header length ${n} does not fit in the ${fileSize}-byte file ` +
        "(not a safetensors file, or truncated)",
    );
  }
  return Number(n);
}

/**
 * Parses a whole file held in memory. Tensor data are views into `bytes`.
 *
 * @param bytes the file's bytes
 * @param where name for error messages
 * @returns tensors and metadata
 */
export function decodeSafetensors(bytes: Uint8Array, where: string): SafetensorsFile {
  const n = headerLength(bytes, bytes.length, where);
  const { entries, metadata } = parseHeader(bytes.subarray(8, 8 + n), 8 + n, bytes.length, where);
  const tensors = new Map<string, TensorEntry>();
  for (const [name, dtype, shape, begin, end] of entries) {
    tensors.set(name, { dtype, shape, data: bytes.subarray(begin, end) });
  }
  return { tensors, metadata };
}

/**
 * Reads a safetensors file, validating the header against the file size
 * before reading any tensor data.
 *
 * @param path the file
 * @param names when given, only these tensors are read (each must exist)
 * @returns tensors and metadata
 * @example
 * ```ts
 * import { readSafetensors, tensorEntry, writeSafetensors } from "./safetensors.ts";
 * const path = (await Deno.makeTempDir()) + "/m.safetensors";
 * await writeSafetensors(path, {
 *   tensors: new Map([["b", tensorEntry("I32", [3], new Int32Array([1, 2, 3]))]]),
 *   metadata: {},
 * });
 * (await readSafetensors(path)).tensors.get("b")!.data.length; // 12
 * ```
 */
export async function readSafetensors(path: string, names?: string[]): Promise<SafetensorsFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new DenotronError(`${path}: cannot open safetensors file (${(e as Error).message})`);
  }
  try {
    const info = await file.stat();
    if (!info.isFile) throw new DenotronError(`${path}: not a file (a directory?)`);
    const size = info.size;
    const prefix = await readAt(file, 0, Math.min(8, size), path);
    const n = headerLength(prefix, size, path);
    const json = await readAt(file, 8, n, path);
    const { entries, metadata } = parseHeader(json, 8 + n, size, path);
    const wanted = names ? new Set(names) : undefined;
    if (wanted) {
      for (const name of wanted) {
        if (!entries.some((e) => e[0] === name)) {
          throw new DenotronError(`${path}: no tensor "${name}"`);
        }
      }
    }
    const tensors = new Map<string, TensorEntry>();
    for (const [name, dtype, shape, begin, end] of entries) {
      if (wanted && !wanted.has(name)) continue;
      tensors.set(name, { dtype, shape, data: await readAt(file, begin, end - begin, path) });
    }
    return { tensors, metadata };
  } finally {
    file.close();
  }
}

async function readAt(file: Deno.FsFile, at: number, n: number, path: string): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  await file.seek(at, Deno.SeekMode.Start);
  let got = 0;
  while (got < n) {
    const r = await file.read(out.subarray(got));
    if (r === null) throw new DenotronError(`${path}: unexpected end of file at byte ${at + got}`);
    got += r;
  }
  return out;
}
