/**
 * Data parallelism and the distributed optimizer on real processes: DP 2 and DP 4 runs of
 * a tiny GPT equal the single-process run with the same global batch, ZeRO-1 equals
 * plain data parallelism, and optimizer shards saved at DP 2 resume at DP 1 and DP 4.
 */
import assert from "assert";
import { FIXTURES, launchFixture } from "./parallel_helpers.ts";
import { device } from "../lib/device.ts";

interface Run {
  losses: number[];
  params: number[];
}

const tmp = await Deno.makeTempDir({ prefix: "denotron-dp-" });

async function run(n: number, mode: string, extra: string[] = []): Promise<Run> {
  const out = `${tmp}/${mode}-${n}-${crypto.randomUUID().slice(0, 6)}.json`;
  const args = ["--mode", mode, "--out", out, ...extra];
  if (n === 1) {
    device();
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", FIXTURES + "train_dp.ts", ...args],
      env: { DENOTRON_NUM_THREADS: "1" },
    }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  } else {
    const r = await launchFixture(n, "train_dp.ts", args);
    assert.equal(r.code, 0, [...r.output, ...r.log].join("\n"));
  }
  return JSON.parse(await Deno.readTextFile(out));
}

/** ‖a − b‖ / ‖b‖ */
function relError(a: number[], b: number[]): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

function assertSameRun(got: Run, want: Run, what: string, tol = 1e-5) {
  assert.equal(got.losses.length, want.losses.length);
  got.losses.forEach((l, i) => {
    const e = Math.abs(l - want.losses[i]) / Math.abs(want.losses[i]);
    assert.ok(e < tol, `${what}: loss of step ${i + 1} is ${l}, single process ${want.losses[i]}`);
  });
  const e = relError(got.params, want.params);
  assert.ok(e < tol, `${what}: parameters differ by ${e} (relative L2) from the reference`);
}

const single = await run(1, "single");

Deno.test("DP=2 and DP=4 training equals the single-process run with the same global batch", async () => {
  assert.ok(single.losses[4] < single.losses[0], "the reference run learns");
  assertSameRun(await run(2, "ddp"), single, "DP=2");
  assertSameRun(await run(4, "ddp"), single, "DP=4");
});

Deno.test("the distributed optimizer (ZeRO-1) equals plain data parallelism and the single process", async () => {
  const ddp = await run(2, "ddp");
  const zero2 = await run(2, "zero");
  assertSameRun(zero2, ddp, "ZeRO-1 DP=2 vs DP=2", 1e-6);
  assertSameRun(zero2, single, "ZeRO-1 DP=2");
  assertSameRun(await run(4, "zero"), single, "ZeRO-1 DP=4");
});

Deno.test("optimizer shards saved at DP=2 resume at DP=1 and DP=4 like the uninterrupted run", async () => {
  const ckpt = `${tmp}/ckpt`;
  await run(2, "zero", ["--steps", "3", "--save", ckpt]);
  const names = [...Deno.readDirSync(ckpt)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "optimizer_shard_000_of_002.safetensors",
    "optimizer_shard_001_of_002.safetensors",
    "params.json",
  ]);
  const rest = ["--steps", "2", "--load", ckpt, "--start-step", "3"];
  for (const n of [1, 4]) {
    const resumed = await run(n, "zero", rest);
    assertSameRun(
      { losses: resumed.losses, params: resumed.params },
      { losses: single.losses.slice(3), params: single.params },
      `resumed at DP=${n}`,
    );
  }
});
