/**
 * Every fused op, forward and backward, against the float64 reference and finite
 * differences (tests/helpers.ts checkOp).
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import {
  add,
  attention,
  biasActivation,
  biasGelu,
  crossEntropy,
  dropout,
  embedding,
  layernorm,
  linear,
  linearActivation,
  linearGelu,
  matmul,
} from "../lib/ops/mod.ts";
import { Generator } from "../lib/random.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import {
  assertClose,
  checkCrossEntropyOverwrite,
  checkMatmul,
  checkOp,
  randomArray,
} from "./helpers.ts";
import * as ref from "./reference.ts";

for (const dev of ["cpu", "cpu:builtin"]) {
  Deno.test(`linear() on ${dev} matches the float64 reference, with and without bias`, () => {
    for (
      const [M, K, N, bias] of [[5, 7, 3, true], [33, 20, 17, false], [1, 64, 130, true]] as const
    ) {
      checkOp({
        name: `linear ${M}x${K}x${N}`,
        device: device(dev),
        inputs: [
          { name: "x", shape: [M, K], data: randomArray(M * K, 1) },
          { name: "w", shape: [N, K], data: randomArray(N * K, 2) },
          ...(bias ? [{ name: "b", shape: [N], data: randomArray(N, 3) }] : []),
        ],
        run: ([x, w, b]) => linear(x, w, b ?? null),
        forward: ([x, w, b]) =>
          ref.linearRef(x as Float64Array, w as Float64Array, (b as Float64Array) ?? null, M, K, N),
        backward: ([x, w], g) => {
          const r = ref.linearBackRef(x as Float64Array, w as Float64Array, g, M, K, N);
          return [r.dx, r.dw, r.db];
        },
      });
    }
  });

  Deno.test(`linearGelu() on ${dev} matches the float64 reference, with and without bias`, () => {
    for (
      const [M, K, N, bias] of [[5, 7, 3, true], [12, 16, 24, false], [3, 40, 64, true]] as const
    ) {
      checkOp({
        name: `linearGelu ${M}x${K}x${N}`,
        device: device(dev),
        inputs: [
          { name: "x", shape: [M, K], data: randomArray(M * K, 11) },
          { name: "w", shape: [N, K], data: randomArray(N * K, 12) },
          ...(bias ? [{ name: "b", shape: [N], data: randomArray(N, 13) }] : []),
        ],
        run: ([x, w, b]) => linearGelu(x, w, b ?? null),
        forward: ([x, w, b]) =>
          ref.linearGeluRef(
            x as Float64Array,
            w as Float64Array,
            (b as Float64Array) ?? null,
            M,
            K,
            N,
          ),
        backward: ([x, w, b], g) => {
          const r = ref.linearGeluBackRef(
            x as Float64Array,
            w as Float64Array,
            (b as Float64Array) ?? null,
            g,
            M,
            K,
            N,
          );
          return bias ? [r.dx, r.dw, r.db] : [r.dx, r.dw];
        },
      });
    }
  });

  Deno.test(`matmul() on ${dev} handles transposes, batches and a shared operand`, () => {
    for (const c of ref.MATMUL_CASES) checkMatmul(c, device(dev));
  });
}

Deno.test("the built-in GEMM and OpenBLAS agree on a large, odd-sized product", () => {
  const [M, K, N] = [131, 517, 259];
  const a = randomArray(M * K, 7), b = randomArray(K * N, 8);
  const results = ["cpu", "cpu:builtin"].map((d) =>
    tidy(() =>
      matmul(
        Tensor.fromArray(a, [M, K], { device: device(d) }),
        Tensor.fromArray(b, [K, N], { device: device(d) }),
      ).toArray()
    )
  );
  const expected = ref.matmulRef(a, b, {
    batch: 1,
    M,
    N,
    K,
    transA: false,
    transB: false,
    bBatched: false,
  });
  assertClose(results[0], expected, "default GEMM", { rtol: 1e-4, atol: 1e-4 });
  assertClose(results[1], expected, "built-in GEMM", { rtol: 1e-4, atol: 1e-4 });
  assert.match(device("cpu:builtin").info(), /gemm=builtin/);
});

Deno.test("embedding() matches the reference and scatter-adds repeated tokens", () => {
  const [B, T, C, V, P] = [2, 5, 6, 7, 8];
  const tok = Int32Array.from([0, 3, 3, 6, 1, 3, 3, 3, 2, 0]);
  checkOp({
    name: "embedding",
    inputs: [
      { name: "tokens", shape: [B, T], ints: tok },
      { name: "wte", shape: [V, C], data: randomArray(V * C, 11) },
      { name: "wpe", shape: [P, C], data: randomArray(P * C, 12) },
    ],
    run: ([t, wte, wpe]) => embedding(t, wte, wpe),
    forward: ([t, wte, wpe]) =>
      ref.embeddingRef(t as Int32Array, wte as Float64Array, wpe as Float64Array, B, T, C),
    backward: ([t], g) => {
      const r = ref.embeddingBackRef(t as Int32Array, g, V, P, B, T, C);
      return [null, r.dwte, r.dwpe];
    },
  });
});

Deno.test("layernorm() matches the reference (forward, dx, dweight, dbias)", () => {
  const [N, C] = [6, 37];
  checkOp({
    name: "layernorm",
    inputs: [
      { name: "x", shape: [2, 3, C], data: randomArray(N * C, 21, 3) },
      { name: "w", shape: [C], data: randomArray(C, 22) },
      { name: "b", shape: [C], data: randomArray(C, 23) },
    ],
    run: ([x, w, b]) => layernorm(x, w, b),
    forward: ([x, w, b]) =>
      ref.layernormRef(x as Float64Array, w as Float64Array, b as Float64Array, N, C),
    backward: ([x, w], g) => {
      const r = ref.layernormBackRef(x as Float64Array, w as Float64Array, g, N, C);
      return [r.dx, r.dw, r.db];
    },
  });
});

Deno.test("biasGelu() matches the tanh-approximation GELU reference", () => {
  const [N, C] = [9, 70];
  checkOp({
    name: "biasGelu",
    inputs: [
      { name: "x", shape: [N, C], data: randomArray(N * C, 31, 4) },
      { name: "b", shape: [C], data: randomArray(C, 32) },
    ],
    run: ([x, b]) => biasGelu(x, b),
    forward: ([x, b]) => ref.biasGeluRef(x as Float64Array, b as Float64Array, N, C),
    backward: ([x, b], g) => ref.biasGeluBackRef(x as Float64Array, b as Float64Array, g, C),
  });
  // Far tails: gelu(x) -> x and -> 0 without NaN from exp overflow.
  const y = tidy(() => biasGelu(Tensor.fromArray([-100, -30, 30, 100], [1, 4])).toArray());
  assertClose(y, [0, 0, 30, 100], "biasGelu tails", { atol: 1e-6 });
});

Deno.test("biasActivation() matches the exact (erf) GELU and tanh references", () => {
  const [N, C] = [9, 70];
  const cases = [
    ["gelu-erf", ref.geluErfRef, ref.geluErfGradRef],
    ["tanh", Math.tanh, ref.tanhGradRef],
  ] as const;
  for (const [act, f, grad] of cases) {
    checkOp({
      name: `biasActivation ${act}`,
      inputs: [
        { name: "x", shape: [N, C], data: randomArray(N * C, 41, 4) },
        { name: "b", shape: [C], data: randomArray(C, 42) },
      ],
      run: ([x, b]) => biasActivation(x, b, act),
      forward: ([x, b]) => ref.biasActRef(x as Float64Array, b as Float64Array, C, f),
      backward: ([x, b], g) => ref.biasActBackRef(x as Float64Array, b as Float64Array, g, C, grad),
    });
  }
  // The exact GELU keeps its relative accuracy in the negative tail, where 1 + erf
  // cancels, and saturates without NaN.
  const xs = [-100, -12, -8, -5, -3, -1e-3, 0, 1e-3, 3, 8, 100];
  const y = tidy(() => biasActivation(Tensor.fromArray(xs, [1, xs.length]), null, "gelu-erf"));
  assertClose(y.toArray(), xs.map(ref.geluErfRef), "gelu-erf tails", { rtol: 1e-5, atol: 1e-30 });
  y.dispose();
  const t = tidy(() => biasActivation(Tensor.fromArray(xs, [1, xs.length]), null, "tanh"));
  assertClose(t.toArray(), xs.map(Math.tanh), "tanh", { rtol: 1e-6, atol: 0 });
  t.dispose();
  assert.throws(
    () => tidy(() => biasActivation(Tensor.zeros([1, 2]), null, "relu" as "tanh")),
    /biasActivation: activation must be one of "gelu-tanh", "gelu-erf", "tanh", got "relu"/,
  );
});

Deno.test("erfRef() and erfcRef(), the tests' float64 erf, match tabulated values", () => {
  // Abramowitz & Stegun, Table 7.1, and erfc(5) = 1.5374597944280349e-12
  const table = [[0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149], [
    2,
    0.9953222650189527,
  ], [3, 0.9999779095030014]];
  for (const [x, e] of table) {
    assertClose([ref.erfRef(x), ref.erfRef(-x)], [e, -e], `erf(${x})`, {
      rtol: 1e-14,
      atol: 0,
    });
  }
  assertClose(
    [ref.erfcRef(5), ref.erfcRef(10)],
    [1.5374597944280349e-12, 2.0884875837625446e-45],
    "erfc",
    {
      rtol: 1e-13,
      atol: 0,
    },
  );
});

for (const dev of ["cpu", "cpu:builtin"]) {
  Deno.test(`linearActivation() on ${dev} with the exact GELU and tanh matches the reference`, () => {
    const [M, K, N] = [6, 9, 20];
    for (
      const [act, f, grad] of [
        ["gelu-erf", ref.geluErfRef, ref.geluErfGradRef],
        ["tanh", Math.tanh, ref.tanhGradRef],
      ] as const
    ) {
      checkOp({
        name: `linearActivation ${act}`,
        device: device(dev),
        inputs: [
          { name: "x", shape: [M, K], data: randomArray(M * K, 51) },
          { name: "w", shape: [N, K], data: randomArray(N * K, 52) },
          { name: "b", shape: [N], data: randomArray(N, 53) },
        ],
        run: ([x, w, b]) => linearActivation(x, w, b, act),
        forward: ([x, w, b]) =>
          ref.linearRef(x as Float64Array, w as Float64Array, b as Float64Array, M, K, N).map(f),
        backward: ([x, w, b], g) => {
          const pre = ref.linearRef(
            x as Float64Array,
            w as Float64Array,
            b as Float64Array,
            M,
            K,
            N,
          );
          const r = ref.linearBackRef(
            x as Float64Array,
            w as Float64Array,
            pre.map((u, i) => g[i] * grad(u)),
            M,
            K,
            N,
          );
          return [r.dx, r.dw, r.db];
        },
      });
    }
  });
}

Deno.test("attention() matches the float64 causal attention, forward and backward", () => {
  for (const [B, T, C, NH] of [[2, 5, 8, 2], [1, 17, 12, 3], [1, 1, 4, 1]]) {
    checkOp({
      name: `attention B${B} T${T} C${C} NH${NH}`,
      inputs: [{
        name: "qkv",
        shape: [B, T, 3 * C],
        data: randomArray(B * T * 3 * C, 41 + T, 1.5),
      }],
      run: ([qkv]) => attention(qkv, NH),
      forward: ([qkv]) => ref.attentionRef(qkv as Float64Array, B, T, C, NH),
      backward: ([qkv], g) => [ref.attentionBackRef(qkv as Float64Array, g, B, T, C, NH)],
    });
  }
});

Deno.test("attention() is causal: a later token never changes an earlier output", () => {
  const [T, C] = [6, 8];
  const data = randomArray(T * 3 * C, 5);
  const a = tidy(() => attention(Tensor.fromArray(data, [1, T, 3 * C]), 2).toArray());
  const changed = Float64Array.from(data);
  for (let i = (T - 1) * 3 * C; i < T * 3 * C; i++) changed[i] += 1; // perturb the last token
  const b = tidy(() => attention(Tensor.fromArray(changed, [1, T, 3 * C]), 2).toArray());
  assertClose(
    b.subarray(0, (T - 1) * C),
    a.subarray(0, (T - 1) * C),
    "outputs before the last token",
    { atol: 0, rtol: 0 },
  );
});

Deno.test("crossEntropy() matches the reference mean loss and gradient, ignoring -1 targets", () => {
  const [N, V] = [7, 11];
  const targets = Int32Array.from([3, -1, 0, 10, 5, -1, 2]);
  const z = randomArray(N * V, 51, 5);
  checkOp({
    name: "crossEntropy",
    inputs: [
      { name: "logits", shape: [N, V], data: z },
      { name: "targets", shape: [N], ints: targets },
    ],
    run: ([l, t]) => crossEntropy(l, t),
    forward: ([l, t]) =>
      Float64Array.of(ref.crossEntropyRef(l as Float64Array, t as Int32Array, N, V)),
    backward: (
      [l, t],
      g,
    ) => [ref.crossEntropyBackRef(l as Float64Array, t as Int32Array, N, V, g[0]), null],
  });
});

Deno.test("crossEntropy() over padded logits counts only the first `classes` columns", () => {
  const [N, V, ld] = [5, 7, 16];
  const targets = Int32Array.from([3, -1, 0, 6, 2]);
  const z = randomArray(N * ld, 52, 5);
  const real = (l: Float64Array) =>
    Float64Array.from({ length: N * V }, (_, k) => l[Math.floor(k / V) * ld + (k % V)]);
  checkOp({
    name: "crossEntropy (padded)",
    inputs: [
      { name: "logits", shape: [N, ld], data: z },
      { name: "targets", shape: [N], ints: targets },
    ],
    run: ([l, t]) => crossEntropy(l, t, { classes: V }),
    forward: ([l, t]) =>
      Float64Array.of(ref.crossEntropyRef(real(l as Float64Array), t as Int32Array, N, V)),
    backward: ([l, t], g) => {
      const d = ref.crossEntropyBackRef(real(l as Float64Array), t as Int32Array, N, V, g[0]);
      const out = new Float64Array(N * ld); // padding columns: no gradient
      d.forEach((v, k) => (out[Math.floor(k / V) * ld + (k % V)] = v));
      return [out, null];
    },
  });
  assert.throws(
    () =>
      tidy(() =>
        crossEntropy(Tensor.fromArray(z, [N, ld]), Tensor.fromArray(targets, [N]), {
          classes: 17,
        })
      ),
    /crossEntropy: classes 17 must be an integer in \[1, 16\]/,
  );
  assert.throws(
    () =>
      tidy(() =>
        crossEntropy(
          Tensor.fromArray(z, [N, ld]),
          Tensor.fromArray(Int32Array.of(0, 0, 0, 0, 9), [N]),
          {
            classes: V,
          },
        )
      ),
    /target 9 at row 4 is outside \[-1, 7\)/,
  );
});

Deno.test("crossEntropy() backward overwrites a fresh gradient and adds into an existing one", () => {
  for (const dev of ["cpu", "cpu:builtin"]) {
    for (const dtype of ["f32", "bf16"] as const) checkCrossEntropyOverwrite(device(dev), dtype);
  }
});

Deno.test("crossEntropy() stays finite for huge logits", () => {
  const loss = tidy(() =>
    crossEntropy(
      Tensor.fromArray([1e4, 0, -1e4, 3e4], [2, 2]),
      Tensor.fromArray(Int32Array.from([1, 0]), [2]),
    ).item()
  );
  assertClose([loss], [(1e4 + 4e4) / 2], "loss", { rtol: 1e-6 });
});

Deno.test("add() sums and sends the gradient to both inputs", () => {
  checkOp({
    name: "add",
    inputs: [
      { name: "a", shape: [3, 4], data: randomArray(12, 61) },
      { name: "b", shape: [3, 4], data: randomArray(12, 62) },
    ],
    run: ([a, b]) => add(a, b),
    forward: ([a, b]) => Float64Array.from(a as Float64Array, (v, i) => v + (b as Float64Array)[i]),
    backward: (_, g) => [g, g],
  });
});

Deno.test("dropout() keeps exactly the elements the counter RNG keeps, scaled by 1/(1-p)", () => {
  const n = 5000, p = 0.3, seed = 77;
  const x = randomArray(n, 71);
  const gen = new Generator(seed);
  gen.take(123); // start mid-stream: offsets matter
  checkOp({
    name: "dropout",
    inputs: [{ name: "x", shape: [n], data: x }],
    run: ([t]) => {
      const g = new Generator(seed);
      g.take(123);
      return dropout(t, p, g);
    },
    forward: ([t]) =>
      Float64Array.from(
        t as Float64Array,
        (v, i) => (ref.dropoutKeepRef(seed, 123 + i, p) ? v / (1 - p) : 0),
      ),
    backward: (
      _,
      g,
    ) => [Float64Array.from(g, (v, i) => (ref.dropoutKeepRef(seed, 123 + i, p) ? v / (1 - p) : 0))],
    tol: { rtol: 1e-6, atol: 1e-6 },
    probes: 3,
  });
  const kept =
    Array.from({ length: n }, (_, i) => ref.dropoutKeepRef(seed, 123 + i, p)).filter(Boolean)
      .length;
  assert.ok(Math.abs(kept / n - (1 - p)) < 0.03, `kept fraction ${kept / n}`);
  assert.equal(gen.offset, 123, "the caller's generator was not touched");
});

Deno.test("dropout() masks are identical for 1, 2 and 3 threads", () => {
  const dev = device();
  const before = dev.numThreads;
  const n = 300_000;
  const x = Tensor.full([n], 1);
  try {
    const masks = [1, 2, 3].map((threads) => {
      dev.numThreads = threads;
      return tidy(() => dropout(x, 0.5, new Generator(5)).toArray());
    });
    assert.deepEqual(masks[1], masks[0]);
    assert.deepEqual(masks[2], masks[0]);
  } finally {
    dev.numThreads = before;
    x.dispose();
  }
});

Deno.test("reductions give bit-identical gradients for 1 and 2 threads", () => {
  const dev = device();
  const before = dev.numThreads;
  const [N, C] = [300, 512];
  const x = randomArray(N * C, 81), g = randomArray(N * C, 82);
  try {
    const grads = [1, 2].map((threads) => {
      dev.numThreads = threads;
      return tidy(() => {
        const xt = Tensor.fromArray(x, [N, C], { requiresGrad: true });
        const w = Tensor.full([C], 1, { requiresGrad: true }),
          b = Tensor.zeros([C], { requiresGrad: true });
        layernorm(xt, w, b).backward(Tensor.fromArray(g, [N, C]));
        return [...w.grad!.toArray(), ...b.grad!.toArray()];
      });
    });
    assert.deepEqual(grads[1], grads[0]);
  } finally {
    dev.numThreads = before;
  }
});
