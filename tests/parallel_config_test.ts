/**
 * The model-parallel configuration keys: they load from the command line with Megatron's
 * names, and inconsistent settings fail with a sentence naming the values.
 */
import assert from "assert";
import {
  batchSizeProblem,
  DEFAULT_PARALLEL_CONFIG,
  modelParallelProblems,
} from "../lib/parallel/parallel_config.ts";
import { loadConfig } from "../lib/train/config.ts";

Deno.test("model-parallel keys load from Megatron-style flags", async () => {
  const c = await loadConfig({
    args: [
      "--pipeline-model-parallel-size",
      "2",
      "--virtual-pipeline-model-parallel-size",
      "2",
      "--sequence-parallel",
      "true",
      "--recompute-granularity",
      "full",
      "--recompute-method",
      "uniform",
      "--recompute-num-layers",
      "1",
      "--n-layer",
      "4",
    ],
  });
  assert.equal(c.parallel.virtualPipelineModelParallelSize, 2);
  assert.equal(c.parallel.sequenceParallel, true);
  assert.equal(c.parallel.recomputeGranularity, "full");
  assert.equal(c.parallel.recomputeMethod, "uniform");
  assert.equal(c.parallel.recomputeNumLayers, 1);
});

Deno.test("inconsistent model-parallel settings fail with a sentence", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--virtual-pipeline-model-parallel-size", "2"],
      /virtualPipelineModelParallelSize 2 needs pipelineModelParallelSize > 1/,
    ],
    [["--recompute-granularity", "full"], /recomputeGranularity "full" needs recomputeMethod/],
    [
      ["--recompute-method", "block"],
      /recomputeMethod and recomputeNumLayers apply to recomputeGranularity "full" only/,
    ],
    [["--recompute-granularity", "partial"], /recomputeGranularity/],
  ];
  for (const [args, re] of cases) await assert.rejects(loadConfig({ args }), re);
});

Deno.test("modelParallelProblems names the head count a TP size must divide", () => {
  const p = {
    ...DEFAULT_PARALLEL_CONFIG,
    tensorModelParallelSize: 3,
    pipelineModelParallelSize: 1,
  };
  assert.match(
    modelParallelProblems({ nLayer: 4, nHead: 16, nEmbd: 64 }, p)[0],
    /^tensorModelParallelSize 3 does not divide numAttentionHeads 16/,
  );
  const vp = {
    ...DEFAULT_PARALLEL_CONFIG,
    tensorModelParallelSize: 1,
    pipelineModelParallelSize: 2,
    virtualPipelineModelParallelSize: 3,
  };
  assert.match(
    modelParallelProblems({ nLayer: 4, nHead: 4, nEmbd: 64 }, vp)[0],
    /pipelineModelParallelSize 2 × virtualPipelineModelParallelSize 3 does not divide numLayers 4/,
  );
  assert.match(
    modelParallelProblems({ nLayer: 4, nHead: 4, nEmbd: 64, vocabMultiple: 128 }, {
      ...DEFAULT_PARALLEL_CONFIG,
      tensorModelParallelSize: 2,
      pipelineModelParallelSize: 1,
    })[0],
    /^vocabMultiple 128 applies to single-device models/,
  );
});

Deno.test("modelParallelProblems: the pipeline size must divide the layers", () => {
  const p = { ...DEFAULT_PARALLEL_CONFIG, pipelineModelParallelSize: 3 };
  assert.deepEqual(modelParallelProblems({ nLayer: 4, nHead: 4, nEmbd: 64 }, p), [
    "pipelineModelParallelSize 3 does not divide numLayers 4; the trainer splits the layers evenly over the stages: use one of 1, 2, 4",
  ]);
});

Deno.test("batchSizeProblem: the global batch splits into micro-batches on every DP rank", () => {
  assert.equal(batchSizeProblem(32, 4), null);
  assert.equal(batchSizeProblem(32, 4, 8), null);
  assert.equal(
    batchSizeProblem(10, 4),
    "globalBatchSize 10 is not a positive multiple of microBatchSize 4; choose 8 or 12",
  );
  assert.equal(
    batchSizeProblem(32, 4, 3),
    "globalBatchSize 32 is not a positive multiple of microBatchSize 4 × data-parallel size 3; " +
      "choose 24 or 36",
  );
  assert.match(batchSizeProblem(4, 4, 2)!, /choose 8$/);
  assert.match(batchSizeProblem(0, 4)!, /globalBatchSize 0 is not a positive multiple/);
});
