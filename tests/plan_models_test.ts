// The planner beyond GPT-2 (issue 22): Llama-family shapes on the command line, uneven
// pipeline splits, ZeRO-2/3 sharding, and Llama 3 405B at Meta's published layout.

import assert from "assert";
import {
  CLUSTER_PRESETS,
  IMPLEMENTATION_PROFILES,
  layersPerStage,
  layoutProblems,
  memoryPerStage,
  MODEL_PRESETS,
  modelConfigOf,
  type ParallelLayout,
  parameterCount,
  predictStep,
} from "../lib/plan/mod.ts";
import { runPlan } from "../tools/plan.ts";
import { BERT_ARCHITECTURE, GPT, GPT_PRESETS, LLAMA_ARCHITECTURE } from "../lib/nn/gpt.ts";

function close(actual: number, expected: number, relative: number, what: string) {
  assert.ok(Math.abs(actual / expected - 1) <= relative, `${what}: ${actual} vs ${expected}`);
}

// A GPT with l = 4, h = 64, a = 8, V = 1000, s = 128 given entirely by flags.
const BASE = [
  "--layers",
  "4",
  "--hidden-size",
  "64",
  "--heads",
  "8",
  "--vocab-size",
  "1000",
  "--seq-length",
  "128",
  "--json",
];

function parametersWith(...flags: string[]): number {
  const { code, text } = runPlan([...BASE, ...flags]);
  assert.equal(code, 0, text);
  return JSON.parse(text).parameters;
}

Deno.test("each model flag changes the parameter count by its formula", () => {
  const [l, h, V, s, f] = [4, 64, 1000, 128, 256];
  const base = parametersWith();
  assert.equal(base, l * (12 * h * h + 13 * h) + V * h + s * h + 2 * h);
  // 2 groups of a = 8 heads: keys and values shrink from h to h/4 wide (weights and biases).
  const kv = h / 4;
  assert.equal(parametersWith("--num-query-groups", "2"), base - l * 2 * (h - kv) * (h + 1));
  // SwiGLU doubles the first FFN matrix and its bias.
  assert.equal(parametersWith("--swiglu"), base + l * (h * f + f));
  assert.equal(parametersWith("--ffn-hidden-size", "128"), base - l * 2 * (h * 128 + 64) + l * 0);
  assert.equal(parametersWith("--untie-embeddings-and-output-weights"), base + V * h);
  // QKV, attention output, FFN in and FFN out biases go.
  assert.equal(parametersWith("--disable-bias-linear"), base - l * (3 * h + h + f + h));
  // RMSNorm has no bias: h less for each of 2 norms per layer and the final one.
  assert.equal(parametersWith("--normalization", "RMSNorm"), base - (2 * l + 1) * h);
  assert.equal(parametersWith("--position-embedding-type", "rope"), base - s * h);
  assert.equal(parametersWith("--position-embedding-type", "learned_absolute"), base);
});

Deno.test("model flags change memory and time in the documented direction", () => {
  const peak = (...flags: string[]) => {
    const p = JSON.parse(runPlan([...BASE, "--cluster", "h100", ...flags]).text);
    return { activations: p.memory.peak.activations, flops: p.modelFlops };
  };
  const base = peak();
  const gqa = peak("--num-query-groups", "2");
  const swiglu = peak("--swiglu");
  // Keys and values kept for backward shrink with fewer groups (4·kv/h of the 24).
  assert.ok(gqa.activations < base.activations && gqa.flops < base.flops);
  // SwiGLU keeps gate, up and their product: 6·f/h instead of 4·f/h.
  assert.ok(swiglu.activations > base.activations && swiglu.flops > base.flops);
});

Deno.test("Llama 3 presets match the published sizes (Llama 3 paper, Table 3)", () => {
  close(parameterCount(MODEL_PRESETS["llama3-8b"]).total, 8.03e9, 0.005, "8B");
  close(parameterCount(MODEL_PRESETS["llama3-70b"]).total, 70.6e9, 0.005, "70B");
  close(parameterCount(MODEL_PRESETS["llama3-405b"]).total, 405e9, 0.005, "405B");
});

Deno.test("uneven pipeline splits: BLOOM's 70 layers over 12 stages are accepted and balanced", () => {
  const bloom = { ...MODEL_PRESETS["gpt3-175b"], numLayers: 70 };
  // The refusal names the way out, the split that follows.
  assert.deepEqual(layoutProblems(bloom, { pipelineModelParallelSize: 12 }), [
    "pipelineModelParallelSize 12 does not divide numLayers 70; split it unevenly, e.g. --decoder-first-pipeline-num-layers 5 --decoder-last-pipeline-num-layers 5 (decoderFirstPipelineNumLayers/decoderLastPipelineNumLayers), or use a pipeline size that divides 70",
  ]);
  const layout = {
    pipelineModelParallelSize: 12,
    decoderFirstPipelineNumLayers: 5,
    decoderLastPipelineNumLayers: 5,
  };
  assert.deepEqual(layoutProblems(bloom, layout), []);
  assert.deepEqual(layersPerStage(bloom, layout), [5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5]);
  assert.match(
    layoutProblems(bloom, { ...layout, decoderLastPipelineNumLayers: 4 })[0],
    /numLayers 70 less the first stage's 5 and the last stage's 4 does not divide evenly over the 10 stages between/,
  );
});

Deno.test("an uneven split that moves a layer off the logit stage shortens the slowest stage", () => {
  // GPT-2 124M: the logit layer (V = 50,257) costs V/(12h) = 5.5 layers of FLOPs, so an
  // even 6 + 6 split leaves the last stage far slower than the first.
  const model = MODEL_PRESETS["gpt2-124m"];
  const layout: ParallelLayout = {
    pipelineModelParallelSize: 2,
    dataParallelSize: 4,
    globalBatchSize: 64,
  };
  const run = (extra: ParallelLayout) =>
    predictStep({ model, layout: { ...layout, ...extra }, cluster: CLUSTER_PRESETS.h100 });
  const even = run({});
  const shifted = run({ decoderFirstPipelineNumLayers: 8, decoderLastPipelineNumLayers: 4 });
  assert.ok(shifted.microBatchSeconds < even.microBatchSeconds);
  assert.ok(shifted.stepSeconds < even.stepSeconds);
  // The step is m times the slowest stage plus the bubble; here the slowest is stage 0.
  assert.ok(shifted.memory.stages[1].parameters < even.memory.stages[1].parameters);
});

Deno.test("ZeRO-2 and FSDP memory follow their formulas", () => {
  const model = MODEL_PRESETS["gpt3-13b"];
  const d = 8;
  const base: ParallelLayout = { dataParallelSize: d, globalBatchSize: 8 };
  const stage = (dataParallelShardingStrategy: ParallelLayout["dataParallelShardingStrategy"]) =>
    predictStep({
      model,
      layout: { ...base, dataParallelShardingStrategy },
      cluster: CLUSTER_PRESETS.a100,
    }).memory.peak;
  const n = parameterCount(model).total;
  const zero1 = stage("optim");
  const zero2 = stage("optim_grads");
  const zero3 = stage("optim_grads_params");
  assert.equal(zero1.weights, 2 * n);
  assert.equal(zero1.gradients, 4 * n);
  assert.equal(zero1.optimizer, (12 * n) / d);
  assert.equal(zero2.gradients, (4 * n) / d);
  assert.equal(zero2.weights, 2 * n);
  assert.equal(zero3.weights, (2 * n) / d);
  // FSDP keeps two layers whole (one computing, one prefetched) with their gradients.
  const perLayer = 12 * 5120 * 5120 + 13 * 5120;
  assert.equal(zero3.gathered, 2 * perLayer * (2 + 4));
  assert.ok(zero3.total < zero2.total && zero2.total < zero1.total);
});

Deno.test("FSDP gathers the weights twice and reduce-scatters once per micro-batch", () => {
  const model = MODEL_PRESETS["gpt3-13b"];
  const layout: ParallelLayout = {
    dataParallelSize: 8,
    globalBatchSize: 32,
    dataParallelShardingStrategy: "optim_grads_params",
  };
  const p = predictStep({ model, layout, cluster: CLUSTER_PRESETS.a100 });
  const data = p.communication.find((c) => c.group === "data")!;
  const n = p.memory.peak.parameters;
  assert.equal(p.microBatches, 4);
  close(data.bytes, 4 * (2 * 2 * n + 4 * n) * (7 / 8), 1e-12, "FSDP bytes");
  assert.equal(data.exposedSeconds, data.seconds);
  const overlapped = predictStep({
    model,
    layout: { ...layout, overlapCommunication: true },
    cluster: CLUSTER_PRESETS.a100,
  });
  assert.ok(overlapped.stepSeconds < p.stepSeconds);
  assert.match(
    layoutProblems(model, { ...layout, pipelineModelParallelSize: 2 })[0],
    /optim_grads_params \(FSDP\) with pipelineModelParallelSize 2 is not modelled/,
  );
});

// Llama 3 paper (Grattafiori et al. 2024), §3.3.2 and Table 4: 405B on H100 80 GB, bf16,
// TP 8, CP 1, PP 16, sequence 8192, 16M tokens (2048 sequences) per batch; the first and
// last stage each hold one layer fewer (126 = 7 + 14·8 + 7); FSDP shards optimizer state
// and gradients but keeps the weights after forward (ZeRO-2). Per-GPU BF16 throughput:
// 430 TFLOP/s on 8,192 GPUs (DP 64), 400 TFLOP/s on 16,384 (DP 128).
function llama405b(dp: number, sharding: ParallelLayout["dataParallelShardingStrategy"]) {
  return predictStep({
    model: MODEL_PRESETS["llama3-405b"],
    cluster: CLUSTER_PRESETS.h100,
    layout: {
      tensorModelParallelSize: 8,
      pipelineModelParallelSize: 16,
      dataParallelSize: dp,
      microBatchSize: 1,
      globalBatchSize: 2048,
      decoderFirstPipelineNumLayers: 7,
      decoderLastPipelineNumLayers: 7,
      dataParallelShardingStrategy: sharding,
      overlapCommunication: true,
    },
  });
}

Deno.test("Llama 3 405B at Meta's layout is accepted and fits in 80 GB with ZeRO-2", () => {
  const p = llama405b(64, "optim_grads");
  assert.ok(p.memory.fits, `${p.memory.peak.total / 1e9} GB`);
  // The fullest stage is stage 1: 8 layers, 15 micro-batches in flight.
  assert.equal(p.memory.peak.stage, 1);
  // With ZeRO-1 the one term that does not fit is the gradients: fp32 main grads of the
  // whole stage on every DP rank, 4 bytes x 3.19B = 12.8 GB.
  const zero1 = llama405b(64, "optim");
  assert.equal(zero1.memory.fits, false);
  close(
    zero1.memory.peak.total - p.memory.peak.total,
    zero1.memory.peak.gradients * (63 / 64),
    1e-9,
    "gradients",
  );
});

Deno.test("Llama 3 405B on 8,192 GPUs within 10% of the Llama 3 paper's 430 TFLOP/s", () => {
  close(llama405b(64, "optim_grads").modelFlopsPerGpu / 1e12, 430, 0.1, "DP 64");
  // On 16,384 GPUs the batch stays 2048, so m halves to 16 and the non-interleaved bubble
  // (15/16) dominates: 313 predicted against 400 published (−22%). Meta interleaved the
  // stages; an uneven split with virtual stages is not modelled, so this row is not
  // validated, only its direction (slower per GPU than on 8,192).
  assert.ok(
    llama405b(128, "optim_grads").modelFlopsPerGpu < llama405b(64, "optim_grads").modelFlopsPerGpu,
  );
});

Deno.test("plan --help lists every option with its default, and bad new flags name themselves", () => {
  const help = runPlan(["--help"]).text;
  for (
    const flag of [
      "--num-query-groups",
      "--swiglu",
      "--ffn-hidden-size",
      "--untie-embeddings-and-output-weights",
      "--disable-bias-linear",
      "--position-embedding-type",
      "--normalization",
      "--decoder-first-pipeline-num-layers",
      "--decoder-last-pipeline-num-layers",
      "--data-parallel-sharding-strategy",
    ]
  ) assert.match(help, new RegExp(`${flag}\\b`), flag);
  const cases: [string[], RegExp][] = [
    [["--num-query-groups", "x"], /^plan: --num-query-groups must be a positive integer, got 'x'$/],
    [["--normalization", "rms"], /^plan: --normalization must be one of LayerNorm, RMSNorm/],
    [["--position-embedding-type", "alibi"], /^plan: --position-embedding-type must be one of/],
    [["--data-parallel-sharding-strategy", "zero9"], /^plan: --data-parallel-sharding-strategy/],
    [["--decoder-first-pipeline-num-layers", "x"], /^plan: --decoder-first-pipeline-num-layers/],
  ];
  for (const [args, message] of cases) {
    const { code, text } = runPlan(["--model", "gpt2-124m", ...args]);
    assert.equal(code, 2, args.join(" "));
    assert.match(text, message);
    assert.equal(text.split("\n").length, 1);
  }
});

Deno.test("cluster flags change memory and network bandwidth by their formulas", () => {
  const json = (...flags: string[]) =>
    JSON.parse(
      runPlan([
        "--model",
        "gpt3-13b",
        "--cluster",
        "h100",
        "--tp",
        "8",
        "--dp",
        "4",
        "--global-batch",
        "64",
        "--json",
        ...flags,
      ]).text,
    );
  const base = json();
  const data = (p: { communication: { group: string; bandwidth: number; seconds: number }[] }) =>
    p.communication.find((c) => c.group === "data")!;
  // 4 NICs of 400 Gb/s for 8 GPUs: each DP rank gets half a NIC at 90% of line rate.
  const fourNics = json("--nics-per-node", "4");
  assert.equal(data(fourNics).bandwidth, (4 * 50e9 * 0.9) / 8);
  close(data(fourNics).seconds, 2 * data(base).seconds, 0.01, "half the NICs, twice the time");
  assert.equal(data(json("--inter-node-gbps", "200")).bandwidth, 25e9 * 0.9);
  assert.equal(json("--gpu-memory-gb", "40").memory.usable, 37e9);
  assert.equal(json("--intra-node-gbps", "100").communication[0].bandwidth, 100e9);
  assert.equal(CLUSTER_PRESETS["a100-40gb"].memoryBytes, 40e9);
  assert.equal(CLUSTER_PRESETS["h100-sxm"].peakFlops.bf16, 989e12);
  const bad = runPlan(["--model", "gpt2-124m", "--nics-per-node", "0"]);
  assert.equal(bad.code, 2);
  assert.match(bad.text, /^plan: --nics-per-node must be a positive integer, got '0'$/);
});

// MT-NLG 530B (Smith et al. 2022, §2.4): DeepSpeed's pipeline over Megatron's layers on
// A100 80 GB (Selene), TP 8, PP 35, batch 1920, sequence 2048, 105 layers of h = 20480;
// 60.1, 50.2 and 44.4 s per iteration on 2240, 2800 and 3360 GPUs: 126, 121 and 113
// teraFLOP/s per GPU. fp16, full recomputation and micro-batch 1 are our assumptions, as
// for the Megatron-LM rows.
function mtnlg(dp: number, profile: string) {
  return predictStep({
    model: MODEL_PRESETS["megatron-530b"],
    cluster: CLUSTER_PRESETS.a100,
    profile: IMPLEMENTATION_PROFILES[profile],
    layout: {
      tensorModelParallelSize: 8,
      pipelineModelParallelSize: 35,
      dataParallelSize: dp,
      globalBatchSize: 1920,
      microBatchSize: 1,
      precision: "fp16",
      recomputeGranularity: "full",
      flashAttention: false,
      sequenceParallel: false,
    },
  });
}

Deno.test("deepspeed profile against MT-NLG 530B: slower than megatron-lm, within 25% (a known miss)", () => {
  for (const [dp, published] of [[8, 126], [10, 121], [12, 113]]) {
    const deepspeed = mtnlg(dp, "deepspeed").hardwareFlopsPerGpu / 1e12;
    const megatron = mtnlg(dp, "megatron-lm").hardwareFlopsPerGpu / 1e12;
    // Whole activations over the network instead of 1/8 slices: 3-4% slower.
    assert.ok(deepspeed < megatron);
    // Predicted 148, 144, 140: +18%, +19%, +23%. The gap beyond scatter/gather is not
    // explained by anything the sources document (docs/planner.md).
    close(deepspeed, published, 0.25, `MT-NLG DP ${dp}`);
    assert.ok(megatron / published - 1 > deepspeed / published - 1);
  }
  assert.match(
    runPlan(["--model", "gpt2-124m", "--profile", "colossal"]).text,
    /^plan: --profile 'colossal' is not a profile; choose one of megatron-lm, deepspeed, metaseq, denotron$/,
  );
  assert.match(
    runPlan(["--model", "gpt2-124m", "--profile", "deepspeed"]).text,
    /profile deepspeed/,
  );
});

Deno.test("the framework's Llama-style presets have their published sizes", () => {
  // Hugging Face model cards: SmolLM2-135M 134.5M, TinyLlama 1.1B 1.100B, Llama 3.2 1B 1.236B.
  close(parameterCount(MODEL_PRESETS["smollm2-135m"]).total, 134.5e6, 0.002, "SmolLM2");
  close(parameterCount(MODEL_PRESETS["tinyllama-1.1b"]).total, 1.1e9, 0.005, "TinyLlama");
  close(parameterCount(MODEL_PRESETS["llama-3.2-1b"]).total, 1.236e9, 0.002, "Llama 3.2 1B");
});

Deno.test("context parallelism keeps s/c of the activations and shards over dp x cp", () => {
  const model = MODEL_PRESETS["llama3-8b"];
  const layout: ParallelLayout = {
    tensorModelParallelSize: 2,
    dataParallelSize: 2,
    globalBatchSize: 8,
    useDistributedOptimizer: true,
  };
  const c = 4;
  const withCp = memoryPerStage(model, { ...layout, contextParallelSize: c })[0];
  const shortSequence = memoryPerStage({ ...model, seqLength: model.seqLength / c }, layout)[0];
  assert.equal(withCp.activations, shortSequence.activations);
  const n = withCp.parameters;
  assert.equal(withCp.optimizer, (12 * n) / (2 * c));
  assert.deepEqual(
    layoutProblems({ ...model, seqLength: 8190 }, { contextParallelSize: 4 }),
    [
      "contextParallelSize 4 needs seqLength 8190 to divide into 2 x 4 chunks (each rank takes one from each end, to balance the causal mask)",
    ],
  );
  assert.match(
    layoutProblems(model, { contextParallelSize: 2, flashAttention: false })[0],
    /needs flash attention/,
  );
});

Deno.test("ring attention passes keys and values c − 1 times per attention pass, placed after TP", () => {
  const model = MODEL_PRESETS["llama3-8b"];
  const [l, s, kv, t, c, m] = [32, 8192, 1024, 2, 4, 2];
  const run = (cluster = CLUSTER_PRESETS.h100, tp = t) =>
    predictStep({
      model,
      cluster,
      layout: {
        tensorModelParallelSize: tp,
        contextParallelSize: c,
        dataParallelSize: 1,
        globalBatchSize: m,
      },
    });
  const p = run();
  assert.equal(p.gpus, t * c);
  const ring = p.communication.find((x) => x.group === "context")!;
  // forward, and twice in backward; 2 (keys and values) · b · s/c · kv/t · 2 bytes per step.
  assert.equal(ring.bytes, m * l * 3 * (c - 1) * ((2 * (s / c) * kv * 2) / t));
  // TP 2 x CP 4 = 8 ranks: the ring stays on NVLink; with TP 8 it crosses nodes.
  assert.equal(ring.bandwidth, CLUSTER_PRESETS.h100.intraNodeBandwidth);
  const wide = run(CLUSTER_PRESETS.h100, 8).communication.find((x) => x.group === "context")!;
  assert.equal(wide.bandwidth, CLUSTER_PRESETS.h100.interNodeBandwidth);
  const json = JSON.parse(
    runPlan([
      "--model",
      "llama3-8b",
      "--cluster",
      "h100",
      "--tp",
      "2",
      "--context-parallel-size",
      "4",
      "--gpus",
      "16",
      "--json",
    ]).text,
  );
  assert.equal(json.layout.dataParallelSize, 2);
  assert.match(
    runPlan(["--model", "llama3-8b", "--context-parallel-size", "3", "--gpus", "8"]).text,
    /^plan: --gpus 8 is not a multiple of --tp 1 x --pp 1 x --context-parallel-size 3$/,
  );
});

// Llama 3 paper, Table 4, last row: 131,072 tokens, TP 8, CP 16, PP 16, DP 8 on 16,384
// H100, 380 TFLOP/s. The run happened, so it must fit; its throughput is not validated
// (m = 16 and a non-interleaved bubble: 223 predicted, see docs/planner.md).
Deno.test("Llama 3 405B at 128K tokens with CP 16 fits in 80 GB", () => {
  const p = predictStep({
    model: { ...MODEL_PRESETS["llama3-405b"], seqLength: 131072 },
    cluster: CLUSTER_PRESETS.h100,
    layout: {
      tensorModelParallelSize: 8,
      contextParallelSize: 16,
      pipelineModelParallelSize: 16,
      dataParallelSize: 8,
      globalBatchSize: 128,
      decoderFirstPipelineNumLayers: 7,
      decoderLastPipelineNumLayers: 7,
      dataParallelShardingStrategy: "optim_grads",
      overlapCommunication: true,
    },
  });
  assert.equal(p.gpus, 16384);
  assert.ok(p.memory.fits, `${p.memory.peak.total / 1e9} GB`);
});

// OPT-175B (Zhang et al. 2022, §2.4; metaseq's launcher, projects/OPT and
// metaseq/launcher/opt_baselines.py): 992 A100 80 GB, FSDP with Megatron tensor
// parallelism 8 (so 124 data-parallel replicas), fp16 weights and fp32 Adam state sharded
// over all ranks, full activation checkpointing distributed over the TP ranks, FSDP with
// --no-reshard-after-forward (weights stay gathered from forward to backward: ZeRO-2's
// memory, one gather per step), 8 sequences of 2048 tokens per replica and step
// (2M tokens / 124, update-freq 1), so B = 992. Published: "up to 147 TFLOP/s per GPU".
// The paper does not say how it counts; we count as Narayanan et al. and MT-NLG do (with
// the recomputed forward), fixed before comparing. Unfused attention (2021).
function opt175b() {
  return predictStep({
    model: MODEL_PRESETS["opt-175b"],
    cluster: CLUSTER_PRESETS.a100,
    profile: IMPLEMENTATION_PROFILES.metaseq,
    layout: {
      tensorModelParallelSize: 8,
      dataParallelSize: 124,
      microBatchSize: 8,
      globalBatchSize: 992,
      precision: "fp16",
      recomputeGranularity: "full",
      distributeSavedActivations: true,
      flashAttention: false,
      sequenceParallel: false,
      dataParallelShardingStrategy: "optim_grads",
      overlapCommunication: true,
    },
  });
}

Deno.test("OPT-175B under the metaseq profile: 175B, fits in 80 GB, within 20% of 147 TFLOP/s", () => {
  close(parameterCount(MODEL_PRESETS["opt-175b"]).total, 175e9, 0.01, "OPT-175B");
  const p = opt175b();
  assert.ok(p.memory.fits, `${p.memory.peak.total / 1e9} GB`);
  // Predicted 168.6 with the recomputed forward (+15%); 126.6 without (−14%).
  close(p.hardwareFlopsPerGpu / 1e12, 147, 0.2, "OPT-175B hardware FLOP/s");
  // FSDP hides its gather and reduce-scatter; the 2021 TP all-reduces stay in the open.
  const group = (g: string) => p.communication.find((c) => c.group === g)!;
  assert.equal(group("data").exposedSeconds, 0);
  assert.equal(group("tensor").exposedSeconds, group("tensor").seconds);
});

Deno.test("distributed saved activations keep 1/t of each checkpointed layer input", () => {
  const model = MODEL_PRESETS["opt-175b"];
  const layout: ParallelLayout = {
    tensorModelParallelSize: 8,
    recomputeGranularity: "full",
    sequenceParallel: false,
    precision: "fp16",
  };
  const whole = memoryPerStage(model, layout)[0].activations;
  const split = memoryPerStage(model, { ...layout, distributeSavedActivations: true })[0]
    .activations;
  const sbh = 2048 * 12288;
  close(whole - split, 96 * 2 * sbh * (7 / 8), 1e-9, "96 layer inputs, 7/8 of each");
  assert.match(runPlan(["--help"]).text, /--distribute-saved-activations/);
});

Deno.test("modelConfigOf(): the planner counts the trainer's GPT-2, Llama and BERT models to the parameter", () => {
  const base = { vocabSize: 61, blockSize: 16, nLayer: 2, nHead: 4, nEmbd: 32 };
  const configs = [
    base,
    { ...base, ...LLAMA_ARCHITECTURE, nKvHead: 2, ffnHidden: 40, tieEmbeddings: false },
    { ...base, ...BERT_ARCHITECTURE },
    GPT_PRESETS["bert-tiny"],
  ];
  for (const c of configs) {
    using model = new GPT(c);
    assert.equal(parameterCount(modelConfigOf(model.config)).total, model.numParameters());
  }
});
