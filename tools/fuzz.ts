/**
 * `deno task fuzz`: the long tier of the reader fuzz suite (tests/fuzz/). Mutates
 * valid inputs of every reader (indexed datasets, safetensors, checkpoints, Hugging
 * Face directories, tokenizer files, YAML configs, command lines), reads each in a
 * subprocess, prints the reader × outcome table and every failing input, and exits 1
 * on any BAD error, crash or hang.
 *
 * ```sh
 * deno task fuzz                                  # 10,000 inputs per reader, seed 1
 * deno task fuzz --seed 7 --per-reader 500 --reader hf --reader cli
 * deno task fuzz --reader hf --seed 1 --only 4242 # replay one input
 * ```
 *
 * @module
 */

import { parseFlags } from "../lib/cli_args.ts";
import { runMain } from "./cli.ts";
import { FAILING } from "../tests/fuzz/classify.ts";
import { KNOWN_DEFECTS } from "../tests/fuzz/known.ts";
import { READERS } from "../tests/fuzz/readers.ts";
import { formatTable, fuzzAll } from "../tests/fuzz/runner.ts";
import { DenotronError } from "../lib/errors.ts";

const USAGE = "usage: deno task fuzz [--seed N] [--per-reader N] [--reader NAME]... " +
  "[--only INDEX] [--jobs N] [--limit-ms MS]";

function count(flag: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new DenotronError(`--${flag}: expected an integer >= ${min}, got '${text}'`);
  }
  return n;
}

async function main(): Promise<number> {
  const { values } = parseFlags({
    args: Deno.args,
    options: {
      seed: { type: "string" },
      "per-reader": { type: "string" },
      reader: { type: "string", multiple: true },
      only: { type: "string" },
      jobs: { type: "string" },
      "limit-ms": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(USAGE + "\nreaders: " + READERS.map((r) => `${r.name} (${r.about})`).join("\n  "));
    return 0;
  }
  const known = READERS.map((r) => r.name);
  for (const r of values.reader ?? []) {
    if (!known.includes(r)) {
      throw new DenotronError(`--reader: unknown reader "${r}"; known: ${known.join(", ")}`);
    }
  }
  const seed = count("seed", values.seed, 1, 0);
  const perReader = count("per-reader", values["per-reader"], 10_000);
  const only = values.only === undefined ? undefined : count("only", values.only, 0, 0);
  const started = performance.now();
  console.log(
    `fuzz: seed ${seed}, ${
      only === undefined ? `${perReader} inputs per reader` : `input ${only}`
    }`,
  );
  const reports = await fuzzAll({
    seed,
    count: perReader,
    readers: values.reader,
    only,
    jobs: count("jobs", values.jobs, 1),
    limitMs: count("limit-ms", values["limit-ms"], 10_000),
    onReport: (r) => {
      const c = r.counts;
      console.log(
        `${r.reader}: ${r.inputs} inputs, ${c.accepted} accepted, ${c.clean} clean, ` +
          `${c.known} known, ${c.bad} bad, ${c.crash} crash, ${c.hang} hang ` +
          `(${r.seconds.toFixed(1)} s)`,
      );
      for (const [k, n] of r.known) console.log(`  known ×${n}: ${k.file}: ${k.note}`);
      for (const f of r.failures) {
        console.log(
          `  ${f.outcome} #${f.index}: ${f.detail}${f.what ? `\n    input: ${f.what}` : ""}`,
        );
      }
      if (only !== undefined) { for (const s of r.cleanSamples) console.log(`  clean: ${s}`); }
    },
  });
  console.log("\n" + formatTable(reports));
  const stale = KNOWN_DEFECTS.filter((k) =>
    k.readers.some((name) => (reports.find((r) => r.reader === name)?.inputs ?? 0) >= 1000) &&
    !reports.some((r) => r.known.has(k))
  );
  for (const k of stale) {
    console.log(
      `note: known defect no longer seen (fixed? remove it from tests/fuzz/known.ts): ` +
        `${k.file}: ${k.note}`,
    );
  }
  console.log(`\n${((performance.now() - started) / 1000).toFixed(0)} s in all`);
  const failing = reports.reduce((a, r) => a + FAILING.reduce((b, o) => b + r.counts[o], 0), 0);
  if (failing > 0) {
    console.error(`fuzz: ${failing} failing inputs (bad, crash or hang)`);
    return 1;
  }
  return 0;
}

if (import.meta.main) await runMain(main);
