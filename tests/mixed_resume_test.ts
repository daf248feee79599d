/**
 * Exact mixed-precision resume: checkpoints hold the fp32 main parameters and the loss
 * scaler's state, so a resumed bf16 or fp16 run repeats the uninterrupted run's losses
 * bit for bit; and bytes per parameter with the distributed optimizer follow
 * Megatron's table.
 */
import assert from "assert";
import { GPT } from "../lib/nn/gpt.ts";
import { DataParallel } from "../lib/parallel/ddp.ts";
import { SingleProcessGroup } from "../lib/parallel/process_group.ts";
import { distributedBytesPerParameter, DistributedOptimizer } from "../lib/parallel/zero.ts";
import { tinyConfig, tinyCorpus, tinyTrainer } from "./train_helpers.ts";

const corpus = await tinyCorpus();

async function resumeEqualsStraight(overrides: Record<string, unknown>) {
  const config = tinyConfig({ dropout: 0.1, globalBatchSize: 8, trainIters: 8, ...overrides });
  const straight = tinyTrainer(corpus, config);
  const expected = Array.from({ length: 8 }, () => straight.step());
  const skipped = straight.skippedSteps, scale = straight.scaler?.scale;
  straight.dispose();

  const dir = await Deno.makeTempDir();
  const first = tinyTrainer(corpus, config);
  const got = Array.from({ length: 4 }, () => first.step());
  await first.save(dir);
  first.dispose();
  const second = tinyTrainer(corpus, config);
  await second.load(dir);
  for (let i = 0; i < 4; i++) got.push(second.step());
  assert.deepEqual(got.map((r) => r.loss), expected.map((r) => r.loss));
  assert.deepEqual(got.map((r) => r.lossScale), expected.map((r) => r.lossScale));
  assert.equal(second.skippedSteps, skipped);
  assert.equal(second.scaler?.scale, scale);
  second.dispose();
  return expected;
}

Deno.test("a resumed bf16 run's losses equal the uninterrupted run's, bit for bit", async () => {
  await resumeEqualsStraight({ bf16: true });
});

Deno.test("a resumed fp16 run (scale, growth and hysteresis trackers, skipped steps) equals the uninterrupted run", async () => {
  // A scale that overflows at first, a short window: the trackers matter across the save.
  const steps = await resumeEqualsStraight({
    fp16: true,
    initialLossScale: 2 ** 24,
    lossScaleWindow: 3,
    hysteresis: 2,
  });
  assert.ok(new Set(steps.map((s) => s.lossScale)).size > 1, "the loss scale changed");
});

Deno.test("distributed optimizer bytes per parameter follow Megatron's table for d = 1, 2, 4", () => {
  // bf16 parameters, fp32 gradients: 6 + 12/d; fp32: 8 + 8/d.
  const table: [number, number, number][] = [[1, 18, 16], [2, 12, 12], [4, 9, 10]];
  for (const [d, bf16, fp32] of table) {
    assert.equal(distributedBytesPerParameter("bf16", d).total, bf16, `bf16, d = ${d}`);
    assert.equal(distributedBytesPerParameter("f16", d).total, bf16, `fp16, d = ${d}`);
    assert.equal(distributedBytesPerParameter("f32", d).total, fp32, `fp32, d = ${d}`);
  }
  assert.throws(() => distributedBytesPerParameter("bf16", 0), /positive integer, got 0/);
});

Deno.test("a bf16 DistributedOptimizer holds 6 + 12/d bytes per parameter on rank 0 of d = 1, 2, 4", () => {
  const model = new GPT({ vocabSize: 257, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32 }, {
    dtype: "bf16",
  });
  for (const d of [1, 2, 4]) {
    // Building the shards only reads the group's rank and size: a group of one posing as
    // rank 0 of d is enough to measure the buffers.
    const group = Object.assign(new SingleProcessGroup(`dp${d}`, 0), { size: d });
    const ddp = new DataParallel(model.params, group, { reduceScatter: true, bucketSize: 4096 });
    const opt = new DistributedOptimizer(ddp);
    const got = opt.bytesPerParameter().total, want = 6 + 12 / d;
    assert.ok(Math.abs(got - want) / want < 0.01, `d = ${d}: ${got} bytes, table ${want}`);
    opt.dispose();
    ddp.dispose();
  }
  model.dispose();
});
