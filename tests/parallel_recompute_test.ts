/**
 * Activation recomputation: full (uniform and block) and selective recomputation give
 * the gradients of the run that keeps every activation, bit for bit (same kernels, same
 * dropout counters), and the native allocator's peak shows the memory they save.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { SingleProcessGroup } from "../lib/parallel/process_group.ts";
import type { RecomputeOptions } from "../lib/parallel/recompute.ts";
import { recomputeGroups } from "../lib/parallel/recompute.ts";
import { TensorParallelGPT } from "../lib/parallel/tp_gpt.ts";
import { Tensor, tidy } from "../lib/tensor.ts";

const config = { vocabSize: 64, blockSize: 32, nLayer: 4, nHead: 4, nEmbd: 64, dropout: 0.1 };
const B = 4, T = 32;

/** One step's gradients and the allocator's peak (bytes in use) when it ran. */
function step(recompute: RecomputeOptions | null): { grad: Float32Array; peak: number } {
  const model = new TensorParallelGPT(config, {
    seed: 5,
    group: new SingleProcessGroup("tp", 0),
    recompute,
  });
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 29 + 3) % 64);
  const tgt = Int32Array.from({ length: B * T }, (_, i) => (i * 17 + 1) % 64);
  tidy(() => {
    const x = Tensor.fromArray(ids, [B, T], { dtype: "i32" });
    const y = Tensor.fromArray(tgt, [B, T], { dtype: "i32" });
    model.loss(x, y).backward();
  });
  const grad = model.params.grad.toArray() as Float32Array;
  model.dispose();
  return { grad, peak: device().memoryStats().peak };
}

Deno.test("recomputeGroups: uniform groups of N layers, block the first N", () => {
  assert.deepEqual(recomputeGroups(4, { granularity: "full", method: "uniform", numLayers: 1 }), [
    [0],
    [1],
    [2],
    [3],
  ]);
  assert.deepEqual(
    recomputeGroups(5, { granularity: "full", method: "uniform", numLayers: 2 }),
    [[0, 1], [2, 3], [4]],
  );
  assert.deepEqual(recomputeGroups(4, { granularity: "full", method: "block", numLayers: 2 }), [
    [0],
    [1],
  ]);
  assert.deepEqual(recomputeGroups(4, { granularity: "selective" }), []);
});

Deno.test("recomputation gives identical gradients and a lower peak (measured)", () => {
  // The peak only grows, so run from the least memory to the most.
  const base = device().memoryStats().peak;
  const uniform = step({ granularity: "full", method: "uniform", numLayers: 1 });
  const block = step({ granularity: "full", method: "block", numLayers: 2 });
  const selective = step({ granularity: "selective" });
  const none = step(null);
  const mib = (n: number) => (n / 2 ** 20).toFixed(2);
  console.log(
    `peak MiB: full uniform(1) ${mib(uniform.peak)}, full block(2) ${mib(block.peak)}, ` +
      `selective ${mib(selective.peak)}, none ${mib(none.peak)} (before ${mib(base)})`,
  );
  for (const [name, r] of [["uniform", uniform], ["block", block], ["selective", selective]]) {
    const g = (r as typeof none).grad;
    assert.ok(g.every((v, i) => v === none.grad[i]), `${name}: gradients differ`);
  }
  assert.ok(uniform.peak < block.peak, "every layer recomputed needs less than two");
  assert.ok(block.peak < none.peak, "recomputing two layers saves memory");
  assert.ok(selective.peak <= none.peak, "selective recomputation costs no memory");
});
