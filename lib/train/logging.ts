/**
 * Training logs: a progress line for people, JSON lines for programs.
 *
 * defines: TrainRecord, EvalRecord, MetricsRecord, ProgressLogger, MetricsWriter,
 *          readMetrics, formatDuration, formatSi
 *
 * On a terminal the progress line is rewritten in place (`\r`); anywhere else
 * (a pipe, a CI log, a notebook) each report is a plain line of its own.
 *
 * @module
 */

import { writeAll, writeFileAtomic } from "../io/atomic.ts";

/** One logged training step. */
export interface TrainRecord {
  /** Marks a training record. */
  kind: "train";
  /** Optimizer steps completed. */
  iteration: number;
  /** Mean loss of the step's micro-batches (nats per token). */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Training tokens per second over the last logging interval. */
  tokensPerSecond: number;
  /** Model FLOP/s over the last logging interval. */
  flopsPerSecond: number;
  /** Seconds since the run started. */
  elapsed: number;
  /** The loss scale of the last step (fp16 runs). */
  lossScale?: number;
  /** Steps skipped so far because their gradients overflowed (fp16 runs). */
  skippedSteps?: number;
  /** Tokens per sample of the last step (curriculum runs). */
  seqLength?: number;
  /** Samples in the last step (curriculum runs). */
  globalBatchSize?: number;
  /** Blocks run in the last step (curriculum runs). */
  keptLayers?: number;
  /** The loss's named parts over the interval (BERT: mlm, sop). */
  lossParts?: Record<string, number>;
}

/** One evaluation. */
export interface EvalRecord {
  /** Marks an evaluation record. */
  kind: "eval";
  /** Optimizer steps completed when it ran. */
  iteration: number;
  /** Mean validation loss (nats per token). */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  /** Loss in bits per byte of the evaluated text. */
  bitsPerByte: number;
  /** Seconds since the run started. */
  elapsed: number;
  /** The loss's named parts and accuracies (BERT: mlm, sop, mlm_acc, sop_acc). */
  parts?: Record<string, number>;
  /** Evaluation tasks' metrics, "task/metric" to value ("lambada/acc"). @default none */
  tasks?: Record<string, number>;
}

/** A line of `metrics.jsonl`. */
export type MetricsRecord = TrainRecord | EvalRecord;

/**
 * "42s", "3m07s", "1h02m".
 *
 * @param seconds a duration
 * @returns a short human form
 * @example
 * ```ts
 * import { formatDuration } from "./logging.ts";
 * formatDuration(187); // "3m07s"
 * ```
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

/**
 * A number with an SI prefix and three significant digits.
 *
 * @param x the value
 * @returns e.g. "12.3k", "4.56G"
 * @example
 * ```ts
 * import { formatSi } from "./logging.ts";
 * formatSi(12345); // "12.3k"
 * ```
 */
export function formatSi(x: number): string {
  const units = ["", "k", "M", "G", "T", "P"];
  let i = 0;
  while (Math.abs(x) >= 999.5 && i < units.length - 1) (x /= 1000, i++);
  return `${x.toPrecision(3)}${units[i]}`;
}

/** Options of {@link ProgressLogger}. */
export interface ProgressOptions {
  /** Iterations the run will take (for the bar and the ETA). */
  totalIterations: number;
  /** Rewrite one line in place. @default Deno.stdout.isTerminal() */
  terminal?: boolean;
  /** Where text goes. @default standard output */
  write?: (text: string) => void;
}

/**
 * Human-readable progress: `step 120/2000 [██░░] loss 2.134 | lr 1.0e-3 | ...`.
 *
 * @example
 * ```ts
 * import { ProgressLogger } from "./logging.ts";
 * const lines: string[] = [];
 * const log = new ProgressLogger({ totalIterations: 10, terminal: false, write: (s) => lines.push(s) });
 * log.train({ kind: "train", iteration: 1, loss: 5.5, lr: 1e-3, gradNorm: 1.2,
 *   tokensPerSecond: 8000, flopsPerSecond: 4e10, elapsed: 0.5 });
 * lines[0].startsWith("step 1/10"); // true
 * ```
 */
export class ProgressLogger {
  /** Iterations the run will take. */
  readonly totalIterations: number;
  /** Whether progress rewrites one line in place. */
  readonly terminal: boolean;
  readonly #write: (text: string) => void;
  /** Whether a progress line is waiting to be overwritten. */
  #open = false;

  /**
   * A logger writing to standard output unless told otherwise.
   *
   * @param options total iterations, terminal mode and output
   */
  constructor(options: ProgressOptions) {
    this.totalIterations = options.totalIterations;
    this.terminal = options.terminal ?? Deno.stdout.isTerminal();
    const encoder = new TextEncoder();
    this.#write = options.write ?? ((s) => Deno.stdout.writeSync(encoder.encode(s)));
  }

  /**
   * Reports a training step.
   *
   * @param r the step's metrics
   * @param etaSeconds time left, if known
   */
  train(r: TrainRecord, etaSeconds?: number): void {
    const total = this.totalIterations;
    const parts = [
      `step ${r.iteration}/${total}`,
      `loss ${r.loss.toFixed(4)}`,
      ...Object.entries(r.lossParts ?? {}).map(([n, v]) => `${n} ${v.toFixed(4)}`),
      `lr ${r.lr.toExponential(2)}`,
      `grad norm ${r.gradNorm.toFixed(3)}`,
      ...(r.lossScale !== undefined ? [`loss scale ${r.lossScale}`] : []),
      ...(r.skippedSteps !== undefined ? [`skipped ${r.skippedSteps}`] : []),
      ...(r.seqLength !== undefined ? [`seq ${r.seqLength}`] : []),
      ...(r.globalBatchSize !== undefined ? [`batch ${r.globalBatchSize}`] : []),
      ...(r.keptLayers !== undefined ? [`layers ${r.keptLayers}`] : []),
      `${formatSi(r.tokensPerSecond)} tok/s`,
      `${formatSi(r.flopsPerSecond)}FLOP/s`,
      `elapsed ${formatDuration(r.elapsed)}`,
      `ETA ${formatDuration(etaSeconds ?? NaN)}`,
    ];
    if (this.terminal) {
      const width = 20;
      const done = Math.min(width, Math.round((r.iteration / total) * width));
      parts[0] += ` [${"█".repeat(done)}${"░".repeat(width - done)}]`;
      this.#write(`\r\x1b[2K${parts.join(" | ")}`);
      this.#open = true;
    } else {
      this.line(parts.join(" | "));
    }
  }

  /**
   * Reports an evaluation, always on a line of its own.
   *
   * @param r the evaluation's metrics
   */
  eval(r: EvalRecord): void {
    this.line(
      `eval at step ${r.iteration}: loss ${r.loss.toFixed(4)} | perplexity ` +
        `${r.perplexity.toFixed(2)} | ${r.bitsPerByte.toFixed(4)} bits/byte` +
        Object.entries(r.parts ?? {}).map(([k, v]) => ` | ${k} ${v.toFixed(4)}`).join("") +
        Object.entries(r.tasks ?? {}).map(([k, v]) => ` | ${k} ${v.toFixed(4)}`).join(""),
    );
  }

  /**
   * Prints a message on its own line (ending any progress line first).
   *
   * @param text the message
   */
  line(text: string): void {
    this.#write(`${this.#open ? "\n" : ""}${text}\n`);
    this.#open = false;
  }

  /** Ends an open progress line. Safe to call twice. */
  close(): void {
    if (this.#open) this.#write("\n");
    this.#open = false;
  }
}

/**
 * Appends metrics as JSON lines. Each record is written whole with one write,
 * so a killed run leaves complete lines behind.
 */
export class MetricsWriter {
  readonly path: string;
  #file: Deno.FsFile | null;
  readonly #encoder = new TextEncoder();

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Opens `path` for appending (created with its directory if missing).
   *
   * @param path the `.jsonl` file
   * @param opts `keepThrough`: drop the records of later iterations first (and lines an
   *   interrupted write left incomplete), so a run resumed at that iteration does not
   *   repeat the steps it replays; 0 starts the file afresh
   * @returns the writer
   */
  static async open(path: string, opts: { keepThrough?: number } = {}): Promise<MetricsWriter> {
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
    await Deno.mkdir(dir, { recursive: true });
    const keep = opts.keepThrough;
    if (keep !== undefined) {
      const old = await readMetrics(path).catch((e) => {
        if (e instanceof Deno.errors.NotFound) return [];
        throw e;
      });
      const kept = old.filter((r) => typeof r.iteration === "number" && r.iteration <= keep);
      const text = kept.map((r) => JSON.stringify(r) + "\n").join("");
      await writeFileAtomic(path, (f) => writeAll(f, new TextEncoder().encode(text)));
    }
    return new MetricsWriter(path, await Deno.open(path, { append: true, create: true }));
  }

  /**
   * Appends one record.
   *
   * @param record the metrics
   */
  write(record: MetricsRecord): void {
    if (!this.#file) throw new Error(`${this.path}: metrics writer is closed`);
    const bytes = this.#encoder.encode(JSON.stringify(record) + "\n");
    let off = 0;
    while (off < bytes.length) off += this.#file.writeSync(bytes.subarray(off));
  }

  /** Closes the file. Safe to call twice. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Reads a `metrics.jsonl`; a torn last line (a killed run) is skipped.
 *
 * @param path the file
 * @returns the records in file order
 */
export async function readMetrics(path: string): Promise<MetricsRecord[]> {
  const text = await Deno.readTextFile(path);
  const out: MetricsRecord[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // an incomplete line from an interrupted write
    }
  }
  return out;
}
