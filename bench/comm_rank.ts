/**
 * One rank of `deno task bench:comm` (started by bench/allreduce.ts through the launcher).
 *
 *   allreduce SIZES_MIB...   median all-reduce time per size (rank 0 prints JSON lines)
 *   step GLOBAL_BATCH        median training-step time of a small GPT under DataParallel
 *
 * @module
 */
import { median } from "./common.ts";
import { GPT } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { DataParallel } from "../lib/parallel/ddp.ts";
import { initDistributed } from "../lib/parallel/init.ts";
import { Tensor, tidy } from "../lib/tensor.ts";

const [mode, ...rest] = Deno.args;
await using dist = await initDistributed({ slotBytes: 16 << 20 });
const out = (o: unknown) => dist.rank === 0 && console.log(JSON.stringify(o));

if (mode === "allreduce") {
  for (const mib of rest.map(Number)) {
    const n = (mib << 20) / 4;
    using t = Tensor.randn([n], { seed: dist.rank });
    using copy = Tensor.empty([n]);
    const reps = mib >= 64 ? 3 : 10;
    const times: number[] = [], memcpy: number[] = [];
    for (let i = 0; i < reps + 1; i++) {
      dist.world.barrier();
      const t0 = performance.now();
      dist.world.allReduce(t);
      const t1 = performance.now();
      copy.copy_(t);
      const t2 = performance.now();
      if (i > 0) {
        times.push(t1 - t0);
        memcpy.push(t2 - t1);
      }
    }
    out({ mib, ms: median(times), memcpyMs: median(memcpy) });
  }
} else {
  const G = Number(rest[0] ?? 8), B = 4, T = 64;
  const model = new GPT({ vocabSize: 257, blockSize: T, nLayer: 4, nHead: 4, nEmbd: 128 }, {
    seed: 1,
  });
  const ddp = new DataParallel(model.params, dist.world);
  const opt = new AdamW(model.params, { lr: 1e-4 });
  const k = G / (B * dist.worldSize);
  const x = Tensor.fromArray(
    Int32Array.from({ length: B * T }, (_, i) => (i * 7 + dist.rank) % 257),
    [B, T],
  );
  const y = Tensor.fromArray(Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 3) % 257), [
    B,
    T,
  ]);
  const times: number[] = [];
  let commMs = 0;
  for (let s = 0; s < 6; s++) {
    const t0 = performance.now();
    for (let i = 0; i < k; i++) {
      ddp.isLastMicroBatch = i === k - 1;
      tidy(() => model.loss(x, y).backward());
    }
    const c0 = performance.now();
    ddp.finishGradSync();
    if (s > 0) commMs += performance.now() - c0;
    opt.step(1e-4, 1 / k);
    model.params.zeroGrad();
    if (s > 0) times.push(performance.now() - t0);
  }
  out({ ranks: dist.worldSize, params: model.numParameters(), stepMs: median(times) });
}
