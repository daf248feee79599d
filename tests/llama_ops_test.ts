/**
 * The Llama-family ops — rmsnorm, rope (with ropeInvFreq) and swiglu — forward and
 * backward against float64 references and finite differences (tests/helpers.ts checkOp),
 * in bf16 and fp16 against fp32, and their one-line errors for bad shapes.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { DenotronError } from "../lib/errors.ts";
import { rmsnorm, rope, ropeInvFreq, type RopeScaling, swiglu } from "../lib/ops/mod.ts";
import { type DType, Tensor, tidy } from "../lib/tensor.ts";
import { assertClose, checkOp, randomArray } from "./helpers.ts";
import { checkMixed, relErr, TOL } from "./mixed_helpers.ts";
import * as ref from "./reference_llama.ts";

/** Llama 3.1's rope_scaling, as in its Hugging Face config.json. */
const LLAMA31: RopeScaling = {
  ropeType: "llama3",
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositionEmbeddings: 8192,
};

/** Frequencies spread over a few turns per position and the slow end, like a real head's. */
const freqs = (hs: number) => Float64Array.from(ropeInvFreq(hs, 100));

const ROPE_CASES: (ref.RopeCase & { what: string })[] = [
  { what: "GQA", B: 2, T: 5, nHead: 4, nKvHead: 2, hs: 8, pos0: 0 },
  { what: "MQA", B: 1, T: 6, nHead: 3, nKvHead: 1, hs: 6, pos0: 0 },
  { what: "MHA", B: 2, T: 3, nHead: 2, nKvHead: 2, hs: 4, pos0: 0 },
  { what: "GQA at pos0 7 (a KV-cache step)", B: 2, T: 4, nHead: 4, nKvHead: 2, hs: 8, pos0: 7 },
  // fp32 angles would be off by up to 1e5 · 2⁻²⁴ ≈ 6e-3 rad here: the kernels use double
  { what: "MQA at pos0 100000", B: 1, T: 3, nHead: 2, nKvHead: 1, hs: 16, pos0: 100_000 },
];

for (const dev of ["cpu", "cpu:builtin"]) {
  Deno.test(`rmsnorm() on ${dev} matches the float64 reference (forward, dx, dweight)`, () => {
    for (const [N, C] of [[6, 37], [1, 1], [3, 130]]) {
      checkOp({
        name: `rmsnorm ${N}x${C}`,
        device: device(dev),
        inputs: [
          { name: "x", shape: N === 6 ? [2, 3, C] : [N, C], data: randomArray(N * C, 21, 3) },
          { name: "w", shape: [C], data: randomArray(C, 22) },
        ],
        run: ([x, w]) => rmsnorm(x, w),
        forward: ([x, w]) => ref.rmsnormRef(x as Float64Array, w as Float64Array, N, C),
        backward: ([x, w], g) => {
          const r = ref.rmsnormBackRef(x as Float64Array, w as Float64Array, g, N, C);
          return [r.dx, r.dw];
        },
      });
    }
  });

  Deno.test(`rope() on ${dev} matches the float64 reference: GQA, MQA, MHA, pos0`, () => {
    for (const c of ROPE_CASES) {
      const width = (c.nHead + 2 * c.nKvHead) * c.hs;
      checkOp({
        name: `rope ${c.what}`,
        device: device(dev),
        inputs: [
          {
            name: "qkv",
            shape: [c.B, c.T, width],
            data: randomArray(c.B * c.T * width, 41 + c.T, 1.5),
          },
          { name: "invFreq", shape: [c.hs / 2], data: freqs(c.hs), grad: false },
        ],
        run: ([qkv, invFreq]) => rope(qkv, { ...c, invFreq }),
        forward: ([qkv, f]) => ref.ropeRef(qkv as Float64Array, f as Float64Array, c),
        backward: ([_, f], g) => [ref.ropeBackRef(g, f as Float64Array, c), null],
      });
    }
  });

  Deno.test(`swiglu() on ${dev} matches the float64 reference, tails without NaN`, () => {
    for (const [N, F] of [[9, 70], [1, 1], [4, 33]]) {
      checkOp({
        name: `swiglu ${N}x${F}`,
        device: device(dev),
        inputs: [{ name: "h", shape: [N, 2 * F], data: randomArray(N * 2 * F, 31 + F, 4) }],
        run: ([h]) => swiglu(h),
        forward: ([h]) => ref.swigluRef(h as Float64Array, N, F),
        backward: ([h], g) => [ref.swigluBackRef(h as Float64Array, g, N, F)],
      });
    }
    // silu(g) -> 0 and -> g far out, and the same for the gradient's silu'(g) -> 0 and 1
    tidy(() => {
      const h = Tensor.fromArray([-100, -30, 30, 100, 2, 2, 2, 2], [1, 8], {
        device: device(dev),
        requiresGrad: true,
      });
      const y = swiglu(h);
      assertClose(y.toArray(), [-0, -0, 60, 200], "swiglu tails", { atol: 1e-6 });
      y.backward(Tensor.fromArray([1, 1, 1, 1], [1, 4], { device: device(dev) }));
      assertClose(h.grad!.toArray(), [0, 0, 2, 2, -0, -0, 30, 100], "swiglu tail gradients", {
        atol: 1e-6,
      });
    });
  });
}

Deno.test("rope() of the last tokens from pos0 equals the tail of rope() over all of them", () => {
  const c = { B: 2, T: 9, nHead: 4, nKvHead: 2, hs: 8 };
  const width = (c.nHead + 2 * c.nKvHead) * c.hs, skip = 5;
  const data = randomArray(c.B * c.T * width, 3);
  tidy(() => {
    const invFreq = Tensor.fromArray(ropeInvFreq(c.hs, 10000, LLAMA31), [c.hs / 2]);
    const all = rope(Tensor.fromArray(data, [c.B, c.T, width]), { ...c, invFreq }).toArray();
    const tail = (x: ArrayLike<number>, T: number, from: number) =>
      Array.from(
        { length: c.B },
        (_, b) => Array.from(x).slice((b * T + from) * width, (b + 1) * T * width),
      ).flat();
    const late = rope(
      Tensor.fromArray(tail(data, c.T, skip), [c.B, c.T - skip, width]),
      { ...c, invFreq, pos0: skip },
    ).toArray();
    assertClose(late, tail(all, c.T, skip), "rope from pos0", { rtol: 0, atol: 0 });
  });
});

Deno.test("rope() adds into an existing qkv gradient and overwrites a fresh one", () => {
  const c = { B: 1, T: 3, nHead: 2, nKvHead: 1, hs: 4, pos0: 2 };
  const width = 16;
  tidy(() => {
    const invFreq = Tensor.fromArray(ropeInvFreq(c.hs, 10000), [2]);
    const qkv = Tensor.fromArray(randomArray(c.T * width, 5), [1, c.T, width], {
      requiresGrad: true,
    });
    const g = randomArray(c.T * width, 6);
    const expected = ref.ropeBackRef(g, Float64Array.from(invFreq.toArray()), c);
    rope(qkv, { ...c, invFreq }).backward(Tensor.fromArray(g, [1, c.T, width]));
    assertClose(qkv.grad!.toArray(), expected, "first backward", { rtol: 1e-6, atol: 1e-7 });
    rope(qkv, { ...c, invFreq }).backward(Tensor.fromArray(g, [1, c.T, width]));
    assertClose(qkv.grad!.toArray(), expected.map((v) => 2 * v), "second backward", {
      rtol: 1e-6,
      atol: 1e-7,
    });
  });
});

Deno.test("ropeInvFreq() gives theta^(-2j/d), and Llama 3's scaling the known frequencies", () => {
  assertClose(ropeInvFreq(4, 10000), [1, 0.01], "plain, d 4", { rtol: 1e-7, atol: 0 });
  const plain = ropeInvFreq(128, 500000), scaled = ropeInvFreq(128, 500000, LLAMA31);
  assert.equal(scaled.length, 64);
  // Hugging Face's _compute_llama3_parameters evaluated in float64 outside this project:
  // j 0 and 28 are in the high band (kept), 29 and 32 in the blended band, 40 and 63 in
  // the low band (divided by 8).
  const known: [number, number][] = [
    [0, 1],
    [28, 0.003211445994752591],
    [29, 0.002166570763503359],
    [32, 0.0005248461609929547],
    [40, 3.428102195952591e-05],
    [63, 3.068925988914511e-07],
  ];
  for (const [j, f] of known) {
    assertClose([scaled[j]], [f], `scaled[${j}]`, { rtol: 1e-7, atol: 0 });
  }
  // Every j from the formula written another way: f · (s + (1 − s)/factor) with the blend s
  // = clamp((L / wavelength − low) / (high − low), 0, 1), which is 1 in the high band and 0
  // in the low band.
  for (let j = 0; j < 64; j++) {
    const f = 500000 ** (-j / 64), wavelength = 2 * Math.PI / f;
    const s = Math.min(1, Math.max(0, (8192 / wavelength - 1) / 3));
    assertClose([plain[j]], [f], `plain[${j}]`, { rtol: 1e-7, atol: 0 });
    assertClose([scaled[j]], [f * (s + (1 - s) / 8)], `scaled[${j}]`, { rtol: 1e-7, atol: 0 });
  }
});

for (const dtype of ["bf16", "f16"] as const) {
  Deno.test(`${dtype}: rmsnorm, rope, swiglu match fp32`, () => {
    for (const devName of ["cpu", "cpu:builtin"]) {
      checkMixed(
        "rmsnorm",
        dtype,
        [
          { name: "x", shape: [6, 70], data: randomArray(420, 9, 3) },
          { name: "w", shape: [70], data: randomArray(70, 10) },
        ],
        ([x, w]) => rmsnorm(x, w),
        { devName },
      );
      for (const c of ROPE_CASES) {
        const width = (c.nHead + 2 * c.nKvHead) * c.hs;
        using invFreq = Tensor.fromArray(freqs(c.hs), [c.hs / 2], { device: device(devName) });
        checkMixed(
          `rope ${c.what}`,
          dtype,
          [
            { name: "qkv", shape: [c.B, c.T, width], data: randomArray(c.B * c.T * width, 14) },
          ],
          ([qkv]) => rope(qkv, { ...c, invFreq }),
          { devName },
        );
      }
      checkMixed(
        "swiglu",
        dtype,
        [
          { name: "h", shape: [9, 140], data: randomArray(1260, 12, 3) },
        ],
        ([h]) => swiglu(h),
        { devName },
      );
    }
  });

  Deno.test(`${dtype} rmsnorm weights accumulate fp32 main gradients directly`, () => {
    const [N, C] = [9, 40];
    const xd = randomArray(N * C, 21, 2), wd = randomArray(C, 22);
    tidy(() => {
      const round = (d: Float64Array) => Tensor.fromArray(d, [d.length], { dtype }).toArray();
      const grads = (dt: DType, main: boolean) => {
        const w = Tensor.fromArray(round(wd), [C], { dtype: dt, requiresGrad: true });
        if (main) w.grad = Tensor.zeros([C]);
        const x = Tensor.fromArray(round(xd), [N, C], { dtype: dt });
        for (let i = 0; i < 2; i++) {
          rmsnorm(x, w).backward(
            Tensor.fromArray(randomArray(N * C, 26 + i), [N, C], { dtype: dt }),
          );
        }
        return w.grad!;
      };
      const want = grads("f32", false), got = grads(dtype, true);
      assert.equal(got.dtype, "f32");
      const e = relErr(got.toArray(), want.toArray());
      assert.ok(e <= TOL[dtype], `dweight: relative error ${e.toExponential(2)}`);
    });
  });
}

Deno.test("rmsnorm, rope, ropeInvFreq, swiglu refuse bad shapes with one-line DenotronErrors", () => {
  const f = (...shape: number[]) => Tensor.zeros(shape);
  const cases: [() => unknown, RegExp][] = [
    [() => rmsnorm(f(2, 4), f(3)), /^rmsnorm: weight has shape \[3\], expected \[4\]/],
    [() => rmsnorm(f(2, 0), f(0)), /^rmsnorm: x must have at least one dimension/],
    [() => rmsnorm(f(2, 4), f(4), 0), /^rmsnorm: eps must be a number/],
    [
      () => rmsnorm(f(2, 4), Tensor.zeros([4], { dtype: "bf16" })),
      /^rmsnorm: weight has dtype bf16/,
    ],
    [() => swiglu(f(3, 5)), /^swiglu: h \[3, 5\] must have an even last dimension 2F/],
    [() => swiglu(Tensor.zeros([2], { dtype: "i32" })), /^swiglu: h has dtype i32/],
    [
      () => rope(f(2, 3, 32), { nHead: 2, nKvHead: 1, invFreq: f(2) }),
      /^rope: invFreq has shape \[2\], expected \[4\] \(half the head size 8\)/,
    ],
    [
      () => rope(f(2, 3, 30), { nHead: 2, nKvHead: 1, invFreq: f(4) }),
      /^rope: qkv \[2, 3, 30\] must have a last dimension of \(nHead \+ 2·nKvHead\) · hs = 4 · hs/,
    ],
    [
      () => rope(f(1, 2, 12), { nHead: 2, nKvHead: 1, invFreq: f(1) }),
      /^rope: qkv \[1, 2, 12\] must have .* even head size/,
    ],
    [
      () => rope(f(6, 32), { nHead: 2, nKvHead: 1, invFreq: f(4) }),
      /^rope: qkv must have 3 dimensions, got shape \[6, 32\]/,
    ],
    [
      () => rope(f(2, 3, 32), { nHead: 2, nKvHead: 0, invFreq: f(4) }),
      /^rope: nKvHead must be a positive integer, got 0/,
    ],
    [
      () => rope(f(2, 3, 32), { nHead: 2, nKvHead: 1, invFreq: f(4), pos0: -1 }),
      /^rope: pos0 must be a non-negative integer, got -1/,
    ],
    [
      () =>
        rope(f(2, 3, 32), { nHead: 2, nKvHead: 1, invFreq: Tensor.zeros([4], { dtype: "bf16" }) }),
      /^rope: invFreq has dtype bf16, expected f32/,
    ],
    [
      () =>
        rope(f(2, 3, 32), {
          nHead: 2,
          nKvHead: 1,
          invFreq: Tensor.zeros([4], { device: device("cpu:builtin") }),
        }),
      /^rope: invFreq is on cpu:builtin but qkv is on cpu/,
    ],
    [() => ropeInvFreq(5, 10000), /^ropeInvFreq: headDim must be a positive even integer, got 5/],
    [() => ropeInvFreq(8, 1), /^ropeInvFreq: theta must be a finite number above 1, got 1/],
    [
      () => ropeInvFreq(8, 1e4, { ...LLAMA31, highFreqFactor: 1 }),
      /^ropeInvFreq: scaling.highFreqFactor 1 must exceed lowFreqFactor 1/,
    ],
    [
      () => ropeInvFreq(8, 1e4, { ...LLAMA31, ropeType: "yarn" as "llama3" }),
      /^ropeInvFreq: rope scaling type "yarn" is not supported/,
    ],
  ];
  tidy(() => {
    for (const [run, pattern] of cases) {
      assert.throws(run, (e: unknown) => {
        assert.ok(e instanceof DenotronError, `${pattern}: got ${e}`);
        assert.match(e.message, pattern);
        assert.ok(!e.message.includes("\n"), `not one line: ${e.message}`);
        return true;
      }, `no error for ${pattern}`);
    }
  });
});

Deno.test("the C entry points refuse bad sizes and NULL pointers, naming the argument", () => {
  const lib = device("cpu").lib;
  using buf = Tensor.zeros([64]);
  const p = buf.ptr;
  const cases: [() => number, RegExp][] = [
    [
      () => lib.sym.dn_rmsnorm_forward(0, p, p, p, p, 0n, 4n, 1e-5),
      /dn_rmsnorm_forward: N must be positive, got 0/,
    ],
    [
      () => lib.sym.dn_rmsnorm_forward(0, p, null, p, p, 2n, 4n, 1e-5),
      /dn_rmsnorm_forward: argument 'rstd' is NULL/,
    ],
    [
      () => lib.sym.dn_rmsnorm_backward(0, p, p, p, p, p, p, 1n << 40n, 1n << 10n),
      /dn_rmsnorm_backward: sizes \(N, C\) = \(1099511627776, 1024\) span more than 2\^46/,
    ],
    [
      () => lib.sym.dn_rope_forward(0, p, p, p, 1n, 2n, 2n, 1n, 3n, 0n),
      /dn_rope_forward: head size HS=3 must be even/,
    ],
    [
      () => lib.sym.dn_rope_forward(0, p, p, p, 1n, 2n, 2n, 0n, 4n, 0n),
      /dn_rope_forward: NKV must be positive, got 0/,
    ],
    [
      () => lib.sym.dn_rope_forward(0, p, p, p, 1n, 2n, 2n, 1n, 4n, -1n),
      /dn_rope_forward: pos0=-1 must be in \[0, 2\^46 - T\]/,
    ],
    [
      () => lib.sym.dn_rope_forward(0, p, p, null, 1n, 2n, 2n, 1n, 4n, 0n),
      /dn_rope_forward: argument 'inv_freq' is NULL/,
    ],
    [
      () => lib.sym.dn_rope_forward(0, p, p, p, 1n, 2n, 2n, 1n, 4n, 0n),
      /dn_rope_forward: out and qkv must be different buffers/,
    ],
    [
      () => lib.sym.dn_rope_backward(0, null, p, p, 1n, 2n, 2n, 1n, 4n, 0n, 0),
      /dn_rope_backward: argument 'dqkv' is NULL/,
    ],
    [
      () => lib.sym.dn_swiglu_forward(0, p, p, 3n, -1n),
      /dn_swiglu_forward: F must be positive, got -1/,
    ],
    [
      () => lib.sym.dn_swiglu_backward(3, p, p, p, 3n, 4n, 0),
      /dn_swiglu_backward: dtype i32 \(code 3\) is not a float dtype/,
    ],
    [
      () => lib.sym.dn_swiglu_backward(0, p, p, null, 3n, 4n, 0),
      /dn_swiglu_backward: argument 'inp' is NULL/,
    ],
  ];
  for (const [call, pattern] of cases) assert.throws(() => lib.check(call(), "call"), pattern);
});
