/**
 * Rich display in Jupyter (the Deno kernel), text everywhere else.
 *
 * defines: Displayable, inJupyter, rich, escapeHtml, plot, tensorBundle, moduleBundle,
 *          configBundle, metricsBundle, LiveDisplay (and re-exports MimeBundle and
 *          JUPYTER_DISPLAY from lib/display_registry.ts)
 *
 * The Deno kernel shows any value with a `[Symbol.for("Jupyter.display")]()`
 * method through the MIME bundle it returns; the same objects print their
 * `text/plain` form under `console.log` outside a notebook. Tensors and modules
 * carry the method themselves and ask lib/display_registry.ts for the bundle:
 * importing this file registers {@link tensorBundle} and {@link moduleBundle}
 * there, so the low layers never import the notebook code. Plain values such as
 * a config or a list of metrics go through {@link rich}.
 *
 * @module
 */

import { JUPYTER_DISPLAY, type MimeBundle, registerDisplay } from "../display_registry.ts";
import { Module } from "../nn/module.ts";
import { Tensor } from "../tensor.ts";
import type { MetricsRecord } from "../train/logging.ts";
import { lossCurveSvg, type PlotOptions, type Series } from "../train/plot.ts";

export { JUPYTER_DISPLAY, type MimeBundle };

/** Anything the Deno kernel can show richly. */
export interface Displayable {
  /** The value's MIME bundle. */
  [JUPYTER_DISPLAY](): MimeBundle;
}

/** The subset of `Deno.jupyter` used here (it exists only inside the kernel). */
interface JupyterApi {
  broadcast(
    msgType: string,
    content: Record<string, unknown>,
  ): Promise<void>;
}

/** `Deno.jupyter`, or null outside a Jupyter kernel (where touching it throws). */
function jupyterApi(): JupyterApi | null {
  try {
    const api = (Deno as unknown as { jupyter?: JupyterApi }).jupyter;
    return api && typeof api.broadcast === "function" ? api : null;
  } catch {
    return null;
  }
}

/**
 * Whether this code runs inside the Deno Jupyter kernel.
 *
 * @returns true in a notebook, false in a script or test
 * @example
 * ```ts
 * import { inJupyter } from "./display.ts";
 * inJupyter(); // false under `deno run` and `deno test`
 * ```
 */
export function inJupyter(): boolean {
  return jupyterApi() !== null;
}

/**
 * Wraps a MIME bundle so the kernel displays it and `console.log` prints its
 * text.
 *
 * @param bundle the representations
 * @returns a displayable value whose `toString()` is the `text/plain` form
 * @example
 * ```ts
 * import { rich } from "./display.ts";
 * const d = rich({ "text/plain": "hello", "text/html": "<b>hello</b>" });
 * String(d); // "hello"
 * ```
 */
export function rich(bundle: MimeBundle): Displayable & { toString(): string } {
  return {
    [JUPYTER_DISPLAY]: () => bundle,
    toString: () => bundle["text/plain"],
    [Symbol.for("Deno.customInspect")]: () => bundle["text/plain"],
  } as Displayable & { toString(): string };
}

/**
 * Escapes text for HTML and XML.
 *
 * @param s any text
 * @returns the text with `<`, `>`, `&` and quotes as character references
 * @example
 * ```ts
 * import { escapeHtml } from "./display.ts";
 * escapeHtml("a<b"); // "a&#60;b"
 * ```
 */
export function escapeHtml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * An SVG document without its XML declaration, ready to sit inside HTML.
 *
 * @param svg a standalone SVG document
 * @returns the `<svg>` element alone
 */
function inlineSvg(svg: string): string {
  return svg.replace(/^<\?xml[^>]*>\s*/, "");
}

/**
 * A line plot (the loss-curve renderer of lib/train/plot.ts) as a displayable
 * SVG; its text form lists the last point of each series.
 *
 * @param series the curves
 * @param options title, axis labels, size @default the loss plot's labels, 800×480
 * @returns a displayable plot
 * @example
 * ```ts
 * import { plot } from "./display.ts";
 * const p = plot([{ name: "loss", color: "#1f77b4", points: [[1, 3], [2, 2.5]] }], { title: "demo" });
 * String(p); // "demo: loss 2.5 at 2"
 * ```
 */
export function plot(
  series: readonly Series[],
  options: PlotOptions = {},
): Displayable & { toString(): string } {
  const svg = lossCurveSvg(series, options);
  const last = series.filter((s) => s.points.length).map((s) => {
    const [x, y] = s.points[s.points.length - 1];
    return `${s.name} ${Number(y.toPrecision(4))} at ${x}`;
  });
  return rich({
    "text/plain": `${options.title ?? "Loss"}: ${last.join(", ") || "(no points)"}`,
    "image/svg+xml": svg,
  });
}

const TABLE_STYLE = "border-collapse:collapse;font-family:monospace;font-size:12px";
const CELL = "padding:2px 8px;border:1px solid #ddd;text-align:right";

function htmlTable(header: readonly string[] | null, rows: readonly (readonly string[])[]): string {
  const th = header
    ? `<tr>${header.map((h) => `<th style="${CELL}">${escapeHtml(h)}</th>`).join("")}</tr>`
    : "";
  const body = rows.map((r) =>
    `<tr>${r.map((c) => `<td style="${CELL}">${escapeHtml(c)}</td>`).join("")}</tr>`
  ).join("");
  return `<table style="${TABLE_STYLE}">${th}${body}</table>`;
}

function num(v: number): string {
  return String(Number(v.toPrecision(4)));
}

/** What {@link tensorBundle} reads from a tensor. */
export interface TensorLike {
  /** Size of each dimension. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: string;
  /** Number of elements. */
  readonly numel: number;
  /** Whether the storage has been freed. */
  readonly disposed: boolean;
  /** "f32[2, 3] on cpu". */
  describe(): string;
  /** A host copy of the values. */
  toArray(): Float32Array | Int32Array;
  /** The text form. */
  toString(): string;
}

/**
 * A tensor as an HTML card: dtype, shape and device, summary statistics, and
 * the top-left corner of its values (at most 8×8) as a table.
 *
 * @param t the tensor
 * @returns the bundle (`text/plain` is `t.toString()`)
 * @example
 * ```ts
 * import { Tensor } from "../tensor.ts";
 * import { tensorBundle } from "./display.ts";
 * const b = tensorBundle(Tensor.fromArray(new Float32Array([1, 2, 3, 4]), [2, 2]));
 * b["text/html"]!.includes("mean 2.5"); // true
 * ```
 */
export function tensorBundle(t: TensorLike): MimeBundle {
  const text = t.toString();
  if (t.disposed) return { "text/plain": text, "text/html": `<code>${escapeHtml(text)}</code>` };
  const v = t.toArray();
  let min = Infinity, max = -Infinity, sum = 0, sq = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
    sq += x * x;
  }
  const n = v.length;
  const mean = n ? sum / n : NaN;
  const std = n ? Math.sqrt(Math.max(0, sq / n - mean * mean)) : NaN;
  const stats = n ? `min ${num(min)} · max ${num(max)} · mean ${num(mean)} · std ${num(std)}` : "";
  // The values shown: rows × columns of the last two dimensions, first slice.
  const cols = t.shape.length ? t.shape[t.shape.length - 1] : 1;
  const rowsTotal = t.shape.length >= 2 ? t.shape[t.shape.length - 2] : 1;
  const shownCols = Math.min(cols, 8), shownRows = Math.min(rowsTotal, 8);
  const rows: string[][] = [];
  for (let r = 0; r < shownRows; r++) {
    const row: string[] = [];
    for (let c = 0; c < shownCols; c++) row.push(num(v[r * cols + c]));
    if (cols > shownCols) row.push("…");
    rows.push(row);
  }
  if (rowsTotal > shownRows) rows.push(["⋮"]);
  const more = t.shape.length > 2 ? ` (first of ${n / (cols * rowsTotal)} slices)` : "";
  const html = `<div><b>Tensor</b> <code>${escapeHtml(t.describe())}</code>${more}` +
    `<div style="color:#555;font-size:12px">${stats}</div>${htmlTable(null, rows)}</div>`;
  return { "text/plain": text, "text/html": html };
}

/** What {@link moduleBundle} reads from a module. */
export interface ModuleLike {
  /** Every parameter with its dotted name. */
  namedParameters(): [string, TensorLike][];
  /** Total parameter elements. */
  numParameters(): number;
  /** The module tree as text. */
  toString(): string;
}

/**
 * A module as an HTML table of its parameters (name, shape, dtype, count) with
 * the total.
 *
 * @param m the module
 * @returns the bundle (`text/plain` is the module's tree)
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { moduleBundle } from "./display.ts";
 * using model = new GPT(GPT_PRESETS.tiny);
 * moduleBundle(model)["text/html"]!.includes("h.0.attn.qkv.weight"); // true
 * ```
 */
export function moduleBundle(m: ModuleLike): MimeBundle {
  const rows = m.namedParameters().map(([name, t]) => [
    name,
    `[${t.shape.join(", ")}]`,
    t.dtype,
    t.numel.toLocaleString("en-US"),
  ]);
  const total = m.numParameters().toLocaleString("en-US");
  const html = `<details><summary><b>${escapeHtml(m.constructor.name)}</b>: ${total} ` +
    `parameters in ${rows.length} tensors</summary>` +
    `${htmlTable(["name", "shape", "dtype", "elements"], rows)}</details>`;
  return { "text/plain": m.toString(), "text/html": html };
}

registerDisplay(Tensor, tensorBundle);
registerDisplay(Module, moduleBundle);

function flatten(obj: unknown, prefix: string, out: [string, string][]): void {
  if (obj !== null && typeof obj === "object" && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.push([prefix, JSON.stringify(obj) ?? String(obj)]);
  }
}

/**
 * A nested configuration (such as a `TrainConfig`) as one table per section.
 *
 * @param config any JSON-like object
 * @param title heading @default "Config"
 * @returns a displayable table; its text is `key = value` lines
 * @example
 * ```ts
 * import { DEFAULT_CONFIG } from "../train/config.ts";
 * import { configBundle } from "./display.ts";
 * String(configBundle(DEFAULT_CONFIG)).includes("training.lr = "); // true
 * ```
 */
export function configBundle(
  config: object,
  title = "Config",
): Displayable & { toString(): string } {
  const pairs: [string, string][] = [];
  flatten(config, "", pairs);
  const sections = new Map<string, [string, string][]>();
  for (const [k, v] of pairs) {
    const dot = k.indexOf(".");
    const section = dot < 0 ? "" : k.slice(0, dot);
    if (!sections.has(section)) sections.set(section, []);
    sections.get(section)!.push([dot < 0 ? k : k.slice(dot + 1), v]);
  }
  const blocks = [...sections].map(([s, rows]) =>
    `<div style="display:inline-block;vertical-align:top;margin:0 12px 8px 0">` +
    `<div><b>${escapeHtml(s || "(top level)")}</b></div>${htmlTable(null, rows)}</div>`
  );
  return rich({
    "text/plain": pairs.map(([k, v]) => `${k} = ${v}`).join("\n"),
    "text/html": `<div><b>${escapeHtml(title)}</b><br>${blocks.join("")}</div>`,
  });
}

/**
 * Training and evaluation records (`metrics.jsonl`, or a {@link LiveTraining}'s
 * history) as a loss plot with a table of the latest values.
 *
 * @param records the run's metrics in order
 * @param title plot title @default "Training loss"
 * @returns a displayable summary
 * @example
 * ```ts
 * import { metricsBundle } from "./display.ts";
 * const m = metricsBundle([
 *   { kind: "train", iteration: 10, loss: 3.2, lr: 1e-3, gradNorm: 1, tokensPerSecond: 5e3,
 *     flopsPerSecond: 1e9, elapsed: 2 },
 * ]);
 * String(m).startsWith("iteration 10"); // true
 * ```
 */
export function metricsBundle(
  records: readonly MetricsRecord[],
  title = "Training loss",
): Displayable & { toString(): string } {
  const train = records.filter((r) => r.kind === "train");
  const evals = records.filter((r) => r.kind === "eval");
  const lastEval = evals.at(-1);
  const validName = lastEval && Number.isFinite(lastEval.bitsPerByte)
    ? `validation (last: ${lastEval.bitsPerByte.toFixed(3)} bits/byte)`
    : "validation";
  const svg = lossCurveSvg([
    { name: "train loss", color: "#1f77b4", points: train.map((r) => [r.iteration, r.loss]) },
    {
      name: validName,
      color: "#d62728",
      points: evals.map((r) => [r.iteration, r.loss]),
      markers: true,
    },
  ], { title, width: 640, height: 360 });
  const t = train.at(-1);
  const facts: [string, string][] = t
    ? [
      ["iteration", String(t.iteration)],
      ["loss", t.loss.toFixed(4)],
      ["lr", t.lr.toExponential(2)],
      ["grad norm", t.gradNorm.toFixed(3)],
      ["tokens/s", Math.round(t.tokensPerSecond).toLocaleString("en-US")],
      ["elapsed", `${t.elapsed.toFixed(1)} s`],
    ]
    : [];
  if (lastEval) {
    facts.push(["valid loss", lastEval.loss.toFixed(4)]);
    facts.push(["bits/byte", lastEval.bitsPerByte.toFixed(4)]);
  }
  const text = facts.map(([k, v]) => `${k} ${v}`).join(" | ") || "(no records)";
  const html = `<div style="display:flex;gap:16px;align-items:flex-start">${inlineSvg(svg)}` +
    `${htmlTable(null, facts)}</div>`;
  return rich({ "text/plain": text, "text/html": html });
}

let nextDisplayId = 0;

/**
 * One output area that is replaced in place: in Jupyter the first `update()`
 * creates a display and later ones rewrite it (`update_display_data` with a
 * display id), so a long run shows one evolving plot instead of thousands of
 * lines. Outside Jupyter each update writes its `text/plain` as one line.
 *
 * @example
 * ```ts
 * import { LiveDisplay, rich } from "./display.ts";
 * const lines: string[] = [];
 * const live = new LiveDisplay({ write: (s) => lines.push(s) });
 * await live.update(rich({ "text/plain": "step 1" }));
 * await live.update(rich({ "text/plain": "step 2" }));
 * lines; // ["step 1\n", "step 2\n"]
 * ```
 */
export class LiveDisplay {
  /** The Jupyter display id shared by every update. */
  readonly id: string;
  readonly #write: (text: string) => void;
  #shown = false;

  /**
   * Creates the display; nothing is shown until the first update.
   *
   * @param options `write`: where text goes outside Jupyter @default standard output;
   *   `id`: the display id @default a fresh one
   */
  constructor(options: { write?: (text: string) => void; id?: string } = {}) {
    this.id = options.id ?? `denotron-${Date.now().toString(36)}-${nextDisplayId++}`;
    const encoder = new TextEncoder();
    this.#write = options.write ?? ((s) => Deno.stdout.writeSync(encoder.encode(s)));
  }

  /**
   * Shows `value`, replacing what this display showed before.
   *
   * @param value a displayable value or a MIME bundle
   * @returns when the front end has been sent the data
   */
  async update(value: Displayable | MimeBundle): Promise<void> {
    const bundle = JUPYTER_DISPLAY in value
      ? (value as Displayable)[JUPYTER_DISPLAY]()
      : value as MimeBundle;
    const api = jupyterApi();
    if (!api) {
      this.#write(`${bundle["text/plain"]}\n`);
      return;
    }
    await api.broadcast(this.#shown ? "update_display_data" : "display_data", {
      data: bundle,
      metadata: {},
      transient: { display_id: this.id },
    });
    this.#shown = true;
  }
}
