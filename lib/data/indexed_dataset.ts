/**
 * Megatron-LM's indexed dataset: `PREFIX.bin` holds the tokens of every
 * sequence back to back, `PREFIX.idx` says where each one starts.
 *
 * defines: IndexedDatasetWriter, IndexedDataset, encodeIndex, decodeIndex, dtypeForVocab
 *
 * `.idx` layout (little-endian), as Megatron-LM writes and reads it:
 *
 * ```
 * magic            9 bytes   "MMIDIDX\0\0"
 * version          u64       1
 * dtype code       u8        1 uint8, 2 int8, 3 int16, 4 int32, 5 int64,
 *                            6 float64, 7 float32, 8 uint16
 * sequence count   u64       S
 * document count   u64       D + 1 (the length of the document index below)
 * lengths          i32[S]    tokens per sequence
 * pointers         i64[S]    byte offset of each sequence in .bin
 * document index   i64[D+1]  0, then the sequence count after each document
 * ```
 *
 * Megatron's multimodal variant appends one i8 mode per sequence; the reader
 * accepts and ignores it.
 *
 * @module
 */

import { DenotronError } from "../errors.ts";
import { removeQuietly, tempName, writeAll } from "../io/atomic.ts";

/** The nine magic bytes every `.idx` starts with. */
export const INDEX_MAGIC: Uint8Array = new Uint8Array([
  0x4d,
  0x4d,
  0x49,
  0x44,
  0x49,
  0x44,
  0x58,
  0x00,
  0x00,
]);

/** Element types Megatron can store in `.bin`. */
export type TokenDType =
  | "uint8"
  | "int8"
  | "int16"
  | "int32"
  | "int64"
  | "float64"
  | "float32"
  | "uint16";

/** Megatron's numeric code for each element type (its `DType` enum). */
export const DTYPE_CODES: Readonly<Record<TokenDType, number>> = {
  uint8: 1,
  int8: 2,
  int16: 3,
  int32: 4,
  int64: 5,
  float64: 6,
  float32: 7,
  uint16: 8,
};

/** Bytes per element of each type. */
export const DTYPE_SIZES: Readonly<Record<TokenDType, number>> = {
  uint8: 1,
  int8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  float64: 8,
  float32: 4,
  uint16: 2,
};

const HEADER_BYTES = 34; // magic 9 + version 8 + dtype 1 + counts 8 + 8

/**
 * Megatron's choice of token type: uint16 below 65,500 ids, else int32.
 *
 * @param vocabSize number of token ids
 * @returns "uint16" or "int32"
 * @example
 * ```ts
 * import { dtypeForVocab } from "./indexed_dataset.ts";
 * dtypeForVocab(50257); // "uint16"
 * ```
 */
export function dtypeForVocab(vocabSize: number): TokenDType {
  return vocabSize < 65500 ? "uint16" : "int32";
}

/** The contents of an `.idx` file. */
export interface IndexTables {
  /** Element type of the `.bin` file. */
  dtype: TokenDType;
  /** Tokens per sequence. (S) */
  sequenceLengths: Int32Array;
  /** Byte offset of each sequence in `.bin`. (S) */
  sequencePointers: Float64Array;
  /** 0, then the sequence count at the end of each document. (D + 1) */
  documentIndices: Float64Array;
}

/**
 * Serializes an index exactly as Megatron-LM writes it; pointers are the
 * running sum of lengths times the element size.
 *
 * @param dtype element type of `.bin`
 * @param sequenceLengths tokens per sequence (S)
 * @param documentIndices 0, then the sequence count after each document (D + 1)
 * @returns the bytes of the `.idx` file
 * @example
 * ```ts
 * import { encodeIndex } from "./indexed_dataset.ts";
 * const idx = encodeIndex("uint16", [3, 2], [0, 1, 2]);
 * idx.length; // 34 + 2 * 4 + 2 * 8 + 3 * 8 = 82
 * ```
 */
export function encodeIndex(
  dtype: TokenDType,
  sequenceLengths: ArrayLike<number>,
  documentIndices: ArrayLike<number>,
): Uint8Array {
  const S = sequenceLengths.length;
  const D1 = documentIndices.length;
  const out = new Uint8Array(HEADER_BYTES + 12 * S + 8 * D1);
  const view = new DataView(out.buffer);
  out.set(INDEX_MAGIC, 0);
  view.setBigUint64(9, 1n, true);
  view.setUint8(17, DTYPE_CODES[dtype]);
  view.setBigUint64(18, BigInt(S), true);
  view.setBigUint64(26, BigInt(D1), true);
  let at = HEADER_BYTES;
  for (let i = 0; i < S; i++, at += 4) view.setInt32(at, sequenceLengths[i], true);
  let pointer = 0;
  for (let i = 0; i < S; i++, at += 8) {
    view.setBigInt64(at, BigInt(pointer), true);
    pointer += sequenceLengths[i] * DTYPE_SIZES[dtype];
  }
  for (let i = 0; i < D1; i++, at += 8) view.setBigInt64(at, BigInt(documentIndices[i]), true);
  return out;
}

/**
 * Parses and validates an `.idx` file's bytes.
 *
 * @param bytes the whole `.idx` file
 * @param path the file's name, for error messages
 * @param binBytes size of the matching `.bin`; when given, every sequence
 *   must lie inside it
 * @returns the tables
 * @example
 * ```ts
 * import { decodeIndex, encodeIndex } from "./indexed_dataset.ts";
 * const t = decodeIndex(encodeIndex("uint16", [3, 2], [0, 2]), "mem.idx", 10);
 * t.sequencePointers; // Float64Array [0, 6]
 * ```
 */
export function decodeIndex(bytes: Uint8Array, path: string, binBytes?: number): IndexTables {
  const fail = (field: string, what: string): never => {
    throw new DenotronError(`${path}: ${field}: ${what}`);
  };
  if (bytes.length < HEADER_BYTES) {
    fail("header", `file is ${bytes.length} bytes, a Megatron index header needs ${HEADER_BYTES}`);
  }
  for (let i = 0; i < INDEX_MAGIC.length; i++) {
    if (bytes[i] !== INDEX_MAGIC[i]) {
      fail("magic", "not a Megatron indexed dataset index (expected MMIDIDX\\x00\\x00)");
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getBigUint64(9, true);
  if (version !== 1n) fail("version", `expected 1, got ${version}`);
  const code = view.getUint8(17);
  const dtype = (Object.keys(DTYPE_CODES) as TokenDType[]).find((k) => DTYPE_CODES[k] === code);
  if (dtype === undefined) fail("dtype code", `unknown code ${code} (Megatron uses 1 to 8)`);
  const S = safeCount(view.getBigUint64(18, true), "sequence count", fail);
  const D1 = safeCount(view.getBigUint64(26, true), "document count", fail);
  if (D1 < 1) fail("document count", "must be at least 1 (the leading 0 of the document index)");
  const expected = HEADER_BYTES + 12 * S + 8 * D1;
  if (bytes.length < expected) {
    fail(
      "size",
      `file is ${bytes.length} bytes but ${S} sequences and ${D1 - 1} documents need ${expected}` +
        " (truncated?)",
    );
  }
  if (bytes.length !== expected && bytes.length !== expected + S) {
    fail("size", `file is ${bytes.length} bytes, expected ${expected}: trailing bytes`);
  }
  const itemSize = DTYPE_SIZES[dtype!];
  const sequenceLengths = new Int32Array(S);
  const sequencePointers = new Float64Array(S);
  const documentIndices = new Float64Array(D1);
  let at = HEADER_BYTES;
  for (let i = 0; i < S; i++, at += 4) {
    const n = view.getInt32(at, true);
    if (n < 0) fail("sequence lengths", `sequence ${i} has negative length ${n}`);
    sequenceLengths[i] = n;
  }
  for (let i = 0; i < S; i++, at += 8) {
    const p = Number(view.getBigInt64(at, true));
    const end = p + sequenceLengths[i] * itemSize;
    if (p < 0 || p % itemSize !== 0) fail("sequence pointers", `sequence ${i} has pointer ${p}`);
    if (binBytes !== undefined && end > binBytes) {
      fail(
        "sequence pointers",
        `sequence ${i} ends at byte ${end} but the .bin file has ${binBytes} bytes`,
      );
    }
    sequencePointers[i] = p;
  }
  for (let i = 0; i < D1; i++, at += 8) {
    const d = Number(view.getBigInt64(at, true));
    const prev = i === 0 ? 0 : documentIndices[i - 1];
    if (i === 0 && d !== 0) fail("document indices", `must start with 0, got ${d}`);
    if (d < prev || d > S) {
      fail("document indices", `entry ${i} is ${d}, expected ${prev} to ${S}`);
    }
    documentIndices[i] = d;
  }
  if (documentIndices[D1 - 1] !== S) {
    fail("document indices", `last entry is ${documentIndices[D1 - 1]}, expected ${S} sequences`);
  }
  return { dtype: dtype!, sequenceLengths, sequencePointers, documentIndices };
}

function safeCount(v: bigint, field: string, fail: (f: string, w: string) => never): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) / 16n) fail(field, `${v} is implausibly large`);
  return Number(v);
}

/** Options for {@link IndexedDatasetWriter.create}. */
export interface WriterOptions {
  /** Element type; pass this or `vocabSize`. */
  dtype?: TokenDType;
  /** Picks the element type with {@link dtypeForVocab}. */
  vocabSize?: number;
  /** Bytes buffered before each write to `.bin`. @default 1 << 20 */
  bufferBytes?: number;
}

/**
 * Streams documents to `PREFIX.bin` and writes `PREFIX.idx` on
 * {@link finalize}. Both are written under temporary names and renamed at
 * the end, so an existing dataset with the same prefix stays intact until the
 * new one is complete.
 *
 * @example
 * ```ts
 * import { IndexedDatasetWriter, IndexedDataset } from "./indexed_dataset.ts";
 * const prefix = (await Deno.makeTempDir()) + "/docs";
 * const w = await IndexedDatasetWriter.create(prefix, { vocabSize: 257 });
 * await w.addDocument([104, 105], 256);
 * await w.finalize();
 * using ds = await IndexedDataset.open(prefix);
 * ds.read(0); // Int32Array [104, 105, 256]
 * ```
 */
export class IndexedDatasetWriter {
  /** Element type of the `.bin` file. */
  readonly dtype: TokenDType;
  readonly #prefix: string;
  readonly #tmpBin: string;
  readonly #file: Deno.FsFile;
  readonly #buffer: Uint8Array;
  readonly #view: DataView;
  #used = 0;
  #lengths: number[] = [];
  #documentIndices: number[] = [0];
  #done = false;

  private constructor(
    prefix: string,
    dtype: TokenDType,
    file: Deno.FsFile,
    tmpBin: string,
    n: number,
  ) {
    this.#prefix = prefix;
    this.dtype = dtype;
    this.#file = file;
    this.#tmpBin = tmpBin;
    this.#buffer = new Uint8Array(n);
    this.#view = new DataView(this.#buffer.buffer);
  }

  /**
   * Opens a writer for `prefix.bin` / `prefix.idx`.
   *
   * @param prefix output path without extension
   * @param options the element type, or a vocabulary size to choose it
   * @returns the writer
   */
  static async create(prefix: string, options: WriterOptions): Promise<IndexedDatasetWriter> {
    const dtype = options.dtype ??
      (options.vocabSize !== undefined ? dtypeForVocab(options.vocabSize) : undefined);
    if (dtype === undefined || !(dtype in DTYPE_CODES)) {
      throw new DenotronError(
        `IndexedDatasetWriter: give a known dtype or a vocabSize (got ${dtype})`,
      );
    }
    const tmpBin = tempName(`${prefix}.bin`);
    const file = await Deno.open(tmpBin, { write: true, createNew: true });
    const bufferBytes = Math.max(64, options.bufferBytes ?? 1 << 20);
    return new IndexedDatasetWriter(prefix, dtype, file, tmpBin, bufferBytes - (bufferBytes % 8));
  }

  /** Number of documents added so far. */
  get documentCount(): number {
    return this.#documentIndices.length - 1;
  }

  /** Number of tokens written so far. */
  get tokenCount(): number {
    return this.#lengths.reduce((a, b) => a + b, 0);
  }

  /**
   * Appends one sequence to the current document (Megatron's `add_item`).
   *
   * @param tokens values that fit the element type
   */
  async addSequence(tokens: ArrayLike<number>): Promise<void> {
    this.#checkOpen();
    const size = DTYPE_SIZES[this.dtype];
    for (let i = 0; i < tokens.length; i++) {
      if (this.#used + size > this.#buffer.length) await this.#flush();
      this.#put(tokens[i], i);
      this.#used += size;
    }
    this.#lengths.push(tokens.length);
  }

  /** Closes the current document (Megatron's `end_document`). */
  endDocument(): void {
    this.#checkOpen();
    this.#documentIndices.push(this.#lengths.length);
  }

  /**
   * Adds a one-sequence document.
   *
   * @param tokens the document's tokens
   * @param eodId when given, appended as the end-of-document token
   */
  async addDocument(tokens: ArrayLike<number>, eodId?: number): Promise<void> {
    if (eodId === undefined) {
      await this.addSequence(tokens);
    } else {
      const withEod = new Array<number>(tokens.length + 1);
      for (let i = 0; i < tokens.length; i++) withEod[i] = tokens[i];
      withEod[tokens.length] = eodId;
      await this.addSequence(withEod);
    }
    this.endDocument();
  }

  /**
   * Flushes `.bin`, writes `.idx`, and renames both into place.
   *
   * @returns the prefix
   */
  async finalize(): Promise<string> {
    this.#checkOpen();
    try {
      await this.#flush();
      await this.#file.sync();
    } finally {
      this.#file.close();
      this.#done = true;
    }
    const tmpIdx = tempName(`${this.#prefix}.idx`);
    try {
      await Deno.writeFile(tmpIdx, encodeIndex(this.dtype, this.#lengths, this.#documentIndices));
      // .bin first, so the new .idx never appears before the data it points to.
      await Deno.rename(this.#tmpBin, `${this.#prefix}.bin`);
      await Deno.rename(tmpIdx, `${this.#prefix}.idx`);
    } catch (e) {
      await removeQuietly(tmpIdx);
      await removeQuietly(this.#tmpBin);
      throw e;
    }
    return this.#prefix;
  }

  /** Drops everything written; the files under the final names are untouched. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    this.#file.close();
    await removeQuietly(this.#tmpBin);
  }

  #put(value: number, i: number): void {
    const v = this.#view;
    const at = this.#used;
    const bad = () => {
      throw new RangeError(
        `IndexedDatasetWriter: token ${i} (${value}) does not fit ${this.dtype}`,
      );
    };
    if (this.dtype !== "float32" && this.dtype !== "float64" && !Number.isInteger(value)) bad();
    switch (this.dtype) {
      case "uint8":
        if (value < 0 || value > 0xff) bad();
        return v.setUint8(at, value);
      case "int8":
        if (value < -0x80 || value > 0x7f) bad();
        return v.setInt8(at, value);
      case "uint16":
        if (value < 0 || value > 0xffff) bad();
        return v.setUint16(at, value, true);
      case "int16":
        if (value < -0x8000 || value > 0x7fff) bad();
        return v.setInt16(at, value, true);
      case "int32":
        if (value < -0x80000000 || value > 0x7fffffff) bad();
        return v.setInt32(at, value, true);
      case "int64":
        return v.setBigInt64(at, BigInt(value), true);
      case "float32":
        return v.setFloat32(at, value, true);
      case "float64":
        return v.setFloat64(at, value, true);
    }
  }

  async #flush(): Promise<void> {
    await writeAll(this.#file, this.#buffer.subarray(0, this.#used));
    this.#used = 0;
  }

  #checkOpen(): void {
    if (this.#done) {
      throw new DenotronError(`IndexedDatasetWriter(${this.#prefix}): already finalized`);
    }
  }
}

/**
 * Read access to `PREFIX.bin` / `PREFIX.idx`. The index is loaded and
 * validated; tokens are read from `.bin` on demand, one range at a time.
 *
 * @example
 * ```ts
 * import { IndexedDataset } from "./indexed_dataset.ts";
 * async function firstTokens(prefix: string) {
 *   using ds = await IndexedDataset.open(prefix);
 *   return ds.read(0, 0, 8);
 * }
 * void firstTokens;
 * ```
 */
export class IndexedDataset {
  /** The path prefix (no extension). */
  readonly prefix: string;
  /** Element type of `.bin`. */
  readonly dtype: TokenDType;
  /** Tokens per sequence. (S) */
  readonly sequenceLengths: Int32Array;
  /** Byte offset of each sequence in `.bin`. (S) */
  readonly sequencePointers: Float64Array;
  /** 0, then the sequence count after each document. (D + 1) */
  readonly documentIndices: Float64Array;
  /** Size of `.bin` in bytes. */
  readonly binBytes: number;
  #file: Deno.FsFile | null;

  private constructor(prefix: string, tables: IndexTables, file: Deno.FsFile, binBytes: number) {
    this.prefix = prefix;
    this.dtype = tables.dtype;
    this.sequenceLengths = tables.sequenceLengths;
    this.sequencePointers = tables.sequencePointers;
    this.documentIndices = tables.documentIndices;
    this.binBytes = binBytes;
    this.#file = file;
  }

  /**
   * Opens and validates a dataset.
   *
   * @param prefix path without `.bin` / `.idx`
   * @returns the dataset; call {@link close} (or `using`) when done
   */
  static async open(prefix: string): Promise<IndexedDataset> {
    const idxPath = `${prefix}.idx`;
    const binPath = `${prefix}.bin`;
    const idxBytes = await readWhole(idxPath);
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(binPath);
    } catch (e) {
      throw new DenotronError(`${binPath}: cannot open the token file (${(e as Error).message})`);
    }
    if (!info.isFile) {
      throw new DenotronError(`${binPath}: the token file is not a file (a directory?)`);
    }
    const binBytes = info.size;
    const tables = decodeIndex(idxBytes, idxPath, binBytes);
    const file = await Deno.open(binPath, { read: true });
    return new IndexedDataset(prefix, tables, file, binBytes);
  }

  /** Number of sequences (S). */
  get sequenceCount(): number {
    return this.sequenceLengths.length;
  }

  /** Number of documents (D). */
  get documentCount(): number {
    return this.documentIndices.length - 1;
  }

  /**
   * Reads tokens of one sequence.
   *
   * @param index sequence number in [0, S)
   * @param offset first token to read
   * @default offset 0
   * @param length tokens to read; defaults to the rest of the sequence
   * @returns the tokens as int32
   */
  read(index: number, offset = 0, length?: number): Int32Array {
    const file = this.#file;
    if (file === null) throw new DenotronError(`${this.prefix}: dataset is closed`);
    if (!Number.isInteger(index) || index < 0 || index >= this.sequenceCount) {
      throw new RangeError(
        `${this.prefix}: sequence ${index} is outside [0, ${this.sequenceCount})`,
      );
    }
    const total = this.sequenceLengths[index];
    const n = length ?? total - offset;
    if (offset < 0 || n < 0 || offset + n > total) {
      throw new RangeError(
        `${this.prefix}: tokens [${offset}, ${
          offset + n
        }) of sequence ${index} are outside [0, ${total})`,
      );
    }
    const size = DTYPE_SIZES[this.dtype];
    const bytes = new Uint8Array(n * size);
    file.seekSync(this.sequencePointers[index] + offset * size, Deno.SeekMode.Start);
    let got = 0;
    while (got < bytes.length) {
      const r = file.readSync(bytes.subarray(got));
      if (r === null) {
        throw new DenotronError(`${this.prefix}.bin: unexpected end of file in sequence ${index}`);
      }
      got += r;
    }
    return toInt32(bytes, this.dtype);
  }

  /** Closes `.bin`; safe to call twice. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  /** Closes the files (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

function toInt32(bytes: Uint8Array, dtype: TokenDType): Int32Array {
  const b = bytes.buffer as ArrayBuffer;
  switch (dtype) {
    case "uint16":
      return Int32Array.from(new Uint16Array(b));
    case "int32":
      return new Int32Array(b);
    case "uint8":
      return Int32Array.from(bytes);
    case "int8":
      return Int32Array.from(new Int8Array(b));
    case "int16":
      return Int32Array.from(new Int16Array(b));
    case "int64":
      return Int32Array.from(new BigInt64Array(b), (v) => Number(v));
    case "float32":
      return Int32Array.from(new Float32Array(b));
    case "float64":
      return Int32Array.from(new Float64Array(b));
  }
}

async function readWhole(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new DenotronError(`${path}: cannot open the index file (${(e as Error).message})`);
  }
}
