/**
 * Test helpers: closeness with a useful message, seeded data, and `checkOp`, the one
 * call that checks an op's forward and backward against a float64 reference and
 * finite differences.
 */
import assert from "assert";
import type { Device } from "../lib/device.ts";
import { device } from "../lib/device.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import "../lib/autograd.ts";
import { crossEntropy } from "../lib/ops/crossentropy.ts";
import { matmul } from "../lib/ops/matmul.ts";
import { matmulBackRef, type MatmulCase, matmulRef } from "./reference.ts";
import type { GPT } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { saveCheckpoint } from "../lib/train/checkpoint.ts";

/** Asserts |a - e| <= atol + rtol·|e| elementwise; names the worst element. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  tol: { rtol?: number; atol?: number } = {},
): void {
  const rtol = tol.rtol ?? 1e-5, atol = tol.atol ?? 1e-6;
  assert.equal(
    actual.length,
    expected.length,
    `${what}: length ${actual.length} != ${expected.length}`,
  );
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    const excess = err - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    assert.fail(
      `${what}: element ${worst} is ${actual[worst]}, expected ${
        expected[worst]
      } (rtol ${rtol}, atol ${atol})`,
    );
  }
}

/** Deterministic pseudo-random numbers in [-scale, scale) (mulberry32). */
export function randomArray(n: number, seed: number, scale = 1): Float64Array {
  let a = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** Random integers in [0, hi). */
export function randomInts(n: number, seed: number, hi: number): Int32Array {
  return Int32Array.from(randomArray(n, seed), (v) => Math.floor(((v + 1) / 2) * hi) % hi);
}

/** An input of an op under test. */
export interface OpInput {
  name: string;
  shape: number[];
  /** Float data (rounded to f32 for the op; the reference sees the rounded values). */
  data?: Float64Array;
  /** Index data (int32), never differentiated. */
  ints?: Int32Array;
  /** Whether to check this input's gradient. @default true for float inputs */
  grad?: boolean;
}

/** What checkOp needs to know about an op. */
export interface OpCase {
  name: string;
  inputs: OpInput[];
  /** The op under test. */
  run: (xs: Tensor[]) => Tensor;
  /** float64 forward: the inputs in order (float as Float64Array, ints as Int32Array). */
  forward: (xs: (Float64Array | Int32Array)[]) => Float64Array;
  /** float64 gradients of sum(out · g) with respect to each float input (null: skip). */
  backward?: (xs: (Float64Array | Int32Array)[], g: Float64Array) => (Float64Array | null)[];
  tol?: { rtol?: number; atol?: number };
  /** Finite-difference probes per input on the f32 op. @default 6 */
  probes?: number;
  /** Finite-difference step. @default 1e-2 */
  h?: number;
  device?: Device;
}

const f32 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));

/**
 * Checks an op: forward against the float64 reference; each input gradient against
 * the reference's analytic gradient; that analytic gradient against central finite
 * differences of the reference itself (so the reference is checked too); and the
 * op's own gradient against finite differences of the op at a few coordinates.
 */
export function checkOp(c: OpCase): void {
  const dev = c.device ?? device();
  const tol = c.tol ?? { rtol: 1e-4, atol: 1e-5 };
  const hostIn: (Float64Array | Int32Array)[] = c.inputs.map((
    i,
  ) => (i.ints ? i.ints : f32(i.data!)));
  const expected = c.forward(hostIn);
  const g = randomArray(expected.length, 99);
  tidy(() => {
    const xs = c.inputs.map((inp, k) =>
      inp.ints
        ? Tensor.fromArray(inp.ints, inp.shape, { device: dev })
        : Tensor.fromArray(hostIn[k] as Float64Array, inp.shape, {
          device: dev,
          requiresGrad: inp.grad ?? true,
        })
    );
    const out = c.run(xs);
    assertClose(out.toArray(), expected, `${c.name} forward`, tol);
    if (!c.backward) return;
    out.backward(Tensor.fromArray(g, out.shape, { device: dev }));
    const ref = c.backward(hostIn, g);
    c.inputs.forEach((inp, k) => {
      const r = ref[k];
      if (inp.ints || inp.grad === false || !r) return;
      const got = xs[k].grad!.toArray();
      assertClose(got, r, `${c.name} d${inp.name} vs float64 reference`, tol);
      // The reference's gradient against its own finite differences (float64, tight).
      const x = Float64Array.from(hostIn[k] as Float64Array);
      const objective = (arr: Float64Array) => {
        const ins = hostIn.slice();
        ins[k] = arr;
        return c.forward(ins).reduce((s, v, i) => s + v * g[i], 0);
      };
      const probes = Math.min(c.probes ?? 6, x.length);
      for (let p = 0; p < probes; p++) {
        const i = Math.floor((p + 0.5) * x.length / probes);
        const h = 1e-6;
        const xp = Float64Array.from(x), xm = Float64Array.from(x);
        xp[i] += h;
        xm[i] -= h;
        const fd = (objective(xp) - objective(xm)) / (2 * h);
        assertClose([r[i]], [fd], `${c.name} reference d${inp.name}[${i}] vs finite differences`, {
          rtol: 1e-5,
          atol: 1e-6,
        });
      }
      // The op's own gradient against finite differences of the op (f32, loose).
      for (let p = 0; p < probes; p++) {
        const i = Math.floor((p + 0.5) * x.length / probes);
        const h = c.h ?? 1e-2;
        const evalAt = (delta: number) =>
          tidy(() => {
            const arr = Float32Array.from(x);
            arr[i] += delta;
            const xsP = xs.map((
              t,
              j,
            ) => (j === k ? Tensor.fromArray(arr, t.shape, { device: dev }) : t));
            const o = c.run(xsP).toArray();
            let s = 0;
            for (let j = 0; j < o.length; j++) s += o[j] * g[j];
            return s;
          });
        const fd = (evalAt(h) - evalAt(-h)) / (2 * h);
        assertClose(
          [got[i]],
          [fd],
          `${c.name} d${inp.name}[${i}] vs finite differences of the op`,
          {
            rtol: 2e-2,
            atol: 2e-3,
          },
        );
      }
    });
  });
}

/** matmul() on `dev` for one of the shapes of MATMUL_CASES, forward and backward. */
export function checkMatmul(
  c: MatmulCase,
  dev: Device,
  tol?: { rtol?: number; atol?: number },
): void {
  const aShape = c.transA ? [c.K, c.M] : [c.M, c.K],
    bShape = c.transB ? [c.N, c.K] : [c.K, c.N];
  checkOp({
    name: `matmul on ${dev.name} ${JSON.stringify(c)}`,
    device: dev,
    tol,
    inputs: [
      {
        name: "a",
        shape: c.batch > 1 ? [c.batch, ...aShape] : aShape,
        data: randomArray(c.batch * c.M * c.K, 4),
      },
      {
        name: "b",
        shape: c.bBatched ? [c.batch, ...bShape] : bShape,
        data: randomArray((c.bBatched ? c.batch : 1) * c.K * c.N, 5),
      },
    ],
    run: ([a, b]) => matmul(a, b, { transA: c.transA, transB: c.transB }),
    forward: ([a, b]) => matmulRef(a as Float64Array, b as Float64Array, c),
    backward: ([a, b], g) => matmulBackRef(a as Float64Array, b as Float64Array, c, g),
  });
}

/**
 * crossEntropy() over padded logits on `dev`: a fresh gradient is overwritten (stale NaN
 * left in the allocator's cache never shows; ignored rows and padding columns are zero),
 * an existing one is added into (two backward passes give twice one).
 */
export function checkCrossEntropyOverwrite(dev: Device, dtype: "f32" | "bf16"): void {
  const [N, V, ld] = [4, 5, 8];
  const targets = Int32Array.from([1, -1, 4, 0]);
  const z = randomArray(N * ld, 53);
  const grads = (times: number) =>
    tidy(() => {
      const l = Tensor.fromArray(z, [N, ld], { device: dev, dtype, requiresGrad: true });
      const t = Tensor.fromArray(targets, [N], { device: dev });
      // stale NaN in the cache block that the fresh gradient will reuse
      Tensor.full([N, ld], NaN, { device: dev, dtype }).dispose();
      for (let i = 0; i < times; i++) crossEntropy(l, t, { classes: V }).backward();
      return Float64Array.from(l.grad!.toArray());
    });
  const once = grads(1), twice = grads(2);
  const what = `${dev.name} ${dtype}`;
  assert.ok(once.every(Number.isFinite), `${what}: stale memory leaked into the gradient`);
  once.forEach((v, k) => {
    if (Math.floor(k / ld) === 1 || k % ld >= V) assert.equal(v, 0, `${what} [${k}]`);
  });
  assertClose(twice, once.map((v) => 2 * v), `${what} accumulated`, {
    rtol: dtype === "f32" ? 1e-6 : 1e-2,
    atol: 1e-7,
  });
}

/**
 * Saves `model` (a byte-level GPT) as a training run's checkpoint in `dir`, with the
 * model keys of its shape and the byte tokenizer, as tools/train.ts would: what the
 * commands that take `--checkpoint` read.
 */
export async function saveByteRun(dir: string, model: GPT, iteration = 1): Promise<void> {
  const c = model.config;
  const optimizer = new AdamW(model.params);
  try {
    await saveCheckpoint(dir, {
      model,
      optimizer,
      iteration,
      consumedSamples: 0,
      config: {
        model: {
          nLayer: c.nLayer,
          nHead: c.nHead,
          nEmbd: c.nEmbd,
          vocabSize: null,
          seqLength: c.blockSize,
          dropout: 0,
        },
        data: { tokenizer: "byte" },
      },
    });
  } finally {
    optimizer.dispose();
  }
}
