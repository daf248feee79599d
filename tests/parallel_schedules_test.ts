/**
 * Pipeline schedules against tables worked out by hand (F3 = forward of micro-batch 3,
 * B0.1 = backward of micro-batch 0 on chunk 1), and the communication plan's promise:
 * every message is sent and received exactly once, in the same order by both ends.
 */
import assert from "assert";
import {
  interleavedOneFOneB,
  noPipelining,
  oneFOneB,
  type PipelineAction,
  planCommunication,
} from "../lib/parallel/schedules.ts";

/** "F0 F1 | F2 B0 ... | B3": phases separated by bars. */
function table(actions: Iterable<PipelineAction>, chunks = false): string {
  const phases: Record<string, string[]> = { warmup: [], steady: [], cooldown: [] };
  for (const a of actions) {
    const name = `${a.kind === "forward" ? "F" : "B"}${a.microBatch}${chunks ? "." + a.chunk : ""}`;
    phases[a.phase].push(name);
  }
  return [phases.warmup, phases.steady, phases.cooldown].map((p) => p.join(" ")).join(" | ");
}

Deno.test("no pipelining: forward and backward of each micro-batch in turn", () => {
  assert.equal(table(noPipelining(3)), " | F0 B0 F1 B1 F2 B2 | ");
});

Deno.test("1F1B with p=2, m=4 matches the hand-derived table", () => {
  assert.equal(table(oneFOneB(2, 0, 4)), "F0 | F1 B0 F2 B1 F3 B2 | B3");
  assert.equal(table(oneFOneB(2, 1, 4)), " | F0 B0 F1 B1 F2 B2 F3 B3 | ");
});

Deno.test("1F1B with p=4, m=8 matches the hand-derived table", () => {
  assert.equal(table(oneFOneB(4, 0, 8)), "F0 F1 F2 | F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 | B5 B6 B7");
  assert.equal(table(oneFOneB(4, 1, 8)), "F0 F1 | F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 | B6 B7");
  assert.equal(table(oneFOneB(4, 2, 8)), "F0 | F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 | B7");
  assert.equal(
    table(oneFOneB(4, 3, 8)),
    " | F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7 | ",
  );
  // fewer micro-batches than stages: all forwards are warmup
  assert.equal(table(oneFOneB(4, 0, 2)), "F0 F1 |  | B0 B1");
});

Deno.test("interleaved 1F1B with p=2, v=2, m=4 matches the hand-derived table", () => {
  // rank 0: warmup (2-0-1)·2 + (2-1)·2 = 4 forwards; rank 1: 2
  assert.equal(
    table(interleavedOneFOneB(2, 0, 4, 2), true),
    "F0.0 F1.0 F0.1 F1.1 | F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 | B2.1 B3.1 B2.0 B3.0",
  );
  assert.equal(
    table(interleavedOneFOneB(2, 1, 4, 2), true),
    "F0.0 F1.0 | F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 | B2.0 B3.0",
  );
  assert.throws(() => [...interleavedOneFOneB(2, 0, 3, 2)], /multiple of the pipeline size 2/);
});

function checkPlan(schedules: PipelineAction[][], v: number) {
  const plan = planCommunication(schedules, v);
  plan.forEach((ops, r) => {
    const computes = ops.filter((o) => o.op === "compute").map((o) =>
      o.op === "compute" && o.action
    );
    assert.deepEqual(computes, schedules[r], `rank ${r} runs its schedule in order`);
  });
  // Each pair of ranks sees its messages in the same order from both ends.
  for (let a = 0; a < plan.length; a++) {
    for (let b = 0; b < plan.length; b++) {
      if (a === b) continue;
      const sent = plan[a].filter((o) => o.op === "send" && o.peer === b)
        .map((o) => JSON.stringify(o.op !== "compute" && o.message));
      const got = plan[b].filter((o) => o.op === "recv" && o.peer === a)
        .map((o) => JSON.stringify(o.op !== "compute" && o.message));
      assert.deepEqual(sent, got, `messages ${a} → ${b}`);
    }
  }
}

Deno.test("communication plans pair every send with its recv, in order", () => {
  for (const [p, m] of [[2, 4], [4, 8], [4, 2]]) {
    checkPlan([...Array(p).keys()].map((r) => [...oneFOneB(p, r, m)]), 1);
  }
  for (const [p, m, v] of [[2, 4, 2], [2, 2, 2], [4, 8, 2]]) {
    checkPlan([...Array(p).keys()].map((r) => [...interleavedOneFOneB(p, r, m, v)]), v);
  }
});
