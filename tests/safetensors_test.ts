import assert from "assert";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  type SafetensorsFile,
  tensorEntry,
  typedView,
  writeSafetensors,
} from "../lib/io/safetensors.ts";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_st_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SAMPLE: SafetensorsFile = {
  tensors: new Map([
    ["wte.weight", tensorEntry("F32", [2, 3], new Float32Array([1, 2, 3, 4, 5, 6.5]))],
    ["ln.bias", tensorEntry("BF16", [2], new Uint16Array([0x3f80, 0xc000]))],
    ["h.0.half", tensorEntry("F16", [1, 1], new Uint16Array([0x3c00]))],
    ["steps", tensorEntry("I64", [], new BigInt64Array([123n]))],
    ["ids", tensorEntry("I32", [3], new Int32Array([-1, 0, 7]))],
    ["mask", tensorEntry("U8", [0], new Uint8Array(0))],
  ]),
  metadata: { format: "pt", step: "10" },
};

/** A file from a header object and a data buffer, laid out by hand. */
function handMade(header: unknown, data: Uint8Array, declaredLength?: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(declaredLength ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("safetensors: write and read back every tensor, dtype, shape and metadata", async () => {
  await inTempDir(async (dir) => {
    await writeSafetensors(`${dir}/m.safetensors`, SAMPLE);
    const back = await readSafetensors(`${dir}/m.safetensors`);
    assert.deepEqual([...back.tensors.keys()], [...SAMPLE.tensors.keys()]);
    for (const [name, t] of SAMPLE.tensors) {
      const b = back.tensors.get(name)!;
      assert.equal(b.dtype, t.dtype, name);
      assert.deepEqual(b.shape, t.shape, name);
      assert.deepEqual(b.data, t.data, name);
    }
    assert.deepEqual(back.metadata, { format: "pt", step: "10" });
    assert.deepEqual([...typedView(back.tensors.get("wte.weight")!)], [1, 2, 3, 4, 5, 6.5]);
    assert.deepEqual([...typedView(back.tensors.get("steps")!)], [123n]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
  });
});

Deno.test("safetensors: the byte layout is the format's (u64 length, JSON, aligned data)", () => {
  const bytes = encodeSafetensors({
    tensors: new Map([["a", tensorEntry("I32", [2], new Int32Array([1, 2]))]]),
    metadata: {},
  });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assert.deepEqual(header, { a: { dtype: "I32", shape: [2], data_offsets: [0, 8] } });
  assert.deepEqual([...bytes.subarray(8 + n)], [1, 0, 0, 0, 2, 0, 0, 0]);
});

Deno.test("safetensors: reads a file laid out by hand, in any header order", () => {
  const data = new Uint8Array([9, 9, 1, 0, 0, 0]);
  const file = handMade({
    b: { dtype: "I32", shape: [1], data_offsets: [2, 6] },
    a: { dtype: "U8", shape: [2], data_offsets: [0, 2] },
  }, data);
  const { tensors } = decodeSafetensors(file, "hand");
  assert.deepEqual([...tensors.get("a")!.data], [9, 9]);
  assert.deepEqual([...typedView(tensors.get("b")!)], [1]);
});

Deno.test("readSafetensors: reads only the tensors asked for", async () => {
  await inTempDir(async (dir) => {
    await writeSafetensors(`${dir}/m.safetensors`, SAMPLE);
    const some = await readSafetensors(`${dir}/m.safetensors`, ["ids"]);
    assert.deepEqual([...some.tensors.keys()], ["ids"]);
    await assert.rejects(
      readSafetensors(`${dir}/m.safetensors`, ["nope"]),
      /m\.safetensors: no tensor "nope"/,
    );
  });
});

Deno.test("readSafetensors: missing, empty and foreign files name the file", async () => {
  await inTempDir(async (dir) => {
    await assert.rejects(readSafetensors(`${dir}/none`), /none: cannot open safetensors file/);
    await Deno.writeFile(`${dir}/empty`, new Uint8Array());
    await assert.rejects(readSafetensors(`${dir}/empty`), /empty: file is 0 bytes, too short/);
    await Deno.writeTextFile(`${dir}/text`, "this is not a safetensors file at all");
    await assert.rejects(
      readSafetensors(`${dir}/text`),
      /text: header length \d+ does not fit in the 37-byte file/,
    );
  });
});

Deno.test("decodeSafetensors: header faults name the file and the tensor", () => {
  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const data = new Uint8Array(8);
  const cases: [unknown, RegExp][] = [
    [{ w: { ...ok, dtype: "F33" } }, /f: tensor "w": unknown dtype "F33"/],
    [{ w: { ...ok, shape: [2, -1] } }, /f: tensor "w": bad shape \[2,-1\]/],
    [
      { w: { ...ok, shape: [3] } },
      /f: tensor "w": shape \[3\] of F32 needs 12 bytes, data_offsets give 8/,
    ],
    [
      { w: { ...ok, data_offsets: [0, 16] } },
      /f: tensor "w": data_offsets \[0, 16\] run past the 8-byte/,
    ],
    [{ w: { ...ok, data_offsets: [4, 0] } }, /f: tensor "w": bad data_offsets \[4,0\]/],
    [{ w: 5 }, /f: tensor "w": entry is not an object/],
    [
      { w: ok, v: { dtype: "F32", shape: [1], data_offsets: [4, 8] } },
      /f: tensor "v": data_offsets \[4, 8\] overlap another tensor/,
    ],
    [
      { v: { dtype: "F32", shape: [1], data_offsets: [4, 8] } },
      /f: tensor "v": gap before data_offsets \[4, 8\]/,
    ],
    [{ v: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, /f: 4 bytes after the last tensor/],
    [{ __metadata__: { a: 1 }, w: ok }, /f: __metadata__ "a" is not a string/],
    [[1, 2], /f: header must be a JSON object/],
  ];
  for (const [header, re] of cases) {
    assert.throws(() => decodeSafetensors(handMade(header, data), "f"), re);
  }
  const broken = handMade({ w: ok }, data);
  broken[8] = 0x78; // corrupt the JSON
  assert.throws(() => decodeSafetensors(broken, "f"), /f: header is not valid JSON/);
  assert.throws(
    () => decodeSafetensors(handMade({ w: ok }, data, 1 << 20), "f"),
    /f: header length 1048576 does not fit/,
  );
});

Deno.test("readSafetensors: a truncated file is caught before its data is read", async () => {
  await inTempDir(async (dir) => {
    const bytes = encodeSafetensors(SAMPLE);
    await Deno.writeFile(`${dir}/cut.safetensors`, bytes.subarray(0, bytes.length - 3));
    await assert.rejects(
      readSafetensors(`${dir}/cut.safetensors`),
      /cut\.safetensors: tensor "ids": data_offsets \[\d+, \d+\] run past .* \(truncated\?\)/,
    );
  });
});

Deno.test("writeSafetensors: shape/data mismatch names the tensor; old file untouched", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/m.safetensors`;
    await writeSafetensors(path, SAMPLE);
    const before = await Deno.readFile(path);
    const bad: SafetensorsFile = {
      tensors: new Map([
        ["fine", tensorEntry("F32", [1], new Float32Array([1]))],
        ["wrong", tensorEntry("F32", [2, 2], new Float32Array(3))],
      ]),
      metadata: {},
    };
    await assert.rejects(
      writeSafetensors(path, bad),
      /m\.safetensors: tensor "wrong": shape \[2,2\] of F32 needs 16 bytes, got 12/,
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
  });
});

Deno.test("writeSafetensors: a failure while writing data leaves the old file intact", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/m.safetensors`;
    await writeSafetensors(path, SAMPLE);
    const before = await Deno.readFile(path);
    // A tensor whose bytes fail on the write itself (after the header went
    // out) stands in for a crash or a full disk part-way through.
    const real = new Uint8Array(4);
    let reads = 0;
    const tensors = new Map(SAMPLE.tensors);
    tensors.set("late", {
      dtype: "U8",
      shape: [4],
      get data(): Uint8Array {
        if (++reads > 3) throw new Error("disk full");
        return real;
      },
    });
    await assert.rejects(writeSafetensors(path, { tensors, metadata: {} }), /disk full/);
    assert.equal(reads, 4, "the failure came while writing data, not while checking");
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
  });
});
