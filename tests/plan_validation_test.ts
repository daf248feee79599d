// The planner against published large-scale runs: parameter counts within 1% (or within
// the rounding of the printed size) and per-GPU throughput within 20%.

import assert from "assert";
import {
  MEGATRON_CORE_H100,
  NARAYANAN_2021,
  type PublishedRun,
  validateRun,
} from "../lib/plan/mod.ts";

// The README names this model "32B"; 48 layers of h=7168 with V=131,072 untied make 31.48B,
// and no reading of its printed shape gives 32.0B. Checked at 2% instead of 1%.
const LOOSE_NAMES = new Map([["mcore-32b", 0.02]]);

function checkTable(runs: readonly PublishedRun[]) {
  for (const run of runs) {
    const row = validateRun(run);
    const tolerance = LOOSE_NAMES.get(run.model) ?? 0.01;
    assert.ok(
      Math.abs(row.parameterError) <= tolerance || row.parameterRoundsToPublished,
      `${run.model}: ${(row.parameters / 1e9).toFixed(3)}B vs ${run.parametersBillions}B`,
    );
    assert.ok(
      Math.abs(row.throughputError) <= 0.2,
      `${run.model}: ${row.teraflopsPerGpu.toFixed(1)} vs ${run.teraflopsPerGpu} TFLOP/s per GPU`,
    );
    assert.ok(row.fits, `${run.model}: the published layout must fit in memory`);
  }
}

Deno.test("Narayanan et al. 2021 Table 1 (A100): counts within 1%, throughput within 20%", () => {
  assert.equal(NARAYANAN_2021.length, 10);
  checkTable(NARAYANAN_2021);
});

Deno.test("Megatron-Core H100 table: counts within 1%, throughput within 20%", () => {
  assert.equal(MEGATRON_CORE_H100.length, 9);
  checkTable(MEGATRON_CORE_H100);
});

Deno.test("the 1.7B-to-1T A100 counts are within 1% from 7.5B up", () => {
  for (const run of NARAYANAN_2021.slice(2)) {
    assert.ok(Math.abs(validateRun(run).parameterError) < 0.01, run.model);
  }
});
