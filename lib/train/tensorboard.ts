/**
 * defines: crc32c, maskedCrc32c, tfRecord, scalarEvent, textEvent, fileVersionEvent,
 *          TensorBoardWriter
 *
 * TensorBoard event files (`events.out.tfevents.<time>.<host>`), written by our own
 * small encoder: no npm package writes them without TensorFlow's bindings. A file is a
 * sequence of TFRecords — length (u64 little-endian), the masked CRC32C of those 8
 * bytes, the data, the masked CRC32C of the data — whose data are `Event` protobufs:
 * wall_time (1, double), step (2, int64), file_version (3, string) or summary (5), a
 * `Summary` of `Value`s with tag (1) and simple_value (2, float), or for text a
 * `tensor` (8, a DT_STRING TensorProto) marked for the "text" plugin (metadata 9).
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import type { MetricsRecord } from "./logging.ts";

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    // Castagnoli polynomial, reflected
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli) of `data`. */
export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15, add 0xa282ead8. */
export function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(data);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, BigInt(data.length), true);
  v.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  v.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** A protobuf message built field by field. */
class Proto {
  readonly #bytes: number[] = [];
  #varint(n: bigint): void {
    let x = BigInt.asUintN(64, n);
    while (x >= 0x80n) {
      this.#bytes.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.#bytes.push(Number(x));
  }
  #key(field: number, wire: number): void {
    this.#varint(BigInt((field << 3) | wire));
  }
  varint(field: number, n: number | bigint): this {
    this.#key(field, 0);
    this.#varint(BigInt(n));
    return this;
  }
  double(field: number, x: number): this {
    this.#key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, true);
    this.#bytes.push(...b);
    return this;
  }
  float(field: number, x: number): this {
    this.#key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, x, true);
    this.#bytes.push(...b);
    return this;
  }
  bytes(field: number, data: Uint8Array | Proto | string): this {
    const b = typeof data === "string"
      ? new TextEncoder().encode(data)
      : data instanceof Proto
      ? data.finish()
      : data;
    this.#key(field, 2);
    this.#varint(BigInt(b.length));
    for (const x of b) this.#bytes.push(x);
    return this;
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

/** An Event holding a Summary of scalar values, at `step`. */
export function scalarEvent(
  wallTime: number,
  step: number,
  values: Record<string, number>,
): Uint8Array {
  const summary = new Proto();
  for (const [tag, v] of Object.entries(values)) {
    summary.bytes(1, new Proto().bytes(1, tag).float(2, v));
  }
  return new Proto().double(1, wallTime).varint(2, step).bytes(5, summary).finish();
}

/** An Event holding one text value (TensorBoard's text plugin) under `tag`. */
export function textEvent(wallTime: number, step: number, tag: string, text: string): Uint8Array {
  const DT_STRING = 7;
  const tensor = new Proto().varint(1, DT_STRING)
    .bytes(2, new Proto().bytes(2, new Proto().varint(1, 1))) // shape [1]
    .bytes(8, text);
  const metadata = new Proto().bytes(1, new Proto().bytes(1, "text"));
  const value = new Proto().bytes(1, tag).bytes(9, metadata).bytes(8, tensor);
  return new Proto().double(1, wallTime).varint(2, step).bytes(5, new Proto().bytes(1, value))
    .finish();
}

/** The first Event of every file: its format version. */
export function fileVersionEvent(wallTime: number): Uint8Array {
  return new Proto().double(1, wallTime).bytes(3, "brain.Event:2").finish();
}

/** The scalars of a metrics record, under TensorBoard tags. */
function scalarsOf(r: MetricsRecord): Record<string, number> {
  const out: Record<string, number> = {};
  const put = (tag: string, v: unknown) => {
    if (typeof v === "number" && Number.isFinite(v)) out[tag] = v;
  };
  if (r.kind === "train") {
    put("train/loss", r.loss);
    put("train/lr", r.lr);
    put("train/grad_norm", r.gradNorm);
    put("train/tokens_per_second", r.tokensPerSecond);
    put("train/model_flops_per_second", r.flopsPerSecond);
    put("train/loss_scale", r.lossScale);
    put("train/skipped_steps", r.skippedSteps);
    put("curriculum/seq_length", r.seqLength);
    put("curriculum/global_batch_size", r.globalBatchSize);
    put("curriculum/kept_layers", r.keptLayers);
    for (const [k, v] of Object.entries(r.lossParts ?? {})) put(`train/${k}_loss`, v);
    put("memory/rss_bytes", Deno.memoryUsage().rss);
  } else if (r.kind === "eval") {
    put("eval/loss", r.loss);
    put("eval/perplexity", r.perplexity);
    put("eval/bits_per_byte", r.bitsPerByte);
    for (const [k, v] of Object.entries(r.parts ?? {})) {
      put(k.endsWith("_acc") ? `eval/${k.replace(/_acc$/, "_accuracy")}` : `eval/${k}_loss`, v);
    }
    for (const [k, v] of Object.entries(r.tasks ?? {})) put(`eval/${k}`, v);
  }
  return out;
}

/**
 * Writes a run's metrics as a TensorBoard event file in `dir` (Megatron's
 * `--tensorboard-dir`): every training and evaluation record as scalars at its
 * iteration, and the configuration as text. Each record is flushed at once, so
 * TensorBoard follows a run live and a killed run leaves whole records.
 */
export class TensorBoardWriter {
  /** The event file. */
  readonly path: string;
  #file: Deno.FsFile | null;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Creates a new event file in `dir` (made if missing), starting with the file version
   * and, if given, the configuration as text at step 0.
   *
   * @param dir the directory TensorBoard is pointed at
   * @param config the run's configuration (shown under the "config" tag)
   * @returns the writer
   */
  static async open(dir: string, config?: unknown): Promise<TensorBoardWriter> {
    const now = Date.now() / 1000;
    const host = Deno.hostname().replace(/[^A-Za-z0-9._-]/g, "_");
    const path = `${dir}/events.out.tfevents.${Math.floor(now)}.${host}.${Deno.pid}`;
    let file: Deno.FsFile;
    try {
      await Deno.mkdir(dir, { recursive: true });
      file = await Deno.open(path, { create: true, append: true });
    } catch (e) {
      throw new DenotronError(
        `tensorboardDir ${dir}: cannot write an event file there (${(e as Error).message})`,
      );
    }
    const w = new TensorBoardWriter(path, file);
    w.#append(fileVersionEvent(now));
    if (config !== undefined) {
      w.#append(textEvent(now, 0, "config", "```\n" + JSON.stringify(config, null, 2) + "\n```"));
    }
    return w;
  }

  #append(event: Uint8Array): void {
    if (!this.#file) throw new Error(`${this.path}: the TensorBoard writer is closed`);
    const bytes = tfRecord(event);
    let off = 0;
    while (off < bytes.length) off += this.#file.writeSync(bytes.subarray(off));
  }

  /**
   * Appends one metrics record's scalars at its iteration.
   *
   * @param r a training or evaluation record of metrics.jsonl
   */
  write(r: MetricsRecord): void {
    const values = scalarsOf(r);
    if (Object.keys(values).length === 0) return;
    this.#append(scalarEvent(Date.now() / 1000, r.iteration, values));
  }

  /** Closes the file. Safe to call twice. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
