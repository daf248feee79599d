/**
 * The fuzz runner: feeds each reader's inputs to subprocesses (tests/fuzz/child.ts),
 * a batch of inputs per process, and counts the outcomes. A subprocess that dies
 * counts as a crash of the input after its last report; one that reports nothing
 * for `limitMs` is killed and counts as a hang of that input; either way a new
 * subprocess continues with the next input. Subprocesses run with one native thread
 * and a 4 GiB data limit (`ulimit -d`), so a reader that tries to allocate a huge
 * model fails there instead of taking the machine's memory.
 *
 * defines: FuzzOptions, Failure, ReaderReport, fuzzReader, fuzzAll, formatTable
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { cpuLibraryPath } from "../../ffi/build.ts";
import { cpuLibrary } from "../../ffi/native.ts";
import { type ChildLine, FAILING, LINE_PREFIX, type Outcome, OUTCOMES } from "./classify.ts";
import { type KnownDefect, knownDefect } from "./known.ts";
import { READERS } from "./readers.ts";

/** How to run. */
export interface FuzzOptions {
  /** The run's seed: the same seed makes the same inputs. */
  seed: number;
  /** Inputs per reader. */
  count: number;
  /** Readers to run (names); all when absent. */
  readers?: readonly string[];
  /** Per-input time limit. @default 10000 */
  limitMs?: number;
  /** Inputs per subprocess. @default 2500 */
  chunk?: number;
  /** Readers fuzzed at once. @default 1 */
  jobs?: number;
  /** Only this input (a replay); `count` is ignored. */
  only?: number;
  /** Told each reader's report as it is done. */
  onReport?: (r: ReaderReport) => void;
  /** The CPU library the subprocesses open (DENOTRON_CPU_LIB); fuzzAll sets a private copy. */
  cpuLib?: string;
}

/** An input with a failing outcome. */
export interface Failure {
  /** The input's number (replay it with `deno task fuzz --reader R --seed S --only N`). */
  index: number;
  /** bad, crash or hang. */
  outcome: Outcome;
  /** The message, or why. */
  detail: string;
  /** The mutations (known for BAD outcomes). */
  what?: string;
}

/** One reader's counts. */
export interface ReaderReport {
  /** Its name. */
  reader: string;
  /** Inputs run. */
  inputs: number;
  /** Inputs by outcome. */
  counts: Record<Outcome, number>;
  /** The failing inputs (the first 200). */
  failures: Failure[];
  /** How many inputs each known defect (tests/fuzz/known.ts) accounted for. */
  known: Map<KnownDefect, number>;
  /** One clean message per distinct first word pattern, to read their quality (up to 20). */
  cleanSamples: string[];
  /** Wall time. */
  seconds: number;
}

const CHILD = fileURLToPath(new URL("./child.ts", import.meta.url));
const DATA_LIMIT_KIB = 4 * 1024 * 1024;
const STARTUP_MS = 60_000;

/** Runs inputs [from, to) in one subprocess; stops at the first crash or hang. */
async function runChunk(
  reader: string,
  seed: number,
  from: number,
  to: number,
  limitMs: number,
  cpuLib: string | undefined,
  onLine: (l: ChildLine) => void,
): Promise<Failure | null> {
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -d ${DATA_LIMIT_KIB}; exec "$0" "$@"`,
      Deno.execPath(),
      "run",
      "-A",
      "--no-prompt",
      CHILD,
      reader,
      String(seed),
      String(from),
      String(to),
    ],
    env: {
      DENOTRON_NUM_THREADS: "1",
      NO_COLOR: "1",
      ...(cpuLib ? { DENOTRON_CPU_LIB: cpuLib } : {}),
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr = (stderr + chunk).slice(-4000);
    }
  })();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let next = from;
  let buffered = "";
  let hung = false;
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), limitMs + (next === from ? STARTUP_MS : 0));
    });
    const r = await Promise.race([lines.read(), timeout]);
    clearTimeout(timer);
    if (r === "timeout") {
      hung = true;
      child.kill("SIGKILL");
      await lines.cancel();
      break;
    }
    if (r.done) break;
    buffered += r.value;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    for (const p of parts) {
      if (!p.startsWith(LINE_PREFIX)) continue;
      const line = JSON.parse(p.slice(LINE_PREFIX.length)) as ChildLine;
      onLine(line);
      next = line.i + 1;
    }
  }
  const status = await child.status;
  await stderrDone;
  if (hung) {
    return { index: next, outcome: "hang", detail: `no result within ${limitMs} ms` };
  }
  if (next < to) {
    const how = status.signal ? `signal ${status.signal}` : `exit code ${status.code}`;
    const tail = stderr.trim().split("\n").slice(-3).join(" | ");
    return { index: next, outcome: "crash", detail: `subprocess died (${how}): ${tail}` };
  }
  return null;
}

/**
 * Fuzzes one reader.
 *
 * @param reader its name
 * @param opts seed, count and limits
 * @returns its counts and failures
 */
export async function fuzzReader(reader: string, opts: FuzzOptions): Promise<ReaderReport> {
  const started = performance.now();
  const limitMs = opts.limitMs ?? 10_000;
  const chunk = opts.chunk ?? 2500;
  const counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  const known = new Map<KnownDefect, number>();
  const failures: Failure[] = [];
  const samples = new Map<string, string>();
  const record = (f: Failure) => {
    counts[f.outcome]++;
    if (failures.length < 200) failures.push(f);
  };
  const first = opts.only ?? 0;
  const end = opts.only !== undefined ? opts.only + 1 : opts.count;
  let from = first;
  let deadStarts = 0;
  while (from < end) {
    const to = Math.min(end, from + chunk);
    let reported = 0;
    const stop = await runChunk(reader, opts.seed, from, to, limitMs, opts.cpuLib, (l) => {
      reported++;
      const k = l.o === "bad" ? knownDefect(reader, l.d ?? "") : undefined;
      if (k) {
        counts.known++;
        known.set(k, (known.get(k) ?? 0) + 1);
      } else if (FAILING.includes(l.o)) {
        record({ index: l.i, outcome: l.o, detail: l.d ?? "", what: l.w });
      } else counts[l.o]++;
      if (l.o === "clean" && samples.size < 20) {
        const key = (l.d ?? "").replace(/\/tmp\/\S*/g, "").replace(/\d+/g, "N").slice(0, 60);
        if (!samples.has(key)) samples.set(key, l.d ?? "");
      }
    });
    if (stop === null) {
      from = to;
      continue;
    }
    deadStarts = reported === 0 && stop.outcome === "crash" ? deadStarts + 1 : 0;
    if (deadStarts >= 3) {
      throw new Error(`fuzz ${reader}: the subprocess dies before its first input: ${stop.detail}`);
    }
    record(stop);
    from = stop.index + 1;
  }
  return {
    reader,
    inputs: end - first,
    counts,
    failures,
    known,
    cleanSamples: [...samples.values()],
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Fuzzes every reader (or those named), `jobs` at a time. The subprocesses share a
 * private copy of the CPU library (built first if stale), so that a rebuild by someone
 * editing kernels/ meanwhile neither slows them down nor changes what they run.
 *
 * @param opts seed, counts, limits, readers
 * @returns one report per reader, in table order
 */
export async function fuzzAll(opts: FuzzOptions): Promise<ReaderReport[]> {
  const names = opts.readers ?? READERS.map((r) => r.name);
  const given = Deno.env.get("DENOTRON_CPU_LIB");
  cpuLibrary();
  const cpuLib = given ?? await Deno.makeTempFile({ prefix: "fuzz-libdenotron-", suffix: ".so" });
  if (!given) await Deno.copyFile(cpuLibraryPath(), cpuLib);
  const out: ReaderReport[] = new Array(names.length);
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const k = next++;
      out[k] = await fuzzReader(names[k], { ...opts, cpuLib });
      opts.onReport?.(out[k]);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, opts.jobs ?? 1) }, worker));
  } finally {
    if (!given) await Deno.remove(cpuLib).catch(() => {});
  }
  return out;
}

/**
 * The reader × outcome table, in Markdown.
 *
 * @param reports the reports
 * @returns the table
 */
export function formatTable(reports: readonly ReaderReport[]): string {
  const outcomes = OUTCOMES;
  const rows = [
    `| reader | inputs | ${outcomes.join(" | ")} | seconds |`,
    `|---|---:|${outcomes.map(() => "---:").join("|")}|---:|`,
  ];
  for (const r of reports) {
    rows.push(
      `| ${r.reader} | ${r.inputs} | ${outcomes.map((o) => r.counts[o]).join(" | ")} | ${
        r.seconds.toFixed(1)
      } |`,
    );
  }
  return rows.join("\n");
}
