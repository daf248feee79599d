import assert from "assert";
import { LrSchedule } from "../lib/train/lr_schedule.ts";

function close(actual: number, expected: number, what: string) {
  assert.ok(
    Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} != ${expected}`,
  );
}

// lr 1e-3, minLr 1e-4, warmup 10, decay over steps 10..110.
const base = { lr: 1e-3, minLr: 1e-4, warmupIters: 10, decayIters: 110 };

Deno.test("warmup rises linearly from 0 to lr", () => {
  const s = new LrSchedule(base);
  const table: [number, number][] = [[0, 0], [1, 1e-4], [5, 5e-4], [10, 1e-3]];
  for (const [step, lr] of table) close(s.at(step), lr, `step ${step}`);
});

Deno.test("warmup starts from initLr when given", () => {
  const s = new LrSchedule({ ...base, initLr: 2e-4 });
  close(s.at(0), 2e-4, "step 0");
  close(s.at(5), 6e-4, "step 5");
});

Deno.test("cosine: half way is the mean of lr and minLr; the end is minLr", () => {
  const s = new LrSchedule(base);
  const table: [number, number][] = [
    [10, 1e-3],
    [35, 1e-4 + 0.9e-3 * (1 + Math.SQRT1_2) / 2],
    [60, 5.5e-4],
    [85, 1e-4 + 0.9e-3 * (1 - Math.SQRT1_2) / 2],
    [110, 1e-4],
    [111, 1e-4],
    [10_000, 1e-4],
  ];
  for (const [step, lr] of table) close(s.at(step), lr, `step ${step}`);
});

Deno.test("linear: straight line from lr to minLr", () => {
  const s = new LrSchedule({ ...base, decayStyle: "linear" });
  const table: [number, number][] = [[10, 1e-3], [35, 7.75e-4], [60, 5.5e-4], [110, 1e-4], [
    200,
    1e-4,
  ]];
  for (const [step, lr] of table) close(s.at(step), lr, `step ${step}`);
});

Deno.test("constant: lr after warmup, forever", () => {
  const s = new LrSchedule({ ...base, decayStyle: "constant" });
  for (const step of [10, 60, 110, 1000]) close(s.at(step), 1e-3, `step ${step}`);
  close(s.at(5), 5e-4, "warmup still applies");
});

Deno.test("no warmup: step 0 already has the peak rate", () => {
  const s = new LrSchedule({ lr: 1, decayIters: 4, decayStyle: "linear" });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((i) => s.at(i)), [1, 0.75, 0.5, 0.25, 0, 0]);
});

Deno.test("bad settings are errors naming the setting", () => {
  assert.throws(() => new LrSchedule({ ...base, lr: 0 }), /lr must be positive, got 0/);
  assert.throws(
    () => new LrSchedule({ ...base, minLr: 2e-3 }),
    /minLr 0.002 must be in \[0, lr 0.001\]/,
  );
  assert.throws(
    () => new LrSchedule({ ...base, decayIters: 5 }),
    /decayIters 5 must be an integer >= warmupIters 10/,
  );
  assert.throws(
    () => new LrSchedule({ ...base, warmupIters: -1 }),
    /warmupIters must be a non-negative integer/,
  );
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new LrSchedule({ ...base, decayStyle: "exp" as any }),
    /decayStyle must be cosine, linear or constant, got exp/,
  );
});
