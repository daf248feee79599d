/**
 * Looking inside a GPT: attention patterns, activation statistics and gradient
 * norms per layer, with SVG views of each.
 *
 * defines: attentionMaps, activationStats, gradNormsByLayer, heatmap, LayerStats
 *
 * The fused attention kernel never stores the T×T probabilities (it keeps only
 * each row's log-sum-exp), so attentionMaps() recomputes them on the host from
 * the qkv projection of each block: fine for the short prompts one looks at.
 *
 * @module
 */

import { noGrad } from "../autograd.ts";
import type { GPT } from "../nn/gpt.ts";
import { Tensor, tidy } from "../tensor.ts";
import { type Displayable, escapeHtml, rich } from "./display.ts";

/** Runs `visit` on the residual stream after the embedding (layer -1) and each block. */
function walkResidual(
  model: GPT,
  tokens: readonly number[],
  visit: (layer: number, x: Tensor) => void,
): void {
  if (tokens.length < 1 || tokens.length > model.config.blockSize) {
    throw new Error(
      `need 1 to blockSize ${model.config.blockSize} tokens, got ${tokens.length}`,
    );
  }
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() =>
      tidy(() => {
        const ids = Tensor.fromArray(Int32Array.from(tokens), [1, tokens.length], {
          device: model.device,
        });
        let x = model.emb.forward(ids); // (1,T,C)
        visit(-1, x);
        model.blocks.forEach((block, i) => {
          x = block.forward(x, model.rng);
          visit(i, x);
        });
      })
    );
  } finally {
    model.train(wasTraining);
  }
}

/**
 * The attention probabilities of every head of every layer for one prompt.
 *
 * @param model the model (run in eval mode: no dropout)
 * @param tokens the prompt's token ids, at most `blockSize` of them
 * @returns `maps[layer][head]`, each a T×T row-major Float32Array whose row i
 *   (the query position) sums to 1 over columns 0..i
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { attentionMaps } from "./inspect.ts";
 * using model = new GPT(GPT_PRESETS.tiny);
 * const maps = attentionMaps(model, [72, 105, 33]);
 * maps.length === GPT_PRESETS.tiny.nLayer; // true
 * maps[0][0][0]; // 1: the first position can only look at itself
 * ```
 */
export function attentionMaps(model: GPT, tokens: readonly number[]): Float32Array[][] {
  const T = tokens.length;
  const C = model.config.nEmbd;
  const nHead = model.config.nHead;
  const hs = C / nHead;
  const out: Float32Array[][] = [];
  walkResidual(model, tokens, (layer, x) => {
    const block = model.blocks[layer + 1];
    if (!block) return;
    // (1,T,3C): q, k, v side by side, each (T,nHead,hs)
    const qkv = block.attn.qkv.forward(block.ln1.forward(x)).toArray();
    const heads: Float32Array[] = [];
    for (let h = 0; h < nHead; h++) {
      const p = new Float32Array(T * T);
      for (let i = 0; i < T; i++) {
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let d = 0; d < hs; d++) {
            s += qkv[i * 3 * C + h * hs + d] * qkv[j * 3 * C + C + h * hs + d];
          }
          s /= Math.sqrt(hs);
          p[i * T + j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += p[i * T + j] = Math.exp(p[i * T + j] - max);
        for (let j = 0; j <= i; j++) p[i * T + j] /= sum;
      }
      heads.push(p);
    }
    out.push(heads);
  });
  return out;
}

/** Statistics of the residual stream at one depth. */
export interface LayerStats {
  /** -1 for the embedding output, else the block index. */
  layer: number;
  /** Mean over every element. */
  mean: number;
  /** Standard deviation over every element. */
  std: number;
  /** Largest absolute value. */
  maxAbs: number;
}

/**
 * Mean, standard deviation and largest magnitude of the residual stream after
 * the embedding and after each block, for one prompt.
 *
 * @param model the model (run in eval mode)
 * @param tokens the prompt's token ids, at most `blockSize` of them
 * @returns one entry per depth, embedding first
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { activationStats } from "./inspect.ts";
 * using model = new GPT(GPT_PRESETS.tiny);
 * activationStats(model, [1, 2, 3]).map((s) => s.layer); // [-1, 0, 1]
 * ```
 */
export function activationStats(model: GPT, tokens: readonly number[]): LayerStats[] {
  const out: LayerStats[] = [];
  walkResidual(model, tokens, (layer, x) => {
    const v = x.toArray();
    let sum = 0, sq = 0, maxAbs = 0;
    for (const a of v) {
      sum += a;
      sq += a * a;
      if (Math.abs(a) > maxAbs) maxAbs = Math.abs(a);
    }
    const mean = sum / v.length;
    out.push({ layer, mean, std: Math.sqrt(Math.max(0, sq / v.length - mean * mean)), maxAbs });
  });
  return out;
}

/**
 * The L2 norm of the accumulated gradient of each part of the model: the
 * embedding, each block (`h.0`, `h.1`, …) and the final layernorm. Call it
 * after `backward()` and before the optimizer zeroes the gradients.
 *
 * @param model a model whose parameters hold gradients
 * @returns `[part, norm]` pairs in declaration order
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { Tensor } from "../tensor.ts";
 * import { gradNormsByLayer } from "./inspect.ts";
 * using model = new GPT(GPT_PRESETS.tiny);
 * const x = Tensor.fromArray(new Int32Array(8).fill(1), [1, 8]);
 * model.loss(x, x).backward();
 * gradNormsByLayer(model).map(([name]) => name); // ["emb", "h.0", "h.1", "lnf"]
 * ```
 */
export function gradNormsByLayer(model: GPT): [string, number][] {
  const sums = new Map<string, number>();
  for (const [name, p] of model.namedParameters()) {
    const part = name.match(/^h\.\d+/)?.[0] ?? name.split(".")[0];
    let sq = sums.get(part) ?? 0;
    if (p.grad) { for (const g of p.grad.toArray()) sq += g * g; }
    sums.set(part, sq);
  }
  return [...sums].map(([part, sq]) => [part, Math.sqrt(sq)]);
}

/**
 * A matrix as an SVG heat map (white 0 to dark blue at the maximum), with
 * optional row and column labels (such as a prompt's characters).
 *
 * @param values row-major values, `rows × cols`
 * @param rows number of rows
 * @param cols number of columns
 * @param options `title`; `labels` for both axes; `cell` size in pixels @default 18
 * @returns a displayable SVG; its text form gives the shape and the maximum
 * @example
 * ```ts
 * import { heatmap } from "./inspect.ts";
 * String(heatmap(new Float32Array([1, 0, 0.5, 0.5]), 2, 2, { title: "head 0" }));
 * // "head 0: 2×2, max 1"
 * ```
 */
export function heatmap(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  options: { title?: string; labels?: readonly string[]; cell?: number } = {},
): Displayable & { toString(): string } {
  const cell = options.cell ?? 18;
  const labels = options.labels;
  const left = labels ? 28 : 4, top = options.title ? 22 : 4;
  const W = left + cols * cell + 4, H = top + rows * cell + (labels ? 20 : 4);
  let max = 0;
  for (let i = 0; i < rows * cols; i++) max = Math.max(max, values[i]);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
    `viewBox="0 0 ${W} ${H}" font-family="monospace" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  ];
  if (options.title) {
    parts.push(
      `<text x="${left}" y="15" font-family="sans-serif" font-size="13">${
        escapeHtml(options.title)
      }</text>`,
    );
  }
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const a = max > 0 ? values[r * cols + c] / max : 0;
      // from white to #08306b as a rises
      const ch = (hi: number, lo: number) => Math.round(hi + (lo - hi) * a);
      parts.push(
        `<rect x="${left + c * cell}" y="${top + r * cell}" width="${cell}" height="${cell}" ` +
          `fill="rgb(${ch(255, 8)},${ch(255, 48)},${ch(255, 107)})"/>`,
      );
    }
  }
  if (labels) {
    labels.slice(0, rows).forEach((l, r) =>
      parts.push(
        `<text x="${left - 4}" y="${top + r * cell + cell * 0.7}" text-anchor="end">${
          escapeHtml(l)
        }</text>`,
      )
    );
    labels.slice(0, cols).forEach((l, c) =>
      parts.push(
        `<text x="${left + c * cell + cell / 2}" y="${
          top + rows * cell + 14
        }" text-anchor="middle">${escapeHtml(l)}</text>`,
      )
    );
  }
  parts.push("</svg>");
  return rich({
    "text/plain": `${options.title ? options.title + ": " : ""}${rows}×${cols}, max ${
      Number(max.toPrecision(4))
    }`,
    "image/svg+xml": parts.join("\n"),
  });
}
