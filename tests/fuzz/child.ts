/**
 * One fuzz subprocess: builds inputs `from` to `to` of one reader, reads each, and
 * prints one line per input (`@@fuzz {"i":…,"o":…}`), so that the parent knows which
 * input a native crash or a hang happened on: the one after the last line.
 *
 * ```sh
 * deno run -A tests/fuzz/child.ts READER SEED FROM TO
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { type ChildLine, classifyError, LINE_PREFIX, oneLine, type Verdict } from "./classify.ts";
import { readerNamed } from "./readers.ts";
import { inputSeed, Rng } from "./rng.ts";

async function main(): Promise<void> {
  const [name, seedText, fromText, toText] = Deno.args;
  const reader = readerNamed(name);
  const seed = Number(seedText), from = Number(fromText), to = Number(toText);
  const work = await Deno.makeTempDir({ prefix: `fuzz-${name}-` });
  try {
    const seeds = await reader.seeds(join(work, "seeds"));
    for (let i = from; i < to; i++) {
      const root = join(work, `in${i}`);
      const input = await reader.input(new Rng(inputSeed(seed, name, i)), seeds, root);
      let v: Verdict;
      try {
        const problems = await input.run();
        v = problems.length
          ? { outcome: "bad", detail: `accepted invalid: ${problems.join("; ")}` }
          : { outcome: "accepted", detail: "" };
      } catch (e) {
        v = classifyError(e, input.mustName);
        if (input.what === "" && v.outcome === "clean") {
          v = { outcome: "bad", detail: `valid input refused: ${v.detail}` };
        }
      }
      const line: ChildLine = { i, o: v.outcome };
      if (v.outcome !== "accepted") line.d = oneLine(v.detail, 400);
      if (v.outcome === "bad") line.w = oneLine(input.what, 400);
      console.log(LINE_PREFIX + JSON.stringify(line));
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
