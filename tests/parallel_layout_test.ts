/** The rank generator against Megatron-LM's documented layouts; rank variables; launcher arguments; buckets. */
import assert from "assert";
import { groupContaining, parallelLayout, RankGenerator } from "../lib/parallel/layout.ts";
import { firstSlurmHost, readDistributedEnv } from "../lib/parallel/env.ts";
import { parseLaunchArgs } from "../lib/parallel/launch.ts";
import { planBuckets } from "../lib/parallel/ddp.ts";
import { shardRange } from "../lib/parallel/process_group.ts";

Deno.test("16 ranks, tp=2, pp=4: the groups of Megatron-LM's parallel_state docstring", () => {
  const l = parallelLayout({ worldSize: 16, tp: 2, pp: 4 });
  assert.equal(l.dp, 2);
  assert.deepEqual(l.tensor, [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [
    14,
    15,
  ]]);
  assert.deepEqual(l.pipeline, [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]]);
  assert.deepEqual(l.data, [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]]);
  assert.deepEqual(l.modelParallel, [[0, 1, 4, 5, 8, 9, 12, 13], [2, 3, 6, 7, 10, 11, 14, 15]]);
  assert.deepEqual(l.embedding, [[0, 12], [1, 13], [2, 14], [3, 15]]);
  assert.deepEqual(l.positionEmbedding, [[0], [1], [2], [3]]);
});

Deno.test("8 ranks, tp=2, cp=2: context groups sit between tensor and data groups", () => {
  const l = parallelLayout({ worldSize: 8, tp: 2, cp: 2 });
  assert.equal(l.dp, 2);
  assert.deepEqual(l.tensor, [[0, 1], [2, 3], [4, 5], [6, 7]]);
  assert.deepEqual(l.context, [[0, 2], [1, 3], [4, 6], [5, 7]]);
  assert.deepEqual(l.data, [[0, 4], [1, 5], [2, 6], [3, 7]]);
  assert.deepEqual(l.dataContext, [[0, 2, 4, 6], [1, 3, 5, 7]]);
});

Deno.test("the order string changes which dimension varies fastest", () => {
  const g = new RankGenerator({ worldSize: 8, tp: 2, pp: 2, order: "tp-cp-ep-pp-dp" });
  assert.deepEqual(g.groups("pp"), [[0, 2], [1, 3], [4, 6], [5, 7]]);
  assert.deepEqual(g.groups("dp"), [[0, 4], [1, 5], [2, 6], [3, 7]]);
  assert.deepEqual(g.coordinates(5), { tp: 1, cp: 0, ep: 0, pp: 0, dp: 1 });
});

Deno.test("every layout partitions the ranks, and bad sizes fail with a sentence", () => {
  for (const [tp, pp] of [[1, 1], [2, 1], [1, 4], [2, 2], [4, 2]]) {
    const l = parallelLayout({ worldSize: 16, tp, pp });
    for (const groups of [l.tensor, l.pipeline, l.data, l.modelParallel]) {
      assert.deepEqual(groups.flat().sort((a, b) => a - b), [...Array(16).keys()]);
    }
    assert.deepEqual(groupContaining(l.tensor, 0), l.tensor[0]);
  }
  assert.throws(() => parallelLayout({ worldSize: 6, tp: 4 }), /not divisible by tp\*cp\*ep\*pp/);
  assert.throws(() => parallelLayout({ worldSize: 4, ep: 2 }), /expert parallelism/);
  assert.throws(() => new RankGenerator({ worldSize: 4, order: "tp-dp" }), /must name each of/);
});

Deno.test("torchrun and SLURM variables give the same DistributedEnv", () => {
  const t = readDistributedEnv({
    RANK: "3",
    WORLD_SIZE: "4",
    LOCAL_RANK: "1",
    LOCAL_WORLD_SIZE: "2",
    MASTER_ADDR: "10.0.0.1",
    MASTER_PORT: "29501",
  });
  assert.deepEqual(
    [t.rank, t.worldSize, t.localRank, t.localWorldSize, t.masterAddr, t.masterPort, t.source],
    [3, 4, 1, 2, "10.0.0.1", 29501, "torchrun"],
  );
  const s = readDistributedEnv({
    SLURM_PROCID: "3",
    SLURM_NTASKS: "4",
    SLURM_LOCALID: "1",
    SLURM_NTASKS_PER_NODE: "2(x2)",
    SLURM_STEP_NODELIST: "gpu[07-08]",
    SLURM_JOB_ID: "12345",
  });
  assert.deepEqual(
    [s.rank, s.worldSize, s.localRank, s.localWorldSize, s.masterAddr, s.source],
    [3, 4, 1, 2, "gpu07", "slurm"],
  );
  assert.equal(firstSlurmHost("a1,b2"), "a1");
  assert.equal(readDistributedEnv({}).worldSize, 1);
  assert.throws(() => readDistributedEnv({ RANK: "4", WORLD_SIZE: "4" }), /outside a world of 4/);
  assert.throws(() => readDistributedEnv({ RANK: "x" }), /RANK=x/);
});

Deno.test("launcher arguments: options before the script, the script's own after it", () => {
  const o = parseLaunchArgs([
    "--nproc-per-node",
    "4",
    "--master-port=29999",
    "train.ts",
    "--nproc-per-node",
    "9",
  ]);
  assert.deepEqual([o.nprocPerNode, o.masterPort, o.script, o.args], [
    4,
    29999,
    "train.ts",
    ["--nproc-per-node", "9"],
  ]);
  assert.throws(() => parseLaunchArgs(["train.ts"]), /--nproc-per-node is required/);
  assert.throws(() => parseLaunchArgs(["--nproc-per-node", "0", "x.ts"]), /integer >= 1/);
});

Deno.test("buckets: whole parameters from the last one backwards; shards cover any size", () => {
  const entries = [0, 16, 48, 64].map((offset, i) => ({ offset, numel: [10, 30, 16, 5][i] }));
  assert.deepEqual(planBuckets(entries, 80, 20), [
    { start: 48, end: 80, members: [3, 2] },
    { start: 16, end: 48, members: [1] },
    { start: 0, end: 16, members: [0] },
  ]);
  assert.deepEqual(planBuckets(entries, 80, 1000), [{ start: 0, end: 80, members: [3, 2, 1, 0] }]);
  for (const [n, size] of [[10, 3], [2, 4], [0, 2], [7, 7]]) {
    let next = 0;
    for (let q = 0; q < size; q++) {
      const s = shardRange(n, q, size);
      assert.equal(s.start, next);
      next += s.length;
    }
    assert.equal(next, n);
  }
});
