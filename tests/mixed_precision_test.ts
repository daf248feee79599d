/**
 * The mixed-precision optimizer: memory per parameter equals Megatron's table, the
 * update equals fp32 AdamW on the main copy, an overflow skips exactly that step and
 * touches nothing, and a tiny GPT trained 200 steps in bf16 and in fp16 ends within 3%
 * of the fp32 loss.
 */
import assert from "assert";
import { GPT, GPT_PRESETS } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { DynamicGradScaler } from "../lib/optim/grad_scaler.ts";
import type { GradScaler } from "../lib/optim/grad_scaler.ts";
import { MixedPrecisionAdamW, parameterBytes } from "../lib/optim/mixed_precision.ts";
import type { ProcessGroup } from "../lib/parallel/process_group.ts";
import { bytesPerParameter } from "../lib/plan/memory.ts";
import type { Tensor } from "../lib/tensor.ts";
import { DEFAULT_CONFIG, validateConfig } from "../lib/train/config.ts";
import { TrainOptimizer } from "../lib/train/optimizer.ts";
import { randomArray } from "./helpers.ts";
import { tinyConfig, tinyCorpus, tinyTrainer } from "./train_helpers.ts";

const tiny = { ...GPT_PRESETS.tiny, nLayer: 1 };

Deno.test("bytes per parameter match Megatron's table: bf16 18, fp32 16", () => {
  assert.equal(parameterBytes("bf16").total, 18);
  assert.equal(parameterBytes("bf16").total, bytesPerParameter("bf16", false, 1).total);
  assert.equal(parameterBytes("f32").total, 16);
  assert.equal(parameterBytes("f32").total, bytesPerParameter("fp32", false, 1).total);
  for (const [dtype, total] of [["bf16", 18], ["f16", 18], ["f32", 16]] as const) {
    using model = new GPT(tiny, { dtype });
    const opt = new MixedPrecisionAdamW(model.params);
    const measured = opt.bytesPerParameter();
    assert.deepEqual(measured, parameterBytes(dtype), `${dtype} buffers`);
    assert.equal(measured.total, total);
    opt.dispose();
  }
});

/** The training optimizer of a 16-bit model: AdamW's defaults, clipping at 1. */
function trainOptimizer(model: GPT, scaler: GradScaler | null, group: ProcessGroup | null = null) {
  return new TrainOptimizer(model.params, {
    training: {
      ...DEFAULT_CONFIG.training,
      lr: 1e-2,
      adamBeta1: 0.9,
      adamBeta2: 0.999,
      adamEps: 1e-8,
      weightDecay: 0.01,
      clipGrad: 1,
    },
    scaler,
    ownership: { ranges: [{ offset: 0, length: model.params.grad.numel }], group },
  });
}

/** Fills the flat main-gradient buffer with seeded values (inf/NaN at one element). */
function setGrads(model: GPT, seed: number, poison?: number): void {
  const g = Float32Array.from(randomArray(model.params.grad.numel, seed, 0.1));
  if (poison !== undefined) g[17] = poison;
  model.params.grad.copyFromHost(g);
}

Deno.test("MixedPrecisionAdamW equals AdamW on the fp32 main copy, rounded into the model", () => {
  using ref = new GPT(tiny, { dtype: "f32" });
  using mixed = new GPT(tiny, { dtype: "bf16" });
  // start the fp32 reference from the bf16 model's values
  ref.params.data.copyFromHost(mixed.params.data.toArray() as Float32Array);
  const a = new AdamW(ref.params, { lr: 1e-2 });
  const b = new MixedPrecisionAdamW(mixed.params, { lr: 1e-2 });
  for (let s = 1; s <= 3; s++) {
    setGrads(ref, s);
    setGrads(mixed, s);
    a.step(1e-2, 0.5);
    b.step(1e-2, 0.5);
  }
  const main = b.main.toArray(), want = ref.params.data.toArray();
  assert.deepEqual(main, want, "fp32 main params follow fp32 AdamW exactly");
  using rounded = b.main.cast("bf16");
  assert.deepEqual(mixed.params.data.toArray(), rounded.toArray(), "model = main rounded");
  a.dispose();
  b.dispose();
});

Deno.test("an injected overflow skips exactly that step and leaves everything untouched", () => {
  const run = (steps: { seed: number; poison?: number }[]) => {
    const model = new GPT(tiny, { dtype: "f16" });
    const scaler = new DynamicGradScaler({ initialScale: 1024 });
    const train = trainOptimizer(model, scaler);
    const opt = train.update as MixedPrecisionAdamW;
    const results = steps.map(({ seed, poison }) => {
      setGrads(model, seed, poison);
      const before = [model.params.data, opt.main, opt.m, opt.v].map((t) => t.toArray());
      const r = train.step(1e-2, 1);
      if (r.skipped) {
        const after = [model.params.data, opt.main, opt.m, opt.v].map((t) => t.toArray());
        assert.deepEqual(after, before, "a skipped step changes no parameter or moment");
      }
      model.params.zeroGrad();
      return r;
    });
    const out = {
      results,
      params: model.params.data.toArray(),
      main: opt.main.toArray(),
      stepCount: opt.stepCount,
      scale: scaler.scale,
      hysteresis: scaler.hysteresisTracker,
    };
    opt.dispose();
    model.dispose();
    return out;
  };
  const clean = run([{ seed: 1 }, { seed: 3 }]);
  for (const poison of [Infinity, -Infinity, NaN]) {
    const hit = run([{ seed: 1 }, { seed: 2, poison }, { seed: 3 }]);
    assert.deepEqual(hit.results.map((r) => r.skipped), [false, true, false]);
    assert.equal(hit.results[1].gradNorm, Infinity);
    assert.deepEqual(hit.params, clean.params, `${poison}: the run equals one without that step`);
    assert.deepEqual(hit.main, clean.main);
    assert.equal(hit.stepCount, 2);
    assert.equal(hit.hysteresis, 1, "the overflow spent one unit of hysteresis");
    assert.equal(hit.scale, 1024);
  }
});

Deno.test("the found-inf vote over the ownership group decides for every rank", () => {
  using model = new GPT(tiny, { dtype: "bf16" });
  let seen: number | undefined;
  // another rank of the group overflowed: its MAX says skip
  const group = {
    allReduce(t: Tensor, op?: string) {
      if (op !== "max") return;
      seen = t.item();
      t.copyFromHost(new Float32Array([1]));
    },
  } as unknown as ProcessGroup;
  const opt = trainOptimizer(model, null, group);
  setGrads(model, 4);
  const before = model.params.data.toArray();
  const r = opt.step(1e-3, 1);
  assert.equal(seen, 0);
  assert.equal(r.skipped, true);
  assert.deepEqual(model.params.data.toArray(), before);
  opt.dispose();
});

Deno.test("a tiny GPT trained 200 steps in bf16 and fp16 ends within 3% of fp32", async () => {
  const corpus = await tinyCorpus();
  const finalLoss = (precision: Record<string, unknown>) => {
    const config = tinyConfig({
      trainIters: 200,
      lr: 3e-3,
      minLr: 3e-4,
      lrWarmupIters: 10,
      ...precision,
    });
    using trainer = tinyTrainer(corpus, config);
    const losses: number[] = [];
    let skipped = 0;
    for (let i = 0; i < 200; i++) {
      const r = trainer.step();
      losses.push(r.loss);
      if (r.skipped) skipped++;
    }
    const last = losses.slice(-20);
    return { loss: last.reduce((s, v) => s + v, 0) / last.length, skipped };
  };
  const f32 = finalLoss({});
  const results: Record<string, { loss: number; skipped: number }> = { f32 };
  for (const [name, p] of [["bf16", { bf16: true }], ["f16", { fp16: true }]] as const) {
    const r = finalLoss(p);
    results[name] = r;
    const rel = Math.abs(r.loss - f32.loss) / f32.loss;
    assert.ok(
      rel <= 0.03,
      `${name} final loss ${r.loss.toFixed(4)} vs fp32 ${f32.loss.toFixed(4)} (${
        (rel * 100).toFixed(2)
      }%)`,
    );
  }
  assert.ok(f32.loss < 3.5, `the fp32 run learned (loss ${f32.loss})`);
  // fp16 starts at Megatron's 2^32 scale and backs off through overflows
  assert.ok(results.f16.skipped > 0 && results.f16.skipped < 40, `skipped ${results.f16.skipped}`);
  assert.equal(results.bf16.skipped, 0);
});

Deno.test("config: bf16 and fp16 together is an error", () => {
  assert.throws(
    () => validateConfig(tinyConfig({ bf16: true, fp16: true }), "test"),
    /bf16 and fp16 are both set; choose one precision/,
  );
  assert.equal(tinyConfig({ "loss-scale": "256" }).precision.lossScale, 256);
});
