/**
 * TensorBoard event files: CRC-32C against the published test vectors (RFC 3720 B.4 and
 * the common "123456789" check value), and a reader written here from the format
 * (TFRecord framing with masked CRCs, Event and Summary protobufs) reading back what a
 * training run wrote with --tensorboard-dir: every logged loss, the evaluations and the
 * configuration text. No TensorBoard or TensorFlow reader can be installed from the
 * registries this machine reaches, so none runs here.
 */
import assert from "assert";
import {
  crc32c,
  maskedCrc32c,
  scalarEvent,
  TensorBoardWriter,
  tfRecord,
} from "../lib/train/tensorboard.ts";
import { readCliRun, runScript, tinyCorpus, TRAIN_SCRIPT, trainCliArgs } from "./train_helpers.ts";

Deno.test("crc32c matches the published check values", () => {
  const bytes = (f: (i: number) => number) => Uint8Array.from({ length: 32 }, (_, i) => f(i));
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(bytes(() => 0)), 0x8a9136aa);
  assert.equal(crc32c(bytes(() => 0xff)), 0x62a8ab43);
  assert.equal(crc32c(bytes((i) => i)), 0x46dd794e);
  assert.equal(crc32c(bytes((i) => 31 - i)), 0x113fdb5c);
  const c = crc32c(new Uint8Array(0));
  assert.equal(c, 0);
  assert.equal(maskedCrc32c(new Uint8Array(0)), 0xa282ead8);
});

/** A protobuf field: number, wire type and value (bigint, number or bytes). */
type Field = { n: number; wire: number; v: bigint | number | Uint8Array };

function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let i = 0;
  const varint = () => {
    let x = 0n, s = 0n;
    for (;;) {
      const c = b[i++];
      x |= BigInt(c & 0x7f) << s;
      s += 7n;
      if (!(c & 0x80)) return x;
    }
  };
  while (i < b.length) {
    const key = Number(varint()), n = key >> 3, wire = key & 7;
    if (wire === 0) out.push({ n, wire, v: varint() });
    else if (wire === 1) (out.push({ n, wire, v: dv.getFloat64(i, true) }), i += 8);
    else if (wire === 5) (out.push({ n, wire, v: dv.getFloat32(i, true) }), i += 4);
    else if (wire === 2) {
      const len = Number(varint());
      out.push({ n, wire, v: b.subarray(i, i + len) });
      i += len;
    } else throw new Error(`wire type ${wire}`);
  }
  return out;
}

const sub = (fs: Field[], n: number) => fs.filter((f) => f.n === n).map((f) => f.v as Uint8Array);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

interface Event {
  wallTime: number;
  step: number;
  version?: string;
  values: { tag: string; value?: number; text?: string }[];
}

/** Every event of a file, each record's CRCs checked. */
function readEvents(file: Uint8Array): Event[] {
  const out: Event[] = [];
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  for (let off = 0; off < file.length;) {
    const len = Number(dv.getBigUint64(off, true));
    assert.equal(dv.getUint32(off + 8, true), maskedCrc32c(file.subarray(off, off + 8)));
    const data = file.subarray(off + 12, off + 12 + len);
    assert.equal(dv.getUint32(off + 12 + len, true), maskedCrc32c(data), `record at ${off}`);
    off += 16 + len;
    const fs = fields(data);
    const e: Event = {
      wallTime: fs.find((f) => f.n === 1)?.v as number,
      step: Number(fs.find((f) => f.n === 2)?.v ?? 0n),
      values: [],
    };
    const version = sub(fs, 3)[0];
    if (version) e.version = text(version);
    for (const summary of sub(fs, 5)) {
      for (const v of sub(fields(summary), 1)) {
        const vf = fields(v);
        const tag = text(sub(vf, 1)[0]);
        const simple = vf.find((f) => f.n === 2)?.v as number | undefined;
        const tensor = sub(vf, 8)[0];
        const str = tensor ? sub(fields(tensor), 8)[0] : undefined;
        e.values.push({ tag, value: simple, text: str && text(str) });
      }
    }
    out.push(e);
  }
  return out;
}

Deno.test("a scalar event reads back through the reader written from the format", () => {
  const rec = tfRecord(scalarEvent(1234.5, 7, { "train/loss": 2.5, "a/b": -1 }));
  const [e] = readEvents(rec);
  assert.equal(e.wallTime, 1234.5);
  assert.equal(e.step, 7);
  assert.deepEqual(e.values, [
    { tag: "train/loss", value: 2.5, text: undefined },
    { tag: "a/b", value: -1, text: undefined },
  ]);
});

Deno.test("--tensorboard-dir: every logged loss, the evaluations and the config, at their steps", async () => {
  const corpus = await tinyCorpus();
  corpus.data.close?.();
  const dir = await Deno.makeTempDir({ prefix: "denotron-tb-" });
  try {
    const r = await runScript(TRAIN_SCRIPT, [
      ...trainCliArgs(corpus.data.prefix, `${dir}/run`, 1),
      "--log-interval",
      "1",
      "--tensorboard-dir",
      `${dir}/tb`,
    ]);
    assert.equal(r.code, 0, r.out);
    const run = await readCliRun(`${dir}/run`, r.out);
    const files = [...Deno.readDirSync(`${dir}/tb`)].map((e) => e.name);
    assert.equal(files.length, 1);
    assert.match(files[0], /^events\.out\.tfevents\.\d+\./);
    const events = readEvents(await Deno.readFile(`${dir}/tb/${files[0]}`));
    assert.equal(events[0].version, "brain.Event:2");
    const config = events.flatMap((e) => e.values).find((v) => v.tag === "config");
    assert.match(config!.text!, /"trainIters": 4/);
    const series = (tag: string) =>
      events.flatMap((e) => e.values.filter((v) => v.tag === tag).map((v) => [e.step, v.value!]));
    const f32 = (x: number) => Math.fround(x);
    assert.deepEqual(series("train/loss"), run.losses.map((l, i) => [i + 1, f32(l)]));
    assert.deepEqual(series("eval/loss").map(([, v]) => v), run.evals.map(f32));
    for (
      const tag of ["train/lr", "train/grad_norm", "train/tokens_per_second", "memory/rss_bytes"]
    ) {
      assert.equal(series(tag).length, 4, tag);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a tensorboard directory that cannot be written is one error naming it", async () => {
  const file = await Deno.makeTempFile({ prefix: "denotron-tb-" });
  try {
    await assert.rejects(
      () => TensorBoardWriter.open(`${file}/tb`),
      /tensorboardDir .*\/tb: cannot write an event file there/,
    );
  } finally {
    await Deno.remove(file);
  }
});
