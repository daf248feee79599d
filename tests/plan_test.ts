// The planner's arithmetic, term by term, against hand-derived values and published tables.

import assert from "assert";
import {
  activationBytesPerLayer,
  bubbleFraction,
  bytesPerParameter,
  CLUSTER_PRESETS,
  collectiveTime,
  dataParallelBandwidth,
  flopsPerStep,
  inFlightMicroBatches,
  layoutProblems,
  memoryPerStage,
  MODEL_PRESETS,
  narayananFlops,
  parameterCount,
  PlanError,
  predictStep,
  searchLayouts,
  stageParameters,
} from "../lib/plan/mod.ts";

const TINY = { numLayers: 2, hiddenSize: 8, numAttentionHeads: 2, vocabSize: 10, seqLength: 4 };

function close(actual: number, expected: number, relative: number, what: string) {
  assert.ok(Math.abs(actual / expected - 1) <= relative, `${what}: ${actual} vs ${expected}`);
}

Deno.test("parameterCount() is exact for the GPT-2 sizes", () => {
  assert.equal(parameterCount(MODEL_PRESETS["gpt2-124m"]).total, 124_439_808);
  assert.equal(parameterCount(MODEL_PRESETS["gpt2-350m"]).total, 354_823_168);
  assert.equal(parameterCount(MODEL_PRESETS["gpt2-774m"]).total, 774_030_080);
  assert.equal(parameterCount(MODEL_PRESETS["gpt2-1558m"]).total, 1_557_611_200);
});

Deno.test("parameterCount() splits GPT-2 124M into embeddings, layers and final norm", () => {
  const c = parameterCount(MODEL_PRESETS["gpt2-124m"]);
  assert.equal(c.wordEmbeddings, 50257 * 768);
  assert.equal(c.positionEmbeddings, 1024 * 768);
  assert.equal(c.layers, 12 * (12 * 768 * 768 + 13 * 768));
  assert.equal(c.finalNorm, 2 * 768);
  assert.equal(c.outputLayer, 0);
});

Deno.test("GPT-3 presets match the sizes of the GPT-3 paper's Table 2.1 within 2%", () => {
  const table: [string, number][] = [
    ["gpt3-125m", 125e6],
    ["gpt3-350m", 350e6],
    ["gpt3-760m", 760e6],
    ["gpt3-1.3b", 1.3e9],
    ["gpt3-2.7b", 2.7e9],
    ["gpt3-6.7b", 6.7e9],
    ["gpt3-13b", 13e9],
    ["gpt3-175b", 175e9],
  ];
  for (const [name, size] of table) {
    close(parameterCount(MODEL_PRESETS[name]).total, size, 0.02, name);
  }
});

Deno.test("Megatron scaling-table presets carry the published shapes", () => {
  const m = MODEL_PRESETS["megatron-1t"];
  assert.deepEqual([m.numLayers, m.hiddenSize, m.numAttentionHeads, m.vocabSize], [
    128,
    25600,
    160,
    51200,
  ]);
  const c = MODEL_PRESETS["mcore-462b"];
  assert.deepEqual([c.numLayers, c.hiddenSize, c.numAttentionHeads, c.vocabSize], [
    112,
    18432,
    144,
    131072,
  ]);
  assert.equal(c.tiedEmbeddings, false);
});

Deno.test("bytesPerParameter() reproduces Megatron's distributed-optimizer table", () => {
  for (const d of [1, 2, 8, 64]) {
    assert.equal(bytesPerParameter("fp16", false, d).total, 20);
    assert.equal(bytesPerParameter("bf16", false, d).total, 18);
    assert.equal(bytesPerParameter("fp32", false, d).total, 16);
    assert.equal(bytesPerParameter("fp16", true, d).total, 4 + 16 / d);
    assert.equal(bytesPerParameter("bf16", true, d).total, 6 + 12 / d);
    assert.equal(bytesPerParameter("fp32", true, d).total, 8 + 8 / d);
  }
  assert.deepEqual(bytesPerParameter("bf16", true, 4), {
    weights: 2,
    gradients: 4,
    optimizer: 3,
    total: 9,
  });
});

Deno.test("activationBytesPerLayer() follows Korthikanti et al. for s=4, b=1, h=8, a=2", () => {
  const shape = { seqLength: 4, microBatchSize: 1, hiddenSize: 8, numAttentionHeads: 2 };
  // s·b·h = 32; 5·a·s/h = 5
  assert.equal(activationBytesPerLayer(shape), 32 * (34 + 5));
  assert.equal(activationBytesPerLayer({ ...shape, tensorParallel: 2 }), 32 * (10 + 12 + 2.5));
  assert.equal(
    activationBytesPerLayer({ ...shape, tensorParallel: 2, sequenceParallel: true }),
    32 * (17 + 2.5),
  );
  assert.equal(
    activationBytesPerLayer({
      ...shape,
      tensorParallel: 2,
      sequenceParallel: true,
      recompute: "selective",
    }),
    32 * 17,
  );
  assert.equal(activationBytesPerLayer({ ...shape, flashAttention: true }), 32 * 34);
  assert.equal(activationBytesPerLayer({ ...shape, recompute: "full" }), 64);
  assert.equal(
    activationBytesPerLayer({
      ...shape,
      recompute: "full",
      tensorParallel: 2,
      sequenceParallel: true,
    }),
    32,
  );
  assert.equal(activationBytesPerLayer({ ...shape, bytesPerElement: 4 }), 2 * 32 * 39);
});

Deno.test("memoryPerStage() adds up a two-layer model by hand", () => {
  // Parameters: 2·(12·64 + 13·8) + V·h 80 + positions 4·8 + final norm 16 = 1872.
  const [stage] = memoryPerStage({ ...TINY, maxPositionEmbeddings: 4 }, {
    precision: "fp32",
    flashAttention: false,
  });
  assert.equal(stage.parameters, 1872);
  assert.equal(stage.weights, 4 * 1872);
  assert.equal(stage.gradients, 4 * 1872);
  assert.equal(stage.optimizer, 8 * 1872);
  // fp32 doubles 1248 per layer; + embedding dropout mask 32 + logits 4·s·b·(h + V) = 288.
  assert.equal(stage.activations, 2 * 2 * 1248 + 32 + 288);
  assert.equal(stage.total, 16 * 1872 + 5312);
});

Deno.test("stageParameters() puts embeddings first and the tied output copy last", () => {
  const m = MODEL_PRESETS["gpt2-124m"];
  const layout = { pipelineModelParallelSize: 2 };
  const first = stageParameters(m, layout, 0);
  const last = stageParameters(m, layout, 1);
  assert.equal(first.embeddings, (50257 + 1024) * 768);
  assert.equal(last.embeddings, 50257 * 768 + 2 * 768);
  assert.equal(first.total + last.total, parameterCount(m).total + 50257 * 768);
});

Deno.test("inFlightMicroBatches(): p − k for 1F1B, p·(1 + (p−1)/(p·v)) on the first interleaved stage", () => {
  assert.deepEqual([0, 1, 2, 3].map((k) => inFlightMicroBatches(4, 1, 16, k)), [4, 3, 2, 1]);
  assert.equal(inFlightMicroBatches(4, 2, 16, 0), 4 * (1 + 3 / 8));
  assert.equal(inFlightMicroBatches(8, 1, 2, 0), 2);
});

Deno.test("bubbleFraction() is (p−1)/m, divided by the virtual stages when interleaved", () => {
  assert.equal(bubbleFraction(1, 8), 0);
  assert.equal(bubbleFraction(4, 12), 3 / 12);
  assert.equal(bubbleFraction(4, 12, 2), 3 / 24);
  const p = predictStep({
    model: MODEL_PRESETS["gpt3-13b"],
    layout: {
      pipelineModelParallelSize: 4,
      virtualPipelineModelParallelSize: 5,
      dataParallelSize: 2,
      globalBatchSize: 64,
    },
    cluster: CLUSTER_PRESETS.h100,
  });
  assert.equal(p.microBatches, 32);
  assert.equal(p.bubbleFraction, 3 / (5 * 32));
});

Deno.test("flopsPerStep() equals Narayanan et al.'s closed form with and without full recomputation", () => {
  for (const name of ["megatron-1.7b", "megatron-145b", "gpt3-175b"]) {
    const m = MODEL_PRESETS[name];
    close(flopsPerStep(m, 512).model, narayananFlops(m, 512, false), 1e-12, name);
    close(flopsPerStep(m, 512, "full").hardware, narayananFlops(m, 512, true), 1e-12, name);
  }
});

Deno.test("collectiveTime() moves 2(n−1)/n of the tensor for an all-reduce, (n−1)/n for the halves", () => {
  assert.equal(collectiveTime("all-reduce", 8e9, 4, 1e9, 0), 12);
  assert.equal(collectiveTime("reduce-scatter", 8e9, 4, 1e9, 0), 6);
  assert.equal(collectiveTime("all-gather", 8e9, 4, 1e9, 0), 6);
  assert.equal(collectiveTime("all-reduce", 8e9, 1, 1e9, 0), 0);
});

Deno.test("dataParallelBandwidth(): DP ranks sharing a node pool their NICs", () => {
  const a100 = CLUSTER_PRESETS.a100;
  assert.equal(dataParallelBandwidth(a100, 1, 8), a100.intraNodeBandwidth);
  assert.equal(
    dataParallelBandwidth(a100, 1, 32),
    Math.min(a100.intraNodeBandwidth, 8 * a100.interNodeBandwidth),
  );
  assert.equal(dataParallelBandwidth(a100, 8, 32), a100.interNodeBandwidth);
});

Deno.test("layoutProblems() names the bad value in a sentence", () => {
  const m = MODEL_PRESETS["gpt2-124m"];
  assert.deepEqual(layoutProblems(m, { pipelineModelParallelSize: 5 }), [
    "pipelineModelParallelSize 5 does not divide numLayers 12",
  ]);
  assert.deepEqual(layoutProblems(m, { dataParallelSize: 3, globalBatchSize: 8 }), [
    "globalBatchSize 8 is not a multiple of dataParallelSize 3 x microBatchSize 1",
  ]);
  assert.deepEqual(
    layoutProblems(m, { tensorModelParallelSize: 4, microBatchSize: 2, globalBatchSize: 4 }),
    [],
  );
  assert.throws(
    () =>
      predictStep({
        model: m,
        layout: { tensorModelParallelSize: 5 },
        cluster: CLUSTER_PRESETS.a100,
      }),
    PlanError,
  );
});

Deno.test("predictStep() grows memory with the micro-batch and shrinks it with recomputation", () => {
  const model = MODEL_PRESETS["gpt3-6.7b"];
  const base = {
    tensorModelParallelSize: 2,
    dataParallelSize: 4,
    microBatchSize: 2,
    globalBatchSize: 64,
  };
  const predict = (extra: object) =>
    predictStep({ model, layout: { ...base, ...extra }, cluster: CLUSTER_PRESETS.a100 }).memory.peak
      .activations;
  assert.ok(predict({ microBatchSize: 4 }) > predict({}));
  assert.ok(
    predict({ recomputeGranularity: "full" }) < predict({ recomputeGranularity: "selective" }),
  );
  const step = predictStep({ model, layout: base, cluster: CLUSTER_PRESETS.a100 });
  assert.ok(step.mfu > 0.2 && step.mfu < 0.8, `MFU ${step.mfu}`);
  assert.equal(step.hfu, step.mfu);
});

Deno.test("predictStep() on the CPU preset stays under its fp32 peak", () => {
  const p = predictStep({
    model: MODEL_PRESETS["gpt2-124m"],
    layout: { precision: "fp32", microBatchSize: 4, globalBatchSize: 4 },
    cluster: CLUSTER_PRESETS.cpu,
  });
  assert.ok(p.modelFlopsPerGpu < CLUSTER_PRESETS.cpu.peakFlops.fp32);
  assert.ok(p.memory.fits);
  assert.equal(p.modelFlops, flopsPerStep(MODEL_PRESETS["gpt2-124m"], 4).model);
});

Deno.test("searchLayouts() ranks fitting layouts fastest first and says why the others fail", () => {
  const r = searchLayouts({
    model: MODEL_PRESETS["gpt3-175b"],
    cluster: CLUSTER_PRESETS.h100,
    gpus: 64,
    globalBatchSize: 64,
    microBatchSizes: [1],
  });
  assert.ok(r.ranked.length > 0);
  for (let i = 1; i < r.ranked.length; i++) {
    assert.ok(r.ranked[i - 1].tokensPerSecond >= r.ranked[i].tokensPerSecond);
  }
  for (const p of r.ranked) assert.ok(p.memory.fits && p.gpus === 64);
  const oom = r.rejected.find((x) =>
    x.layout.tensorModelParallelSize === 1 && x.layout.pipelineModelParallelSize === 1
  );
  assert.match(oom?.reason ?? "", /^needs [0-9.]+ GB on stage 0 .* usable$/);
});
