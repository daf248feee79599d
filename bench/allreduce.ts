/**
 * `deno task bench:comm`: the shm backend's all-reduce on 2 ranks against this machine's
 * memcpy, and the step time of a small GPT with DP=1 and DP=2 (one thread per rank, same
 * global batch).
 *
 * Bus bandwidth follows NCCL's convention for all-reduce: bytes × 2(n−1)/n / time.
 *
 * @module
 */
import { launch } from "../lib/parallel/launch.ts";
import { device } from "../lib/device.ts";

const script = decodeURIComponent(new URL("./comm_rank.ts", import.meta.url).pathname);
device(); // build once, before the ranks start

async function run(n: number, args: string[]): Promise<Record<string, number>[]> {
  const lines: string[] = [];
  const code = await launch({
    nprocPerNode: n,
    script,
    args,
    env: { DENOTRON_NUM_THREADS: "1" },
    output: (_rank, stream, line) => stream === "stdout" ? lines.push(line) : console.error(line),
  });
  if (code !== 0) throw new Error(`bench ranks failed (exit ${code})`);
  return lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

console.log("shm all-reduce, 2 ranks (fp32, sum)");
console.log("   size |  time ms | bus GB/s | memcpy GB/s | bus / memcpy");
for (const r of await run(2, ["allreduce", "1", "4", "16", "64", "256"])) {
  const bytes = r.mib * 2 ** 20;
  const bus = (bytes * 2 * (2 - 1) / 2) / (r.ms / 1e3) / 1e9;
  const mem = bytes / (r.memcpyMs / 1e3) / 1e9;
  console.log(
    `${String(r.mib).padStart(4)} MiB | ${r.ms.toFixed(2).padStart(8)} | ${
      bus.toFixed(2).padStart(8)
    } | ${mem.toFixed(2).padStart(11)} | ${(bus / mem).toFixed(2).padStart(12)}`,
  );
}

console.log(
  "\nsmall GPT (4 layers, width 128, T 64), global batch 8, micro-batch 4, 1 thread/rank",
);
const [one] = await run(1, ["step", "8"]);
const [two] = await run(2, ["step", "8"]);
console.log(`params ${one.params}`);
console.log(`DP=1: ${one.stepMs.toFixed(1)} ms/step`);
console.log(
  `DP=2: ${two.stepMs.toFixed(1)} ms/step (speed-up ${
    (one.stepMs / two.stepMs).toFixed(2)
  }x, ideal 2x)`,
);
