/**
 * Every collective of the shm backend, on 2, 3 and 4 real processes, against plain
 * TypeScript; the same through the staged backend (host copies, DENOTRON_COMM=staged).
 */
import assert from "assert";
import { launchFixture, leftoverSegments } from "./parallel_helpers.ts";
import { StoreClient, StoreServer } from "../lib/parallel/store.ts";
import { chooseBackend, newProcessGroup } from "../lib/parallel/process_group.ts";
import { device } from "../lib/device.ts";
import { commBackendFromEnv } from "../lib/parallel/staged.ts";

for (const n of [2, 3, 4]) {
  Deno.test(`all-reduce (sum/max/min; f32, i32, bf16, f16), reduce-scatter, all-gather, broadcast, send/recv on ${n} ranks equal the single-process reference bit for bit`, async () => {
    const runId = `coll${n}${Date.now() % 100000}`;
    const r = await launchFixture(n, "collectives.ts", [], { DENOTRON_RUN_ID: runId });
    assert.equal(r.code, 0, [...r.output, ...r.log].join("\n"));
    for (let q = 0; q < n; q++) {
      assert.ok(
        r.output.includes(`[rank ${q}] rank ${q}: all collectives match (shm)`),
        r.output.join("\n"),
      );
    }
    assert.deepEqual(leftoverSegments(runId), []);
  });
}

Deno.test("DENOTRON_COMM=staged: every collective through host copies on 3 ranks, bit for bit", async () => {
  const runId = `staged${Date.now() % 100000}`;
  const r = await launchFixture(3, "collectives.ts", [], {
    DENOTRON_RUN_ID: runId,
    DENOTRON_COMM: "staged",
  });
  assert.equal(r.code, 0, [...r.output, ...r.log].join("\n"));
  for (let q = 0; q < 3; q++) {
    assert.ok(
      r.output.includes(`[rank ${q}] rank ${q}: all collectives match (staged)`),
      r.output.join("\n"),
    );
  }
  assert.deepEqual(leftoverSegments(runId), []);
});

Deno.test("DENOTRON_COMM names a backend, or says which exist", () => {
  assert.equal(commBackendFromEnv({}), undefined);
  assert.equal(commBackendFromEnv({ DENOTRON_COMM: "staged" }), "staged");
  assert.throws(
    () => commBackendFromEnv({ DENOTRON_COMM: "gloo" }),
    /DENOTRON_COMM=gloo is not a backend: use shm, staged or nccl/,
  );
});

Deno.test("the tensors' device picks the backend: shm for CPU, nccl for CUDA; a backend that cannot carry them is one line", async () => {
  const cpu = device("cpu");
  // only the device's type and name matter to the choice
  const gpu = { type: "cuda", name: "cuda:0" } as unknown as typeof cpu;
  assert.equal(chooseBackend(cpu, undefined, "g"), "shm");
  assert.equal(chooseBackend(cpu, "staged", "g"), "staged");
  assert.equal(chooseBackend(gpu, undefined, "g"), "nccl");
  assert.equal(chooseBackend(gpu, "staged", "g"), "staged");
  assert.throws(
    () => chooseBackend(gpu, "shm", "dp-0"),
    /^DenotronError: process group 'dp-0': the shm backend reduces CPU tensors, and the tensors are on cuda:0; use nccl .*DENOTRON_COMM=staged/,
  );
  assert.throws(
    () => chooseBackend(cpu, "nccl", "tp-1"),
    /process group 'tp-1': the nccl backend reduces CUDA tensors, and the tensors are on cpu/,
  );
  const auth = { secret: "collectives-test" };
  const server = StoreServer.listen("127.0.0.1", 0, auth);
  const store = await StoreClient.connect("127.0.0.1", server.port, auth);
  try {
    await assert.rejects(
      () => newProcessGroup(store, "x", 0, [0, 1], "g", { backend: "nccl" }),
      /the nccl backend reduces CUDA tensors/,
    );
  } finally {
    store.close();
    await server.close();
  }
});
