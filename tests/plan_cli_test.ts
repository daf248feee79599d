// `deno task plan`: flags in, report out, mistakes named.

import assert from "assert";
import { runPlan } from "../tools/plan.ts";

Deno.test("plan prints parameters, memory, step time and MFU for a preset", () => {
  const { code, text } = runPlan([
    "--model",
    "gpt2-124m",
    "--cluster",
    "cpu",
    "--precision",
    "fp32",
  ]);
  assert.equal(code, 0);
  assert.match(text, /124\.4M parameters/);
  assert.match(text, /MFU [0-9.]+%/);
  assert.match(text, /fits/);
});

Deno.test("plan --json returns the prediction as JSON", () => {
  const { code, text } = runPlan([
    "--model",
    "gpt3-175b",
    "--cluster",
    "h100",
    "--tp",
    "8",
    "--pp",
    "8",
    "--gpus",
    "512",
    "--global-batch",
    "512",
    "--distributed-optimizer",
    "--json",
  ]);
  assert.equal(code, 0);
  const p = JSON.parse(text);
  assert.equal(p.gpus, 512);
  assert.equal(p.layout.dataParallelSize, 8);
  assert.equal(p.communication.length, 4);
});

Deno.test("plan --search lists layouts that fit and the reasons others fail", () => {
  const { code, text } = runPlan([
    "--model",
    "gpt3-13b",
    "--gpus",
    "16",
    "--cluster",
    "a100",
    "--global-batch",
    "32",
    "--search",
    "--top",
    "3",
  ]);
  assert.equal(code, 0);
  assert.match(text, /layouts fit 16 x a100; the fastest 3:/);
  assert.match(text, /layouts rejected/);
  // A layout flag fixes that dimension of the search: here context parallelism 2.
  const cp = runPlan([
    "--model",
    "llama3-8b",
    "--gpus",
    "8",
    "--cluster",
    "h100",
    "--global-batch",
    "16",
    "--micro-batch",
    "1",
    "--context-parallel-size",
    "2",
    "--search",
    "--json",
  ]);
  assert.equal(cp.code, 0, cp.text);
  const ranked = JSON.parse(cp.text).ranked as { layout: { contextParallelSize: number } }[];
  assert.ok(ranked.length > 0);
  for (const p of ranked) assert.equal(p.layout.contextParallelSize, 2);
});

Deno.test("plan names the bad flag or value", () => {
  const cases: [string[], RegExp][] = [
    [["--model", "gpt2-124m", "--tp", "x"], /--tp must be a positive integer, got 'x'/],
    [["--model", "gpt5"], /--model 'gpt5' is not a preset/],
    [["--model", "gpt2-124m", "--cluster", "tpu"], /--cluster 'tpu' is not a preset/],
    [
      ["--model", "gpt2-124m", "--precision", "fp8"],
      /--precision must be one of bf16, fp16, fp32, got 'fp8'/,
    ],
    [
      ["--model", "gpt2-124m", "--recompute", "some"],
      /--recompute must be one of none, selective, full/,
    ],
    [["--model", "gpt2-124m", "--bogus"], /--bogus/],
    [
      ["--model", "gpt2-124m", "--gpus", "8", "--tp", "3"],
      /--gpus 8 is not a multiple of --tp 3 x --pp 1/,
    ],
    [["--model", "gpt2-124m", "--search"], /--search needs --gpus N/],
  ];
  for (const [args, message] of cases) {
    const { code, text } = runPlan(args);
    assert.equal(code, 2, args.join(" "));
    assert.match(text, message);
  }
  const bad = runPlan(["--model", "gpt2-124m", "--pp", "5"]);
  assert.equal(bad.code, 1);
  assert.match(
    bad.text,
    /pipelineModelParallelSize 5 does not divide numLayers 12; split it unevenly, e.g. --decoder-first-pipeline-num-layers 2 --decoder-last-pipeline-num-layers 1/,
  );
  const split = runPlan([
    "--model",
    "gpt2-124m",
    "--pp",
    "5",
    "--decoder-first-pipeline-num-layers",
    "2",
    "--decoder-last-pipeline-num-layers",
    "1",
  ]);
  assert.equal(split.code, 0, split.text);
});

Deno.test("plan names the communication backend its collectives are modelled on", () => {
  const args = (cluster: string, gpus: string) => [
    "--model",
    "gpt2-124m",
    "--gpus",
    gpus,
    "--cluster",
    cluster,
    "--global-batch",
    "8",
  ];
  const gpu = runPlan(args("h100", "8"));
  assert.equal(gpu.code, 0, gpu.text);
  assert.match(gpu.text, /^cluster +h100 x 8, .*, nccl backend$/m);
  const cpu = runPlan(args("cpu", "2"));
  assert.equal(cpu.code, 0, cpu.text);
  assert.match(cpu.text, /^cluster +cpu x 2, .*, shm backend$/m);
});
