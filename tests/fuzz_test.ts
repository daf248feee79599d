/**
 * The quick tier of the reader fuzz suite (tests/fuzz/; the long tier is `deno task
 * fuzz`): a few hundred mutated inputs per reader, each read in a subprocess, and
 * none may crash, hang or fail with an error that names neither its file nor its
 * field. Also checks the harness itself: inputs are a function of the seed, the
 * classifier's rules, and that crashes and hangs are caught and attributed.
 */
import assert from "assert";
import { join } from "node:path";
import { classifyError } from "./fuzz/classify.ts";
import { READERS } from "./fuzz/readers.ts";
import { inputSeed, Rng } from "./fuzz/rng.ts";
import { fuzzAll, fuzzReader } from "./fuzz/runner.ts";

const QUICK_SEED = 20_251_202;
const QUICK_COUNT = 300;

/** Every file under dir, by relative path, as bytes ("dir" for directories). */
async function snapshot(dir: string, rel = ""): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(join(dir, rel))) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) {
      out.set(path, "dir");
      for (const [k, v] of await snapshot(dir, path)) out.set(k, v);
    } else {
      out.set(path, Array.from(await Deno.readFile(join(dir, path))).join(","));
    }
  }
  return out;
}

Deno.test("fuzz: each input is a function of (seed, reader, index) alone", async () => {
  const work = await Deno.makeTempDir();
  try {
    for (const reader of READERS) {
      // seeds built twice, as two runs would
      const seeds = [
        await reader.seeds(join(work, `seeds-${reader.name}-a`)),
        await reader.seeds(join(work, `seeds-${reader.name}-b`)),
      ];
      for (const i of [0, 7, 123]) {
        const made: Map<string, string>[] = [];
        for (const round of [0, 1]) {
          // the same root both times: inputs may mention it (cli's --config paths)
          const root = join(work, `${reader.name}-${i}`);
          const rng = new Rng(inputSeed(5, reader.name, i));
          const input = await reader.input(rng, seeds[round], root);
          made.push(await snapshot(root));
          made[round].set("(what)", input.what);
          await Deno.remove(root, { recursive: true });
        }
        assert.deepEqual(made[0], made[1], `${reader.name} input ${i}`);
      }
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("fuzz: classifyError() passes one-line errors naming the file, and nothing else", () => {
  const file = [["/d/x.json"]];
  const verdict = (e: unknown) => classifyError(e, file).outcome;
  assert.equal(verdict(new Error("/d/x.json: n_embd must be a positive integer, got -1")), "clean");
  assert.equal(verdict(new TypeError("/d/x.json: cannot read properties of null")), "bad");
  assert.equal(verdict(new RangeError("Maximum call stack size exceeded")), "bad");
  assert.equal(verdict(new Error("n_embd must be a positive integer")), "bad");
  assert.equal(verdict(new Error("/d/x.json: not valid JSON (...\n...)")), "bad");
  assert.equal(verdict(new Error(`/d/x.json: got '${"x".repeat(100_000)}'`)), "bad");
  assert.equal(verdict("a string"), "bad");
});

Deno.test("fuzz: a crashing or hanging input is counted once and the run goes on", async () => {
  const crash = await fuzzReader("selftest-crash", { seed: 1, count: 4 });
  assert.deepEqual(crash.counts, { accepted: 3, clean: 0, known: 0, bad: 0, crash: 1, hang: 0 });
  assert.equal(crash.failures[0].index, 1);
  const hang = await fuzzReader("selftest-hang", { seed: 1, count: 4, limitMs: 1500 });
  assert.deepEqual(hang.counts, { accepted: 3, clean: 0, known: 0, bad: 0, crash: 0, hang: 1 });
  assert.equal(hang.failures[0].index, 2);
});

Deno.test(`fuzz quick tier: ${QUICK_COUNT} mutated inputs per reader, no crash, hang or BAD error`, async () => {
  const reports = await fuzzAll({ seed: QUICK_SEED, count: QUICK_COUNT });
  const failures = reports.flatMap((r) =>
    r.failures.map((f) =>
      `${r.reader} #${f.index} ${f.outcome}: ${f.detail}` +
      ` (replay: deno task fuzz --reader ${r.reader} --seed ${QUICK_SEED} --only ${f.index})`
    )
  );
  assert.deepEqual(failures, []);
  for (const r of reports) {
    assert.equal(r.inputs, QUICK_COUNT);
    // a suite that refuses everything tests nothing: valid inputs must get through
    assert.ok(r.counts.accepted > 0, `${r.reader}: no input accepted`);
  }
});
