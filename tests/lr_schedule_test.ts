import assert from "assert";
import { LrSchedule, type LrWsdDecayStyle } from "../lib/train/lr_schedule.ts";

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
    /decayStyle must be one of cosine, linear, constant, WSD, inverse-square-root, got exp/,
  );
});

// WSD over the same span: warmup 1..10, stable 11..70 (110 - 10 - 40 = 60 steps), decay
// 71..110 (40 steps), then minLr. F is the floor and D = lr - minLr.
const F = 1e-4, D = 9e-4;
const wsd = { ...base, decayStyle: "WSD" as const, wsdDecayIters: 40 };

Deno.test("WSD: warmup, then lr through the stable phase, then each decay shape, then minLr", () => {
  const phases: [number, number][] = [
    [0, 0], // warmup starts at initLr
    [5, 5e-4],
    [10, 1e-3], // end of warmup
    [11, 1e-3], // stable
    [40, 1e-3],
    [70, 1e-3], // last stable step: the decay phase starts here, at r = 0
    [110, F], // end of decay, r = 1
    [111, F], // after the end
    [10_000, F],
  ];
  // the decay phase at r = 1/4 (step 80) and r = 1/2 (step 90), by Megatron's formulas
  const shapes: Record<string, [number, number][]> = {
    linear: [[80, F + 0.75 * D], [90, F + 0.5 * D]],
    cosine: [[80, F + D * (1 + Math.SQRT1_2) / 2], [90, F + 0.5 * D]],
    exponential: [[80, F + D * (2 ** 0.75 - 1)], [90, F + D * (Math.SQRT2 - 1)]],
    minus_sqrt: [[80, F + 0.5 * D], [90, F + D * (1 - Math.SQRT1_2)]],
  };
  for (const [style, middle] of Object.entries(shapes)) {
    const s = new LrSchedule({ ...wsd, wsdDecayStyle: style as LrWsdDecayStyle });
    for (const [step, lr] of [...phases, ...middle]) close(s.at(step), lr, `${style} step ${step}`);
  }
});

Deno.test("WSD: the decay shape is exponential unless given (Megatron's default)", () => {
  const s = new LrSchedule(wsd);
  assert.equal(s.options.wsdDecayStyle, "exponential");
  close(s.at(90), F + D * (Math.SQRT2 - 1), "step 90");
});

Deno.test("WSD without warmup or stable phase: the decay spans all of decayIters", () => {
  const s = new LrSchedule({ lr: 1, decayIters: 4, decayStyle: "WSD", wsdDecayIters: 4 });
  const lin = new LrSchedule({ ...s.options, wsdDecayStyle: "linear" });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((i) => lin.at(i)), [1, 0.75, 0.5, 0.25, 0, 0]);
  close(s.at(2), Math.SQRT2 - 1, "exponential at r = 1/2");
});

Deno.test("inverse-square-root: lr * sqrt(warmup / step) after warmup, floored at minLr", () => {
  // warmup 16, so the rate halves each time the step quadruples: 64 -> lr/2, 256 -> lr/4
  const s = new LrSchedule({
    lr: 1e-3,
    minLr: 1e-4,
    warmupIters: 16,
    decayIters: 1000,
    decayStyle: "inverse-square-root",
  });
  const table: [number, number][] = [
    [0, 0],
    [8, 5e-4],
    [16, 1e-3],
    [17, 1e-3 * 4 / Math.sqrt(17)],
    [64, 5e-4],
    [256, 2.5e-4],
    [1000, 1e-3 * 4 / Math.sqrt(1000)],
    // past decayIters the rate is minLr, as for every decay style in Megatron
    [1001, 1e-4],
  ];
  for (const [step, lr] of table) close(s.at(step), lr, `step ${step}`);
  const floored = new LrSchedule({ ...s.options, minLr: 3e-4 });
  close(floored.at(64), 5e-4, "above the floor");
  close(floored.at(256), 3e-4, "lr/4 is below the floor 3e-4");
});

Deno.test("inverse-square-root without warmup: lr / sqrt(max(step, 1))", () => {
  const s = new LrSchedule({ lr: 1, decayIters: 100, decayStyle: "inverse-square-root" });
  assert.deepEqual([0, 1, 4, 25, 100, 101].map((i) => s.at(i)), [1, 1, 0.5, 0.2, 0.1, 0]);
});

Deno.test("bad WSD settings are errors naming the setting", () => {
  assert.throws(
    () => new LrSchedule({ ...wsd, wsdDecayIters: null }),
    /WSD needs wsdDecayIters, an integer in \[1, decayIters - warmupIters = 100\], got null/,
  );
  assert.throws(
    () => new LrSchedule({ ...wsd, wsdDecayIters: 101 }),
    /WSD needs wsdDecayIters, an integer in \[1, decayIters - warmupIters = 100\], got 101/,
  );
  assert.throws(
    () => new LrSchedule({ ...wsd, wsdDecayStyle: "sqrt" as LrWsdDecayStyle }),
    /wsdDecayStyle must be one of exponential, linear, cosine, minus_sqrt, got sqrt/,
  );
});
