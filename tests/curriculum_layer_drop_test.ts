/**
 * Progressive layer dropping: the keep statistics over many steps, identical
 * decisions on every rank, the scaled residual op, and a GPT forward that skips
 * dropped blocks in training and never in evaluation.
 */
import assert from "assert";
import { Curriculum } from "../lib/curriculum/curriculum.ts";
import {
  dropUniform,
  fullPlan,
  keepProbability,
  layerDropPlan,
  pldTheta,
} from "../lib/curriculum/layer_drop.ts";
import { GPT, GPT_PRESETS } from "../lib/nn/gpt.ts";
import { addScaled } from "../lib/ops/elementwise.ts";
import { linear } from "../lib/ops/matmul.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { assertClose, checkOp, randomArray, randomInts } from "./helpers.ts";

Deno.test("layer keep frequencies over 20000 steps match 1 − (i/L)(1 − theta)", () => {
  const L = 6, N = 20000, theta = 0.5, seed = 1234;
  const kept = new Array(L).fill(0);
  for (let step = 0; step < N; step++) {
    const plan = layerDropPlan(seed, step, L, theta);
    plan.keep.forEach((k, i) => {
      if (!k) return;
      kept[i]++;
      assert.equal(plan.scale[i], 1 / keepProbability(i + 1, L, theta));
    });
  }
  for (let i = 0; i < L; i++) {
    const p = keepProbability(i + 1, L, theta);
    const sigma = Math.sqrt(p * (1 - p) / N);
    // The draws are a fixed function of the seed: this bound (5 sigma) is checked once
    // and holds on every run.
    assert.ok(
      Math.abs(kept[i] / N - p) < 5 * sigma,
      `layer ${i + 1}: kept ${kept[i] / N}, expected ${p}`,
    );
  }
});

Deno.test("keep frequencies follow theta(t) as it decays (steps 0..30000, default settings)", () => {
  // Bin the steps by the top layer's expected keep probability: the mean of the
  // indicator minus its expectation over 30000 steps is within 5 sigma.
  const L = 4, seed = 7;
  let diff = 0, variance = 0;
  for (let t = 0; t < 30000; t++) {
    const theta = pldTheta(t);
    const plan = layerDropPlan(seed, t, L, theta);
    for (let i = 0; i < L; i++) {
      const p = keepProbability(i + 1, L, theta);
      diff += (plan.keep[i] ? 1 : 0) - p;
      variance += p * (1 - p);
    }
  }
  assert.ok(Math.abs(diff) < 5 * Math.sqrt(variance), `excess keeps ${diff}`);
});

Deno.test("two ranks with the same seed draw the same plans; another seed draws others", () => {
  // Each "rank" builds its own curriculum, as separate processes would.
  const rank = () => new Curriculum({ layerKeep: (s) => pldTheta(s, { gamma: 0.01 }) });
  const a = rank(), b = rank();
  let differs = 0;
  for (let step = 0; step < 500; step++) {
    const ctx = { iteration: step, consumedSamples: 0, consumedTokens: 0 };
    const pa = a.plan(ctx, { numLayers: 12, seed: 99 }).layers;
    const pb = b.plan(ctx, { numLayers: 12, seed: 99 }).layers;
    assert.deepEqual(pa, pb, `step ${step}`);
    const other = b.plan(ctx, { numLayers: 12, seed: 100 }).layers;
    if (JSON.stringify(other) !== JSON.stringify(pa)) differs++;
  }
  assert.ok(differs > 200, `seed 100 matched seed 99 on ${500 - differs} of 500 steps`);
  // A pipeline stage holding layers 7..12 reads the same decisions for them.
  assert.equal(dropUniform(99, 42, 9), dropUniform(99, 42, 9));
});

Deno.test("addScaled() matches a + s·b, gradients g and s·g", () => {
  const n = 24, s = 1.75;
  checkOp({
    name: "addScaled",
    inputs: [
      { name: "a", shape: [4, 6], data: randomArray(n, 1) },
      { name: "b", shape: [4, 6], data: randomArray(n, 2) },
    ],
    run: ([a, b]) => addScaled(a, b, s),
    forward: ([a, b]) => (a as Float64Array).map((v, i) => v + s * (b as Float64Array)[i]),
    backward: (_, g) => [g.slice(), g.map((v) => s * v)],
  });
});

const tiny = { ...GPT_PRESETS.tiny, nLayer: 3 };
const tokens = () => Tensor.fromArray(randomInts(2 * 8, 5, 257), [2, 8], { dtype: "i32" });

Deno.test("GPT.forward(): the keep-all plan is the plain forward; a dropped block is the identity", () => {
  using model = new GPT(tiny, { seed: 3 });
  tidy(() => {
    const x = tokens();
    const plain = model.forward(x).toArray();
    assert.deepEqual(model.forward(x, fullPlan(3)).toArray(), plain);
    const plan = { keep: [true, false, true], scale: [1, 0, 1] };
    const dropped = model.forward(x, plan).toArray();
    // By hand: embedding, blocks 0 and 2, final LN, tied output.
    let h = model.emb.forward(x);
    h = model.blocks[0].forward(h, model.rng);
    h = model.blocks[2].forward(h, model.rng);
    const byHand = linear(model.lnf.forward(h), model.emb.wte, null).toArray();
    assertClose(dropped, byHand, "logits with block 1 dropped", { rtol: 0, atol: 0 });
    assert.notDeepEqual(dropped, plain);
    // Scaling a kept block's branches changes the output; scale 1 does not.
    const scaled = model.forward(x, { keep: [true, true, true], scale: [2, 1, 1] }).toArray();
    assert.notDeepEqual(scaled, plain);
  });
});

Deno.test("evaluation never drops layers: eval mode ignores the plan", () => {
  using model = new GPT(tiny, { seed: 4 });
  tidy(() => {
    const x = tokens();
    model.eval();
    const plain = model.forward(x).toArray();
    const planned = model.forward(x, { keep: [false, false, false], scale: [0, 0, 0] }).toArray();
    assert.deepEqual(planned, plain);
    model.train();
    const dropped = model.forward(x, { keep: [false, false, false], scale: [0, 0, 0] }).toArray();
    assert.notDeepEqual(dropped, plain);
  });
  assert.throws(
    () => tidy(() => model.forward(tokens(), fullPlan(2))),
    /the layer plan covers 2 blocks, the model has 3/,
  );
});

Deno.test("a dropped block's parameters get no gradient; kept ones do", () => {
  using model = new GPT(tiny, { seed: 5 });
  tidy(() => {
    const x = tokens();
    const y = Tensor.fromArray(randomInts(16, 6, 257), [2, 8], { dtype: "i32" });
    model.loss(x, y, { keep: [true, false, true], scale: [1.5, 0, 1.2] }).backward();
  });
  const norm = (i: number) => {
    const g = model.blocks[i].mlp.fc.weight.grad!.toArray();
    return Math.hypot(...g);
  };
  assert.equal(norm(1), 0);
  assert.ok(norm(0) > 0 && norm(2) > 0);
  model.params.zeroGrad();
});
