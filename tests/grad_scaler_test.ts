/**
 * The loss scalers, step by step, against tables written from Megatron-LM's documented
 * behaviour (megatron/core/optimizer/grad_scaler.py): an overflow resets the clean
 * count and spends hysteresis, backing off once hysteresis is spent, never below the
 * floor; a clean window grows the scale and refills hysteresis.
 */
import assert from "assert";
import { ConstantGradScaler, DynamicGradScaler } from "../lib/optim/grad_scaler.ts";

Deno.test("DynamicGradScaler defaults are Megatron-LM's", () => {
  const s = new DynamicGradScaler();
  assert.equal(s.scale, 2 ** 32);
  assert.equal(s.invScale, 2 ** -32);
  assert.equal(s.minScale, 1);
  assert.equal(s.growthFactor, 2);
  assert.equal(s.backoffFactor, 0.5);
  assert.equal(s.growthInterval, 1000);
  assert.equal(s.hysteresis, 2);
  assert.equal(s.hysteresisTracker, 2);
  // 999 clean steps: no growth; the 1000th doubles
  for (let i = 0; i < 999; i++) s.update(false);
  assert.equal(s.scale, 2 ** 32);
  s.update(false);
  assert.equal(s.scale, 2 ** 33);
  assert.equal(s.growthTracker, 0);
});

Deno.test("DynamicGradScaler follows the table: hysteresis, backoff, floor, growth", () => {
  const s = new DynamicGradScaler({
    initialScale: 4,
    minScale: 1,
    growthInterval: 3,
    hysteresis: 2,
  });
  // [overflow?, scale, growth tracker, hysteresis tracker] after each update
  const table: [boolean, number, number, number][] = [
    [true, 4, 0, 1], // first overflow: hysteresis absorbs it
    [true, 2, 0, 0], // hysteresis spent: back off
    [true, 1, 0, -1], // every further overflow backs off...
    [true, 1, 0, -2], // ...but never below the floor
    [false, 1, 1, -2],
    [false, 1, 2, -2],
    [false, 2, 0, 2], // a clean window: grow and refill hysteresis
    [false, 2, 1, 2],
    [true, 2, 0, 1], // an overflow resets the clean count; hysteresis absorbs it
    [false, 2, 1, 1], // clean steps do not refill hysteresis
    [true, 1, 0, 0], // so the next overflow backs off
    [false, 1, 1, 0],
    [false, 1, 2, 0],
    [false, 2, 0, 2],
  ];
  table.forEach(([inf, scale, growth, hyst], i) => {
    s.update(inf);
    assert.deepEqual(
      [s.scale, s.growthTracker, s.hysteresisTracker],
      [scale, growth, hyst],
      `after update ${i + 1} (${inf ? "overflow" : "clean"})`,
    );
  });
});

Deno.test("DynamicGradScaler state round-trips and options are validated", () => {
  const a = new DynamicGradScaler({ initialScale: 64, growthInterval: 5 });
  a.update(true);
  a.update(false);
  const b = new DynamicGradScaler({ growthInterval: 5 });
  b.loadStateDict(a.stateDict());
  assert.deepEqual(b.stateDict(), { scale: 64, growthTracker: 1, hysteresisTracker: 1 });
  assert.throws(() => new DynamicGradScaler({ initialScale: 0.5 }), /minLossScale 1 is larger/);
  assert.throws(() => new DynamicGradScaler({ hysteresis: 0 }), /hysteresis must be a positive/);
  assert.throws(() => new DynamicGradScaler({ growthInterval: 1.5 }), /lossScaleWindow/);
});

Deno.test("ConstantGradScaler never changes", () => {
  const s = new ConstantGradScaler(128);
  for (const inf of [true, true, false, true]) s.update(inf);
  assert.equal(s.scale, 128);
  assert.equal(s.invScale, 1 / 128);
  assert.throws(() => new ConstantGradScaler(0), /lossScale must be a positive/);
});
