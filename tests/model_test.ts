/** The GPT model: architecture, gradients, and that it learns. */
import assert from "assert";
import { GPT, GPT_PRESETS, type GPTConfig } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { clipFactor, clipGradNorm, gradNorm } from "../lib/optim/clip.ts";
import { noGrad } from "../lib/autograd.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { assertClose, randomArray, randomInts } from "./helpers.ts";
import { checkModelGradients } from "./reference_gpt.ts";

const micro: GPTConfig = { vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 8 };

Deno.test("the GPT-2 124M configuration has exactly 124,439,808 parameters", () => {
  using model = new GPT(GPT_PRESETS.gpt2);
  assert.equal(model.numParameters(), 124_439_808);
  assert.match(String(model), /124,439,808 parameters/);
});

Deno.test("GPT-2's layout: tied output layer, 4x MLP, pre-LN blocks, final LN", () => {
  using model = new GPT(micro);
  const names = model.namedParameters().map(([n, t]) => `${n}${JSON.stringify(t.shape)}`);
  assert.deepEqual(names.slice(0, 2), ["emb.wte[13,8]", "emb.wpe[8,8]"]);
  assert.ok(
    names.includes("h.1.mlp.fc.weight[32,8]") && names.includes("h.1.mlp.proj.weight[8,32]"),
  );
  assert.ok(names.includes("h.0.attn.qkv.weight[24,8]"));
  assert.deepEqual(names.slice(-2), ["lnf.weight[8]", "lnf.bias[8]"]);
  assert.ok(!names.some((n) => n.startsWith("lm_head")), "no separate output matrix");
});

Deno.test("a whole tiny GPT's loss and every gradient match the float64 reference", () => {
  using model = new GPT(micro, { seed: 3 });
  checkModelGradients(model, { B: 2, T: 6, seed: 17, probes: 4 });
});

Deno.test("a fresh GPT's initial loss is close to ln(vocab)", () => {
  using model = new GPT({ ...GPT_PRESETS.tiny, vocabSize: 1000 }, { seed: 5 });
  const [B, T] = [4, 32];
  const loss = noGrad(() =>
    tidy(() =>
      model.loss(
        Tensor.fromArray(randomInts(B * T, 3, 1000), [B, T]),
        Tensor.fromArray(randomInts(B * T, 4, 1000), [B, T]),
      )
        .item()
    )
  );
  assert.ok(
    Math.abs(loss - Math.log(1000)) < 0.05,
    `initial loss ${loss} vs ln(1000) = ${Math.log(1000)}`,
  );
});

Deno.test("a tiny GPT memorises a fixed batch (loss below 0.05)", () => {
  using model = new GPT(GPT_PRESETS.tiny, { seed: 7 });
  const opt = new AdamW(model.params, { lr: 3e-3, weightDecay: 0 });
  const [B, T] = [4, 32];
  const x = Tensor.fromArray(randomInts(B * T, 5, 257), [B, T]),
    y = Tensor.fromArray(randomInts(B * T, 6, 257), [B, T]);
  let loss = Infinity;
  for (let step = 0; step < 300 && loss >= 0.05; step++) {
    loss = tidy(() => {
      const l = model.loss(x, y);
      l.backward();
      return l.item();
    });
    opt.step(3e-3, clipFactor(gradNorm(model.params.grad), 1));
    model.params.zeroGrad();
  }
  assert.ok(loss < 0.05, `loss after training ${loss}`);
  opt.dispose();
  x.dispose();
  y.dispose();
});

Deno.test("a padded vocabulary (vocabMultiple) trains exactly like the unpadded model", () => {
  const padded: GPTConfig = { ...micro, vocabMultiple: 8 }; // 13 → 16 rows
  const [B, T] = [2, 8];
  const x = Tensor.fromArray(randomInts(B * T, 21, 13), [B, T]),
    y = Tensor.fromArray(randomInts(B * T, 22, 13), [B, T]);
  const run = (config: GPTConfig) => {
    using model = new GPT(config, { seed: 5 });
    const opt = new AdamW(model.params, { lr: 1e-2 });
    const losses: number[] = [];
    let firstGrads = new Map<string, Float32Array>();
    for (let step = 0; step < 4; step++) {
      losses.push(tidy(() => {
        const l = model.loss(x, y);
        l.backward();
        return l.item();
      }));
      if (step === 0) {
        firstGrads = new Map(
          [...model.namedParameters()].map(([n, t]) => [n, t.grad!.toArray() as Float32Array]),
        );
      }
      opt.step(1e-2, 1);
      model.params.zeroGrad();
    }
    opt.dispose();
    const wte = model.emb.wte.toArray() as Float32Array;
    const logitsWidth = tidy(() => noGrad(() => model.eval().forward(x).shape[2]));
    return { losses, firstGrads, wte, logitsWidth, text: model.toString() };
  };
  const a = run(micro), b = run(padded);
  assert.equal(b.logitsWidth, 16);
  assert.match(b.text, /vocab=13 \(padded 16\)/);
  // (Adam turns the rounding noise of zero-mean gradients, such as the key bias's, into
  // whole steps, so the weights after training are compared only through the loss.)
  assertClose(b.losses, a.losses, "losses", { rtol: 1e-5, atol: 1e-6 });
  const real = 13 * micro.nEmbd;
  for (const [name, want] of a.firstGrads) {
    const got = b.firstGrads.get(name)!;
    assertClose(got.subarray(0, want.length), want, `d${name}`, { rtol: 1e-4, atol: 1e-6 });
    if (name === "emb.wte") {
      assert.equal(got.length, 16 * micro.nEmbd);
      assert.ok(got.subarray(real).every((v) => v === 0), "padding rows get no gradient");
    }
  }
  assert.ok(b.wte.subarray(real).every((v) => v === 0), "padding rows stay zero");
  x.dispose();
  y.dispose();
});

Deno.test("gradients accumulate across backward calls until zeroed", () => {
  using model = new GPT(micro, { seed: 9 });
  const x = Tensor.fromArray(randomInts(8, 7, 13), [1, 8]),
    y = Tensor.fromArray(randomInts(8, 8, 13), [1, 8]);
  const once = tidy(() => {
    model.loss(x, y).backward();
    return model.params.grad.toArray();
  });
  tidy(() => model.loss(x, y).backward());
  const twice = model.params.grad.toArray();
  assertClose(twice, once.map((v) => 2 * v), "two backward calls", { rtol: 1e-6, atol: 1e-9 });
  model.params.zeroGrad();
  assert.equal(gradNorm(model.params.grad), 0);
});

Deno.test("AdamW matches the float64 formula, with decay only on matrices", () => {
  using model = new GPT(micro, { seed: 11 });
  const g = Float32Array.from(randomArray(model.params.grad.numel, 12));
  model.params.grad.copyFromHost(g);
  const p0 = model.params.data.toArray();
  const opt = new AdamW(model.params, {
    lr: 0.01,
    beta1: 0.8,
    beta2: 0.9,
    eps: 1e-6,
    weightDecay: 0.1,
  });
  opt.step(0.01, 0.5);
  const p1 = model.params.data.toArray();
  for (const e of model.params.entries) {
    for (let k = 0; k < e.tensor.numel; k += Math.max(1, e.tensor.numel >> 2)) {
      const i = e.offset + k;
      const gi = g[i] * 0.5;
      const m = 0.2 * gi / (1 - 0.8), v = 0.1 * gi * gi / (1 - 0.9);
      const wd = e.weightDecay ? 0.1 : 0;
      const want = p0[i] - 0.01 * (m / (Math.sqrt(v) + 1e-6) + wd * p0[i]);
      assertClose([p1[i]], [want], `${e.name}[${k}]`, { rtol: 1e-5, atol: 1e-7 });
    }
  }
  assert.equal(model.params.entries.find((e) => e.name === "h.0.ln1.weight")!.weightDecay, false);
  assert.equal(
    model.params.entries.find((e) => e.name === "h.0.attn.qkv.bias")!.weightDecay,
    false,
  );
  assert.equal(
    model.params.entries.find((e) => e.name === "h.0.attn.qkv.weight")!.weightDecay,
    true,
  );
  opt.dispose();
});

Deno.test("clipGradNorm() returns the float64 norm and scales the gradients to maxNorm", () => {
  const data = randomArray(1000, 13, 3);
  using g = Tensor.fromArray(data, [1000]);
  const norm = clipGradNorm(g, 1);
  assertClose([norm], [Math.hypot(...Float32Array.from(data))], "norm", { rtol: 1e-9 });
  assertClose([gradNorm(g)], [1], "norm after clipping", { rtol: 1e-5 });
});

Deno.test("the same seed builds the same weights; another seed does not", () => {
  using a = new GPT(micro, { seed: 1 });
  using b = new GPT(micro, { seed: 1 });
  using c = new GPT(micro, { seed: 2 });
  assert.deepEqual(a.params.data.toArray(), b.params.data.toArray());
  assert.notDeepEqual(a.params.data.toArray(), c.params.data.toArray());
});
