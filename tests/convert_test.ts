/**
 * The 16-bit conversions of the CPU kernels (kernels/cpu/convert.h, through dn_cast)
 * against exact references: every one of the 65,536 bf16 and fp16 bit patterns widened,
 * and fp32 → 16-bit rounding (nearest, ties to even) on every 16-bit value, every tie
 * between neighbours and the fp32 values on either side of it, the overflow threshold,
 * subnormals, NaN payloads, and random bit patterns, against a float64 nearest-value
 * search.
 */
import assert from "assert";
import { type DType, DTYPE_CODE, Tensor } from "../lib/tensor.ts";

type Half = "bf16" | "f16";

const f32Bits = new Uint32Array(1);
const f32View = new Float32Array(f32Bits.buffer);
const fromBits = (u: number) => ((f32Bits[0] = u >>> 0), f32View[0]);
const toBits = (f: number) => ((f32View[0] = f), f32Bits[0]);

/** The exact value of a 16-bit pattern (NaN for NaNs). */
function decode(kind: Half, h: number): number {
  if (kind === "bf16") return fromBits(h << 16);
  const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * 2 ** -24;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** fp32 bits a NaN pattern widens to: the same sign and payload (fp16 NaNs quieted, as
 * F16C does; bf16 is the top half of an fp32, so its bits carry over unchanged). */
function widenedNaN(kind: Half, h: number): number {
  if (kind === "bf16") return (h << 16) >>> 0;
  return (((h & 0x8000) << 16) | 0x7fc00000 | ((h & 0x3ff) << 13)) >>> 0;
}

/** The 16-bit pattern an fp32 NaN narrows to: sign and top payload kept, quieted. */
function narrowedNaN(kind: Half, u: number): number {
  if (kind === "bf16") return (u >>> 16) | 0x40;
  return ((u >>> 16) & 0x8000) | 0x7e00 | ((u >>> 13) & 0x3ff);
}

/** Positive finite 16-bit values in increasing order, then +inf as the next "value"
 * (2^16 for fp16, 2^128 for bf16): rounding past the largest finite value goes there,
 * and inf's pattern is even, as ties to even require. */
function ladder(kind: Half): { values: Float64Array; patterns: Uint16Array } {
  const max = kind === "bf16" ? 0x7f7f : 0x7bff;
  const values = new Float64Array(max + 2), patterns = new Uint16Array(max + 2);
  for (let h = 0; h <= max; h++) {
    values[h] = decode(kind, h);
    patterns[h] = h;
  }
  values[max + 1] = kind === "bf16" ? 2 ** 128 : 2 ** 16;
  patterns[max + 1] = kind === "bf16" ? 0x7f80 : 0x7c00;
  return { values, patterns };
}

/** Round-to-nearest-even of a finite or infinite fp32 value, by searching the ladder. */
function roundRef(lad: ReturnType<typeof ladder>, x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const { values, patterns } = lad;
  const top = values.length - 1;
  if (a >= values[top]) return sign | patterns[top];
  let lo = 0, hi = top; // values[lo] <= a < values[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (values[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - values[lo], dh = values[hi] - a;
  const pick = dl < dh ? lo : dh < dl ? hi : (patterns[lo] & 1 ? hi : lo);
  return sign | patterns[pick];
}

function upload16(kind: Half, bits: Uint16Array): Tensor {
  const t = Tensor.empty([bits.length], { dtype: kind });
  const lib = t.device.lib;
  lib.check(lib.sym.dn_memcpy_h2d(t.ptr, bits, BigInt(bits.byteLength)), "upload");
  return t;
}

function download16(t: Tensor): Uint16Array {
  const out = new Uint16Array(t.numel);
  const lib = t.device.lib;
  lib.check(lib.sym.dn_memcpy_d2h(out, t.ptr, BigInt(out.byteLength)), "download");
  return out;
}

function castBits(src: Tensor, to: DType): Tensor {
  const out = Tensor.empty(src.shape, { dtype: to });
  const lib = src.device.lib;
  lib.check(
    lib.sym.dn_cast(DTYPE_CODE[to], out.ptr, DTYPE_CODE[src.dtype], src.ptr, BigInt(src.numel)),
    "cast",
  );
  return out;
}

for (const kind of ["bf16", "f16"] as const) {
  Deno.test(`${kind} → f32 is exact for all 65,536 bit patterns`, () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    using t = upload16(kind, all);
    using wide = castBits(t, "f32");
    const got = new Uint32Array((wide.toArray() as Float32Array).buffer);
    for (let h = 0; h < 65536; h++) {
      const v = decode(kind, h);
      const want = Number.isNaN(v) ? widenedNaN(kind, h) : toBits(v);
      if (got[h] !== want) {
        assert.fail(
          `${kind} 0x${h.toString(16)}: got 0x${got[h].toString(16)}, want 0x${want.toString(16)}`,
        );
      }
    }
  });

  Deno.test(`f32 → ${kind} rounds to nearest even: ties, overflow, subnormals, NaN`, () => {
    const lad = ladder(kind);
    const inputs: number[] = [];
    const push = (u: number) => inputs.push(u >>> 0);
    // every 16-bit value itself (round trip), NaNs included
    for (let h = 0; h < 65536; h++) push(kind === "bf16" ? h << 16 : toBits(decode(kind, h)));
    // every midpoint between neighbours, and one fp32 ulp either side of it
    for (let i = 0; i + 1 < lad.values.length; i++) {
      const mid = (lad.values[i] + lad.values[i + 1]) / 2;
      if (!(mid < 2 ** 128)) continue; // above fp32's range: only inf
      const u = toBits(mid);
      assert.equal(fromBits(u), mid, "midpoints are exact in fp32");
      for (const d of [-1, 0, 1]) {
        push(u + d);
        push((u + d) | 0x80000000);
      }
    }
    // fp32 subnormals, the largest fp32 values and infinities, NaN payloads
    for (const u of [1, 2, 3, 0x7fffff, 0x400000, 0x7f7fffff, 0x7f800000, 0x7f800001, 0x7fc00000]) {
      push(u);
      push(u | 0x80000000);
    }
    for (let i = 0; i < 64; i++) push(0x7f800000 | ((i * 0x1f3a7) & 0x7fffff) | 1);
    // random bit patterns
    let s = 12345;
    for (let i = 0; i < 200_000; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      push(s);
    }
    const bits = Uint32Array.from(inputs);
    using src = Tensor.fromArray(new Float32Array(bits.buffer), [bits.length]);
    using narrow = castBits(src, kind);
    const got = download16(narrow);
    for (let i = 0; i < bits.length; i++) {
      const x = fromBits(bits[i]);
      const want = Number.isNaN(x) ? narrowedNaN(kind, bits[i]) : roundRef(lad, x);
      if (got[i] !== want) {
        assert.fail(
          `f32 0x${bits[i].toString(16)} (${x}) → ${kind}: got 0x${got[i].toString(16)}, want 0x${
            want.toString(16)
          }`,
        );
      }
    }
  });
}

Deno.test("bf16 ↔ f16 casts go through fp32 and round once", () => {
  using a = Tensor.fromArray([1, -2.5, 65504, 1e5, 1e-8, 3.140625], [6], { dtype: "bf16" });
  using h = a.cast("f16");
  const got = h.toArray();
  const want = Float32Array.from(a.toArray(), (v) => v);
  // bf16 values that fp16 holds exactly stay; 1e5 overflows to inf; 1e-8 underflows to 0
  // bf16 holds 65504 as 65536, which fp16 cannot: inf
  assert.equal(want[2], 65536);
  assert.deepEqual(Array.from(got), [1, -2.5, Infinity, Infinity, 0, 3.140625]);
});

Deno.test("Tensor.fromArray / toArray / copyFromHost round 16-bit values", () => {
  using t = Tensor.fromArray([1 + 2 ** -9, 1 + 3 * 2 ** -9], [2], { dtype: "bf16" });
  // ties: 1 + 2^-9 is halfway between 1 and 1 + 2^-8 → even (1); 1 + 3·2^-9 → 1 + 2^-7
  assert.deepEqual(Array.from(t.toArray()), [1, 1 + 2 ** -7]);
  t.copyFromHost(Float32Array.of(0.1, -0.1));
  assert.deepEqual(Array.from(t.toArray()), [fromBits(0x3dcd << 16), fromBits(0xbdcd << 16)]);
});
