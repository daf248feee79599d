/**
 * The loss curve as a hand-written SVG (and a PNG where a renderer is installed).
 *
 * defines: Series, PlotOptions, lossCurveSvg, writeLossPlot, niceTicks
 *
 * @module
 */

import { writeAll, writeFileAtomic } from "../io/atomic.ts";
import type { MetricsRecord } from "./logging.ts";

/** One curve. */
export interface Series {
  /** Legend text. */
  name: string;
  /** (x, y) points, x increasing. */
  points: [number, number][];
  /** CSS colour. */
  color: string;
  /** Draw a marker at each point (for sparse series such as evaluations). @default false */
  markers?: boolean;
}

/** Labels and size of a plot. */
export interface PlotOptions {
  /** Title above the plot. @default "Loss" */
  title?: string;
  /** Horizontal axis label. @default "iteration" */
  xLabel?: string;
  /** Vertical axis label. @default "loss (nats/token)" */
  yLabel?: string;
  /** Width in pixels. @default 800 */
  width?: number;
  /** Height in pixels. @default 480 */
  height?: number;
}

/**
 * About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 × 10^k).
 *
 * @param lo smallest value
 * @param hi largest value
 * @param count ticks wanted
 * @returns the tick values, ascending
 * @example
 * ```ts
 * import { niceTicks } from "./plot.ts";
 * niceTicks(0, 1000, 5); // [0, 200, 400, 600, 800, 1000]
 * ```
 */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function label(v: number): string {
  return Math.abs(v) >= 1e4 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

/**
 * Draws line series on shared axes.
 *
 * @param series the curves (empty ones are skipped)
 * @param options title, axis labels and size
 * @returns a standalone SVG document
 * @example
 * ```ts
 * import { lossCurveSvg } from "./plot.ts";
 * const svg = lossCurveSvg([{ name: "train", color: "#1f77b4", points: [[1, 5], [2, 4], [3, 3.5]] }]);
 * svg.startsWith("<?xml"); // true
 * ```
 */
export function lossCurveSvg(series: readonly Series[], options: PlotOptions = {}): string {
  const W = options.width ?? 800;
  const H = options.height ?? 480;
  const m = { left: 70, right: 20, top: 40, bottom: 55 };
  const all = series.flatMap((s) => s.points).filter(([x, y]) => isFinite(x) && isFinite(y));
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = all.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  let [y0, y1] = all.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  if (x1 === x0) (x0 -= 1, x1 += 1);
  if (y1 === y0) (y0 -= 1, y1 += 1);
  const pad = 0.05 * (y1 - y0);
  (y0 -= pad, y1 += pad);
  const px = (x: number) => m.left + ((x - x0) / (x1 - x0)) * (W - m.left - m.right);
  const py = (y: number) => H - m.bottom - ((y - y0) / (y1 - y0)) * (H - m.top - m.bottom);
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
    `viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="16">${
      escapeXml(options.title ?? "Loss")
    }</text>`,
  ];
  // grid and tick labels
  for (const t of niceTicks(x0, x1, 8)) {
    out.push(
      `<line x1="${f(px(t))}" y1="${m.top}" x2="${f(px(t))}" y2="${
        H - m.bottom
      }" stroke="#e5e5e5"/>`,
      `<text x="${f(px(t))}" y="${H - m.bottom + 16}" text-anchor="middle">${label(t)}</text>`,
    );
  }
  for (const t of niceTicks(y0, y1, 6)) {
    out.push(
      `<line x1="${m.left}" y1="${f(py(t))}" x2="${W - m.right}" y2="${
        f(py(t))
      }" stroke="#e5e5e5"/>`,
      `<text x="${m.left - 6}" y="${f(py(t) + 4)}" text-anchor="end">${label(t)}</text>`,
    );
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${W - m.left - m.right}" ` +
      `height="${H - m.top - m.bottom}" fill="none" stroke="#333"/>`,
    `<text x="${(m.left + W - m.right) / 2}" y="${H - 12}" text-anchor="middle">${
      escapeXml(options.xLabel ?? "iteration")
    }</text>`,
    `<text transform="translate(18 ${(m.top + H - m.bottom) / 2}) rotate(-90)" ` +
      `text-anchor="middle">${escapeXml(options.yLabel ?? "loss (nats/token)")}</text>`,
  );
  // curves and legend
  const drawn = series.filter((s) => s.points.length > 0);
  drawn.forEach((s, i) => {
    const pts = s.points.filter(([x, y]) => isFinite(x) && isFinite(y));
    const d = pts.map(([x, y], j) => `${j ? "L" : "M"}${f(px(x))} ${f(py(y))}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    if (s.markers) {
      for (const [x, y] of pts) {
        out.push(`<circle cx="${f(px(x))}" cy="${f(py(y))}" r="3" fill="${s.color}"/>`);
      }
    }
    const ly = m.top + 16 + 18 * i;
    const lx = W - m.right - 280;
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 24}" y2="${ly - 4}" stroke="${s.color}" ` +
        `stroke-width="2"/>`,
      `<text x="${lx + 30}" y="${ly}">${escapeXml(s.name)}</text>`,
    );
  });
  out.push(`</svg>`, "");
  return out.join("\n");
}

/**
 * Writes `loss.svg` (and `loss.png` when `rsvg-convert` or ImageMagick's
 * `convert` is installed) from training and evaluation records.
 *
 * @param dir where to write (beside the checkpoints)
 * @param records the run's metrics
 * @returns the paths written
 */
export async function writeLossPlot(
  dir: string,
  records: readonly MetricsRecord[],
): Promise<{ svg: string; png?: string }> {
  const train: [number, number][] = [];
  const valid: [number, number][] = [];
  for (const r of records) pushResumed(r.kind === "train" ? train : valid, [r.iteration, r.loss]);
  const lastEval = records.findLast((r) => r.kind === "eval");
  const validName = lastEval?.kind === "eval" && Number.isFinite(lastEval.bitsPerByte)
    ? `validation loss (last: ${lastEval.bitsPerByte.toFixed(3)} bits/byte)`
    : "validation loss";
  const svgText = lossCurveSvg([
    { name: "train loss", color: "#1f77b4", points: train },
    { name: validName, color: "#d62728", points: valid, markers: true },
  ], { title: "Denotron training loss" });
  await Deno.mkdir(dir, { recursive: true });
  const svg = `${dir}/loss.svg`;
  await writeFileAtomic(svg, (f) => writeAll(f, new TextEncoder().encode(svgText)));
  const png = `${dir}/loss.png`;
  return (await renderPng(svg, png)) ? { svg, png } : { svg };
}

/**
 * Appends a point; a point at or before earlier ones (a run resumed from an
 * older checkpoint) replaces the points it overlaps.
 */
function pushResumed(points: [number, number][], p: [number, number]): void {
  while (points.length && points[points.length - 1][0] >= p[0]) points.pop();
  points.push(p);
}

/** Tries the renderers in turn; false when none is installed or all fail. */
async function renderPng(svg: string, png: string): Promise<boolean> {
  const renderers: [string, string[]][] = [
    ["rsvg-convert", ["-o", png, svg]],
    ["convert", [svg, png]],
  ];
  for (const [cmd, args] of renderers) {
    try {
      const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
      if (r.success) return true;
    } catch {
      // not installed: try the next one
    }
  }
  return false;
}
