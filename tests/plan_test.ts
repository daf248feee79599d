// The planner's arithmetic, term by term, against hand-derived values and published tables.

import assert from "assert";
import {
  activationBytesPerLayer,
  allocatorBlockBytes,
  bubbleFraction,
  bytesPerParameter,
  CLUSTER_PRESETS,
  collectiveTime,
  dataParallelBandwidth,
  flopsPerStep,
  IMPLEMENTATION_PROFILES,
  inFlightMicroBatches,
  layersPerStage,
  layoutProblems,
  memoryPerStage,
  MODEL_PRESETS,
  type ModelConfig,
  narayananFlops,
  type ParallelLayout,
  parameterCount,
  PlanError,
  predictStep,
  rankTensors,
  searchLayouts,
  type SearchOptions,
  stageParameters,
  unevenSplits,
} from "../lib/plan/mod.ts";
import { runPlan } from "../tools/plan.ts";

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
  // The way out: the least uneven split that works, or a size that divides.
  assert.deepEqual(layoutProblems(m, { pipelineModelParallelSize: 5 }), [
    "pipelineModelParallelSize 5 does not divide numLayers 12; split it unevenly, e.g. --decoder-first-pipeline-num-layers 2 --decoder-last-pipeline-num-layers 1 (decoderFirstPipelineNumLayers/decoderLastPipelineNumLayers), or use a pipeline size that divides 12",
  ]);
  assert.deepEqual(layoutProblems(m, { pipelineModelParallelSize: 16 }), [
    "pipelineModelParallelSize 16 does not divide numLayers 12; use a pipeline size that divides 12",
  ]);
  assert.deepEqual(
    layoutProblems(m, {
      pipelineModelParallelSize: 5,
      decoderFirstPipelineNumLayers: 2,
      decoderLastPipelineNumLayers: 1,
    }),
    [],
  );
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

Deno.test("allocatorBlockBytes() rounds as the CPU caching allocator's size classes do", () => {
  // kernels/cpu/runtime.c size_class: 64-byte steps to 4 KiB, then 2^(k−3) above 2^k.
  const table: [number, number][] = [
    [0, 64],
    [1, 64],
    [64, 64],
    [65, 128],
    [4096, 4096],
    [4097, 4608],
    [196_608, 196_608], // GPT-2's (64, 768) fp32 activation: exactly a class
    [123_738_624 * 4, 480 * 2 ** 20], // its flat fp32 parameters: 472 MiB in 480
    [50305 * 768 * 4, 160 * 2 ** 20], // a padded copy of its vocabulary: 147 MiB in 160
  ];
  for (const [bytes, block] of table) assert.equal(allocatorBlockBytes(bytes), block, `${bytes}`);
});

// bench/plan_memory.ts's shapes: GPT-2 124M at T = 64, vocabulary padded to 50,304, one
// sequence per micro-batch, 4 micro-batches, fp32, no sequence parallelism.
const BENCH_GPT2 = { ...MODEL_PRESETS["gpt2-124m"], vocabSize: 50304, seqLength: 64 };
const benchLayout = (t: number, p: number, v: number, m = 4): ParallelLayout => ({
  tensorModelParallelSize: t,
  pipelineModelParallelSize: p,
  virtualPipelineModelParallelSize: v,
  microBatchSize: 1,
  globalBatchSize: m,
  precision: "fp32",
  sequenceParallel: false,
});

Deno.test("the denotron profile predicts the allocator peaks that bench/plan_memory.ts measured", () => {
  // Measured 2026-12-03 (bench/RESULTS.md, issue 22), after runPipeline began freeing each
  // micro-batch after its backward and padding each vocabulary table once per step: the
  // fullest rank's peak of one step without an optimizer, and of a step followed by
  // AdamW's update, MiB. (Before: 2629.69, 1380.97, 1588.60, 1589.91, 827.41, 1388.05.)
  const measured: [number, number, number, number, number][] = [
    [1, 1, 1, 1347.32, 2307.32],
    [2, 1, 1, 690.26, 1170.26],
    [1, 2, 1, 1007.23, 1647.23],
    [1, 2, 2, 1017.93, 1657.93],
    [2, 2, 1, 517.53, 837.53],
    [1, 4, 1, 841.67, 1321.67],
  ];
  for (const [t, p, v, step, adam] of measured) {
    const stages = memoryPerStage(
      BENCH_GPT2,
      benchLayout(t, p, v),
      IMPLEMENTATION_PROFILES.denotron,
    );
    const peak = Math.max(...stages.map((s) => s.total - s.optimizer)) / 2 ** 20;
    const withAdam = Math.max(...stages.map((s) => s.total)) / 2 ** 20;
    close(peak, step, 0.003, `TP ${t} PP ${p} VP ${v} step`);
    close(withAdam, adam, 0.003, `TP ${t} PP ${p} VP ${v} with AdamW`);
  }
});

Deno.test("the denotron profile holds the micro-batches in flight and one vocabulary copy per table", () => {
  const denotron = (m: number, p = 1) =>
    memoryPerStage(BENCH_GPT2, benchLayout(1, p, 1, m), IMPLEMENTATION_PROFILES.denotron);
  const copy = allocatorBlockBytes((50304 + 1) * 768 * 4);
  const inputs = 2 * allocatorBlockBytes(4 * 64); // one micro-batch's tokens and targets
  // One stage frees each micro-batch after its backward: one is held, whatever m.
  const [one] = denotron(1), [four] = denotron(4);
  close(four.activations - 4 * inputs, one.activations - inputs, 1e-12, "one micro-batch held");
  // The tied table, read by the embedding and the output layer, padded once per step.
  assert.equal(one.vocabularyCopies, copy);
  assert.equal(four.vocabularyCopies, copy);
  // The backward workspace: the logits' gradient, the final norm output's and the
  // output-weight copy's.
  assert.equal(
    four.workspace,
    allocatorBlockBytes(64 * 50305 * 4) + allocatorBlockBytes(64 * 768 * 4) + copy,
  );
  // 1F1B: stage k holds p − k micro-batches; the first stage pads the token table, the
  // last the output layer's copy of it.
  const stages = denotron(8, 4);
  const perMicroBatch = (s: (typeof stages)[number], k: number) =>
    (s.activations - 8 * inputs) / (4 - k);
  close(perMicroBatch(stages[1], 1), perMicroBatch(stages[2], 2), 1e-12, "p − k in flight");
  assert.deepEqual(stages.map((s) => s.vocabularyCopies), [copy, 0, 0, copy]);
  // Megatron's count keeps one micro-batch in flight without a pipeline, and no copy;
  // ours stays within 40% of it (the copy, its gradient, and every forward output).
  const [megatron] = memoryPerStage(BENCH_GPT2, benchLayout(1, 1, 1, 4));
  assert.equal(megatron.vocabularyCopies, 0);
  assert.ok(four.total - four.optimizer < 1.4 * (megatron.total - megatron.optimizer));
  // GPT-2's layer: 18 (b·s, h) tensors' worth (ln1, qkv 3, attention, projection, sum,
  // ln2, fc pre-activation 4, GeLU 4, projection, sum), plus small row statistics.
  const layer = rankTensors(BENCH_GPT2, benchLayout(1, 1, 1, 1), 0).activations
    .filter((x) => x.count === 12 || x.count === 24);
  const big = layer.filter((x) => x.bytes >= 64 * 768 * 4);
  assert.equal(big.reduce((s, x) => s + (x.count / 12) * x.bytes, 0), 18 * 64 * 768 * 4);
});

Deno.test("the denotron profile matches the allocator of a real tiny run", async () => {
  // One process, the tiny model: bench/plan_memory.ts's rank measures, the planner predicts.
  const out = await Deno.makeTempFile({ suffix: ".json" });
  const run = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "bench/plan_memory.ts",
      "--rank",
      "--model",
      "tiny",
      "--layers",
      "4",
      "--m",
      "8",
      "--out",
      out,
    ],
    env: { DENOTRON_NUM_THREADS: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
  const measured = JSON.parse(await Deno.readTextFile(`${out}.0`));
  await Deno.remove(`${out}.0`);
  await Deno.remove(out);
  const model = {
    numLayers: 4,
    hiddenSize: 32,
    numAttentionHeads: 2,
    vocabSize: 384,
    seqLength: 64,
    maxPositionEmbeddings: 64,
  };
  const [s] = memoryPerStage(model, benchLayout(1, 1, 1, 8), IMPLEMENTATION_PROFILES.denotron);
  assert.equal(s.weights + s.gradients, measured.parameters);
  close(s.activations + s.vocabularyCopies, measured.held, 0.01, "held after the forwards");
  close(s.total - s.optimizer, measured.stepPeak, 0.01, "step peak");
  close(s.total, measured.adamPeak, 0.01, "peak with AdamW");
});

Deno.test("profiles refuse what their codebase does not do, with a sentence", () => {
  const m = MODEL_PRESETS["gpt2-124m"];
  const denotron = IMPLEMENTATION_PROFILES.denotron;
  const refuse = (layout: ParallelLayout, profile = denotron) =>
    assert.throws(
      () => predictStep({ model: m, layout, cluster: CLUSTER_PRESETS.cpu, profile }),
      PlanError,
    );
  refuse({ contextParallelSize: 2 });
  refuse({ dataParallelSize: 2, dataParallelShardingStrategy: "optim_grads" });
  refuse({
    pipelineModelParallelSize: 2,
    decoderFirstPipelineNumLayers: 8,
    decoderLastPipelineNumLayers: 4,
  });
  refuse({ pipelineModelParallelSize: 2 }, IMPLEMENTATION_PROFILES.metaseq);
  assert.match(
    runPlan(["--model", "gpt2-124m", "--profile", "metaseq", "--pp", "2"]).text,
    /the metaseq profile has no pipeline parallelism \(pipelineModelParallelSize 2\)/,
  );
  const text = runPlan([
    "--model",
    "gpt2-124m",
    "--cluster",
    "cpu",
    "--precision",
    "fp32",
    "--profile",
    "denotron",
  ]).text;
  assert.match(text, /vocabulary copies [0-9.]+ GB \+ backward workspace [0-9.]+ GB/);
});

Deno.test("unevenSplits() gives Megatron's first/last splits within the shift", () => {
  assert.deepEqual(unevenSplits(12, 2, 2), [
    { first: 4, last: 8 },
    { first: 5, last: 7 },
    { first: 7, last: 5 },
    { first: 8, last: 4 },
  ]);
  // 70 over 12 (BLOOM): 5 + 10·6 + 5, or one end of 4 with the other at the middle's 6.
  const bloom = unevenSplits(70, 12, 2);
  assert.ok(bloom.some((x) => x.first === 5 && x.last === 5));
  assert.ok(bloom.some((x) => x.first === 4 && x.last === 0));
  for (const x of bloom) {
    const l = layersPerStage({ ...MODEL_PRESETS["gpt3-175b"], numLayers: 70 }, {
      pipelineModelParallelSize: 12,
      decoderFirstPipelineNumLayers: x.first,
      decoderLastPipelineNumLayers: x.last,
    });
    assert.equal(l.reduce((a, b) => a + b, 0), 70);
    assert.ok(l.every(Number.isInteger) && l[0] <= l[1] && l[11] <= l[1], JSON.stringify(x));
  }
  assert.deepEqual(unevenSplits(12, 1, 3), []);
});

Deno.test("searchLayouts() also tries context parallelism, ZeRO-2/FSDP and uneven splits", () => {
  const search = (model: ModelConfig, gpus: number, extra: Partial<SearchOptions> = {}) =>
    searchLayouts({
      model,
      cluster: CLUSTER_PRESETS.h100,
      gpus,
      globalBatchSize: 16,
      microBatchSizes: [1],
      ...extra,
    });
  const llama = search(MODEL_PRESETS["llama3-8b"], 8);
  const all = [...llama.ranked.map((x) => x.layout), ...llama.rejected.map((x) => x.layout)];
  assert.ok(all.some((l) => l.contextParallelSize > 1));
  for (const l of all) {
    assert.equal(8192 % (2 * l.contextParallelSize), 0);
    assert.equal(
      l.tensorModelParallelSize * l.contextParallelSize * l.pipelineModelParallelSize *
        l.dataParallelSize,
      8,
    );
    // FSDP is tried only without a pipeline.
    if (l.dataParallelShardingStrategy === "optim_grads_params") {
      assert.equal(l.pipelineModelParallelSize, 1);
    }
  }
  for (const s of ["optim", "optim_grads", "optim_grads_params"]) {
    assert.ok(llama.ranked.some((x) => x.layout.dataParallelShardingStrategy === s), s);
  }
  assert.ok(llama.ranked.some((x) => x.layout.decoderFirstPipelineNumLayers > 0));
  // The options narrow it: one CP size, one strategy, no uneven splits.
  const narrow = search(MODEL_PRESETS["llama3-8b"], 8, {
    contextParallelSizes: [1],
    shardingStrategies: ["optim"],
    unevenPipelineSplits: false,
  });
  for (const x of [...narrow.ranked, ...narrow.rejected]) {
    const l = "layout" in x ? x.layout : x;
    assert.equal(l.contextParallelSize, 1);
    assert.equal(l.dataParallelShardingStrategy, "optim");
    assert.equal(l.decoderFirstPipelineNumLayers + l.decoderLastPipelineNumLayers, 0);
  }
  // GPT-2 124M on two stages: its logit layer costs 5.5 layers, so the fastest two-stage
  // layout moves layers off the last stage, which no even split can do.
  const gpt2 = search(MODEL_PRESETS["gpt2-124m"], 2, { recompute: ["none"] });
  const twoStage = gpt2.ranked.find((x) => x.layout.pipelineModelParallelSize === 2)!;
  assert.ok(
    twoStage.layout.decoderFirstPipelineNumLayers > twoStage.layout.decoderLastPipelineNumLayers,
  );
});

// BERT's parameters, written from the architecture (Devlin et al. 2019; Hugging Face's
// modeling_bert.py): BertModel is the embeddings (word, position, token type, LayerNorm),
// the layers and the pooler; BertForPreTraining adds the masked-LM head (dense, LayerNorm,
// a bias of V; the output weight is the tied word embedding) and the next-sentence head.
function bertParameters(V: number, h: number, layers: number, ffn: number) {
  const embeddings = V * h + 512 * h + 2 * h + 2 * h;
  const attention = 3 * h * h + 3 * h + h * h + h;
  const mlp = h * ffn + ffn + ffn * h + h;
  const layer = attention + mlp + 2 * (2 * h);
  const pooler = h * h + h;
  const bertModel = embeddings + layers * layer + pooler;
  const maskedLM = h * h + h + 2 * h + V;
  const nextSentence = 2 * h + 2;
  return { bertModel, preTraining: bertModel + maskedLM + nextSentence };
}

const BERT_HEADS = (c: ReturnType<typeof parameterCount>) =>
  c.maskedLMTransform + c.maskedLMBias + c.binaryHead;

Deno.test("parameterCount() is Hugging Face's count for BERT, from the architecture", () => {
  const base = bertParameters(30522, 768, 12, 3072);
  assert.equal(base.bertModel, 109_482_240); // HF BertModel, bert-base-uncased
  assert.equal(base.preTraining, 110_106_428); // HF BertForPreTraining
  const c = parameterCount(MODEL_PRESETS["bert-base"]);
  assert.equal(c.total, base.preTraining);
  assert.equal(c.total - BERT_HEADS(c), base.bertModel);
  // post-LN: the embeddings' LayerNorm, no final norm
  assert.deepEqual([c.tokenTypeEmbeddings, c.embeddingNorm, c.finalNorm], [2 * 768, 2 * 768, 0]);
  const large = bertParameters(30522, 1024, 24, 4096);
  assert.equal(large.bertModel, 335_141_888); // BERT-Large's BertModel
  const l = parameterCount(MODEL_PRESETS["bert-large"]);
  assert.equal(l.total, large.preTraining);
  assert.equal(l.total - BERT_HEADS(l), 335_141_888);
  // BERT-Tiny (google/bert_uncased_L-2_H-128_A-2): 4.39M without its heads
  const tiny = parameterCount(MODEL_PRESETS["bert-tiny"]);
  assert.equal(tiny.total, bertParameters(30522, 128, 2, 512).preTraining);
  assert.equal(tiny.total - BERT_HEADS(tiny), 4_385_920);
});

Deno.test("Megatron-LM's BERTs (Shoeybi et al. 2019) are pre-LN and match their sizes", () => {
  const table: [string, number][] = [
    ["megatron-bert-336m", 336e6],
    ["megatron-bert-1.3b", 1.3e9],
    ["megatron-bert-3.9b", 3.9e9],
  ];
  for (const [name, size] of table) {
    close(parameterCount(MODEL_PRESETS[name]).total, size, 0.02, name);
  }
  // The rearranged norm moves 2h from the embeddings to the end: the same count as BERT-Large.
  const m = parameterCount(MODEL_PRESETS["megatron-bert-336m"]);
  assert.equal(m.total, parameterCount(MODEL_PRESETS["bert-large"]).total);
  assert.deepEqual([m.embeddingNorm, m.finalNorm], [0, 2 * 1024]);
  const shape = MODEL_PRESETS["megatron-bert-3.9b"];
  assert.deepEqual([shape.numLayers, shape.hiddenSize, shape.numAttentionHeads, shape.seqLength], [
    48,
    2560,
    40,
    512,
  ]);
});

Deno.test("flopsPerStep() of BERT-Large: full attention, the masked-LM head at 15% of the tokens", () => {
  const [B, s, l, h, V] = [256, 512, 24, 1024, 30522];
  // One layer's forward: QKV 3h², output h², FFN 8h² per token (2 FLOPs per multiply-add),
  // and the whole s×s of bidirectional attention, QKᵀ and its product with V.
  const layer = 2 * B * s * 12 * h * h + 4 * B * s * s * h;
  const masked = Math.ceil(0.15 * B * s); // 19,661 rows
  const head = 2 * masked * h * h + 2 * masked * h * V; // dense, then the tied output layer
  const pooled = 2 * B * h * h + 2 * B * h * 2; // pooler and binary head on [CLS]
  const forward = l * layer + head + pooled;
  const f = flopsPerStep(MODEL_PRESETS["bert-large"], B);
  assert.equal(f.model, 3 * forward);
  assert.equal(f.hardware, f.model);
  // Full recomputation repeats the layers, not the heads.
  assert.equal(
    flopsPerStep(MODEL_PRESETS["bert-large"], B, "full").hardware,
    4 * forward - head - pooled,
  );
  // A decoder of the shape runs its logit layer over every token.
  const decoder = { ...MODEL_PRESETS["bert-large"], encoder: null };
  assert.equal(flopsPerStep(decoder, B).model, 3 * (l * layer + 2 * B * s * h * V));
});

Deno.test("stageParameters() puts an encoder's token types and norm first and its heads last", () => {
  const h = 1024, shard = Math.ceil(30522 / 2);
  const layout = { tensorModelParallelSize: 2, pipelineModelParallelSize: 2 };
  const heads = h * h + h + 2 * h + shard + h * h + h + 2 * h + 2; // bias split by vocabulary
  const post = MODEL_PRESETS["bert-large"];
  assert.equal(stageParameters(post, layout, 0).embeddings, shard * h + 512 * h + 2 * h + 2 * h);
  assert.equal(stageParameters(post, layout, 1).embeddings, shard * h + heads);
  const pre = MODEL_PRESETS["megatron-bert-336m"];
  assert.equal(stageParameters(pre, layout, 0).embeddings, shard * h + 512 * h + 2 * h);
  assert.equal(stageParameters(pre, layout, 1).embeddings, shard * h + heads + 2 * h);
  // One stage, no TP: the whole model.
  assert.equal(stageParameters(post, {}, 0).total, parameterCount(post).total);
});

Deno.test("memoryPerStage() keeps an encoder's head activations at the masked rows only", () => {
  const [b, s, h, V] = [8, 512, 1024, 30522];
  const layout = { microBatchSize: b, globalBatchSize: 4 * b };
  const [encoder] = memoryPerStage(MODEL_PRESETS["bert-large"], layout);
  const [decoder] = memoryPerStage({ ...MODEL_PRESETS["bert-large"], encoder: null }, layout);
  const rows = Math.ceil(0.15 * b * s);
  // Megatron's fp32 logits 4·R·(h + V), the head's dense, GeLU and LayerNorm inputs at the
  // R rows and the pooler's and binary head's inputs (2 bytes each), and on the first
  // stage the embeddings' LayerNorm input, against the decoder's 4·s·b·(h + V).
  const encoderExtra = 4 * rows * (h + V) + 2 * (3 * rows * h + 2 * b * h) + 2 * s * b * h;
  assert.equal(encoder.activations - decoder.activations, encoderExtra - 4 * s * b * (h + V));
  // The denotron count: logits of the masked rows, the embedding norm and no final norm.
  const tiny = { ...MODEL_PRESETS["bert-tiny"], seqLength: 64 };
  const held = rankTensors(tiny, { precision: "fp32" }, 0);
  const names = held.activations.map((x) => x.name);
  const logits = held.activations.find((x) => x.name.startsWith("logits"))!;
  assert.equal(logits.bytes, Math.ceil(0.15 * 64) * (30522 + 1) * 4);
  assert.ok(names.some((n) => n.startsWith("embedding norm output")));
  assert.ok(!names.some((n) => n.startsWith("final norm")));
  assert.ok(names.some((n) => n.startsWith("token-type embedding output")));
});

Deno.test("layoutProblems() names an encoder's bad masked fraction", () => {
  const m = { ...MODEL_PRESETS["bert-base"], encoder: { maskedFraction: 0 } };
  assert.deepEqual(layoutProblems(m, {}), [
    "encoder.maskedFraction 0 is not in (0, 1]; BERT masks 0.15 of the tokens",
  ]);
});

Deno.test("plan --model bert-large reports like a decoder, searches, and lists the BERT presets", () => {
  const flags = ["--model", "bert-large", "--gpus", "8", "--global-batch", "256"];
  const { code, text } = runPlan([...flags, "--micro-batch", "8", "--distributed-optimizer"]);
  assert.equal(code, 0, text);
  assert.match(
    text,
    /bert-large: 336\.2M parameters, .* encoder \(masked-LM head at 15\.0% of the tokens\)/,
  );
  assert.match(text, /dp 8 mb 8/);
  assert.match(text, /MFU [0-9.]+%/);
  assert.match(text, /fits/);
  const search = runPlan([...flags, "--search", "--top", "3"]);
  assert.equal(search.code, 0, search.text);
  assert.match(search.text, /layouts fit 8 x a100; the fastest 3:/);
  const bad = runPlan(["--model", "bert-huge"]);
  assert.equal(bad.code, 2);
  for (
    const name of [
      "bert-tiny",
      "bert-base",
      "bert-large",
      "megatron-bert-336m",
      "megatron-bert-1.3b",
      "megatron-bert-3.9b",
    ]
  ) {
    assert.ok(bad.text.includes(name), name);
  }
});
