/**
 * defines: SparseRows, LogisticModel, LogisticOptions, LogisticFit, logisticObjective,
 *          fitLogistic, predictProbabilities — L2-regularised binary logistic regression
 *          over sparse features, in float64, fitted by L-BFGS.
 *
 * The objective is the mean log loss plus `l2 / 2` times the squared weights (the bias
 * is not penalised):
 *
 *   f(w, b) = (1/n) Σ_i [log(1 + e^{z_i}) - y_i z_i] + (l2/2) |w|²,   z_i = w·x_i + b
 *
 * which is strictly convex for l2 > 0, so L-BFGS with a backtracking (Armijo) line
 * search reaches the one minimum; each step's curvature pair is kept only when s·y > 0.
 * Every operation runs in a fixed order, so a fit is the same on every run.
 *
 * @module
 */

import { DenotronError } from "../errors.ts";

/** Rows of sparse features (CSR): row r holds `ids[offsets[r]]` to `ids[offsets[r + 1] - 1]`. */
export interface SparseRows {
  /** Number of rows (n). */
  readonly rows: number;
  /** Number of features (F); every id is in [0, F). */
  readonly features: number;
  /** Where each row starts in `ids`. (n + 1) */
  readonly offsets: Int32Array;
  /** Feature ids. (nnz) */
  readonly ids: Int32Array;
  /** The value of each stored feature; absent: all 1 (binary features). (nnz) */
  readonly values?: Float64Array;
}

/** Weights and bias. */
export interface LogisticModel {
  /** One weight per feature. (F) */
  readonly weights: Float64Array;
  /** The intercept. */
  readonly bias: number;
}

/** Options for {@link fitLogistic}. */
export interface LogisticOptions {
  /** The L2 penalty on the weights. @default 1e-4 */
  l2?: number;
  /** Stop when every gradient component is this small. @default 1e-6 */
  tolerance?: number;
  /** Most L-BFGS iterations. @default 1000 */
  maxIterations?: number;
  /** Curvature pairs kept. @default 10 */
  memory?: number;
}

/** A fitted model and how the fit went. */
export interface LogisticFit extends LogisticModel {
  /** The objective at the end. */
  readonly loss: number;
  /** Largest gradient component at the end. */
  readonly gradientMax: number;
  /** L-BFGS iterations run. */
  readonly iterations: number;
  /** Whether the gradient fell below the tolerance. */
  readonly converged: boolean;
}

/** log(1 + e^z) without overflow. */
function softplus(z: number): number {
  return z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
}

/**
 * The objective, and optionally its gradient.
 *
 * @param x the rows
 * @param y the label of each row, 0 or 1 (n)
 * @param theta the weights, then the bias (F + 1)
 * @param l2 the penalty
 * @param grad where to write the gradient (F + 1); skipped when absent
 * @returns the objective f
 * @example
 * ```ts
 * import { logisticObjective } from "./logistic.ts";
 * const x = { rows: 1, features: 1, offsets: Int32Array.from([0, 1]), ids: Int32Array.from([0]) };
 * logisticObjective(x, [1], new Float64Array(2), 0); // Math.log(2)
 * ```
 */
export function logisticObjective(
  x: SparseRows,
  y: ArrayLike<number>,
  theta: Float64Array,
  l2: number,
  grad?: Float64Array,
): number {
  const F = x.features;
  const n = x.rows;
  let loss = 0;
  grad?.fill(0);
  for (let r = 0; r < n; r++) {
    let z = theta[F];
    for (let k = x.offsets[r]; k < x.offsets[r + 1]; k++) {
      z += theta[x.ids[k]] * (x.values?.[k] ?? 1);
    }
    loss += softplus(z) - y[r] * z;
    if (!grad) continue;
    const residual = 1 / (1 + Math.exp(-z)) - y[r]; // d loss / d z
    for (let k = x.offsets[r]; k < x.offsets[r + 1]; k++) {
      grad[x.ids[k]] += residual * (x.values?.[k] ?? 1);
    }
    grad[F] += residual;
  }
  let squares = 0;
  for (let j = 0; j < F; j++) squares += theta[j] * theta[j];
  if (grad) {
    for (let j = 0; j < F; j++) grad[j] = grad[j] / n + l2 * theta[j];
    grad[F] /= n;
  }
  return loss / n + 0.5 * l2 * squares;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function maxAbs(a: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/**
 * Fits the model by L-BFGS from zero weights.
 *
 * @param x the rows
 * @param y the label of each row, 0 or 1 (n)
 * @param options penalty, tolerance, iteration limit and memory
 * @returns the weights, the bias and how the fit went
 * @example
 * ```ts
 * import { fitLogistic } from "./logistic.ts";
 * const x = { rows: 2, features: 2, offsets: Int32Array.from([0, 1, 2]), ids: Int32Array.from([0, 1]) };
 * const fit = fitLogistic(x, [1, 0], { l2: 0.1 });
 * fit.weights[0] > 0 && fit.weights[1] < 0 && fit.converged; // true
 * ```
 */
export function fitLogistic(
  x: SparseRows,
  y: ArrayLike<number>,
  options: LogisticOptions = {},
): LogisticFit {
  const l2 = options.l2 ?? 1e-4;
  const tolerance = options.tolerance ?? 1e-6;
  const maxIterations = options.maxIterations ?? 1000;
  const memory = options.memory ?? 10;
  if (y.length !== x.rows) {
    throw new DenotronError(`fitLogistic: ${y.length} labels for ${x.rows} rows`);
  }
  if (!(l2 >= 0)) throw new DenotronError(`fitLogistic: l2 ${l2} must be at least 0`);
  const N = x.features + 1;
  let theta = new Float64Array(N);
  let grad = new Float64Array(N);
  let loss = logisticObjective(x, y, theta, l2, grad);
  const pairs: { s: Float64Array; y: Float64Array; rho: number }[] = [];
  let iterations = 0;
  while (maxAbs(grad) > tolerance && iterations < maxIterations) {
    iterations++;
    const d = direction(grad, pairs);
    let slope = dot(grad, d);
    if (!(slope < 0)) {
      // not a descent direction (rounding): forget the curvature and go downhill
      pairs.length = 0;
      d.set(grad.map((g) => -g / Math.max(1, maxAbs(grad))));
      slope = dot(grad, d);
    }
    // Armijo backtracking from the full step.
    const next = new Float64Array(N);
    const nextGrad = new Float64Array(N);
    let step = 1;
    let nextLoss = Infinity;
    for (let tries = 0; tries < 60; tries++, step /= 2) {
      for (let i = 0; i < N; i++) next[i] = theta[i] + step * d[i];
      nextLoss = logisticObjective(x, y, next, l2, nextGrad);
      if (nextLoss <= loss + 1e-4 * step * slope) break;
    }
    if (!(nextLoss < loss)) break; // no decrease left at machine precision
    const s = next.map((v, i) => v - theta[i]);
    const change = nextGrad.map((g, i) => g - grad[i]);
    const sy = dot(s, change);
    if (sy > 0) {
      pairs.push({ s, y: change, rho: 1 / sy });
      if (pairs.length > memory) pairs.shift();
    }
    [theta, grad, loss] = [next, nextGrad, nextLoss];
  }
  const gradientMax = maxAbs(grad);
  return {
    weights: theta.slice(0, N - 1),
    bias: theta[N - 1],
    loss,
    gradientMax,
    iterations,
    converged: gradientMax <= tolerance,
  };
}

/** The L-BFGS two-loop recursion: -H g, H the inverse-Hessian estimate of the pairs. */
function direction(
  grad: Float64Array,
  pairs: readonly { s: Float64Array; y: Float64Array; rho: number }[],
): Float64Array {
  const q = grad.map((g) => -g);
  if (pairs.length === 0) {
    // the first step: unit length at most, so the line search starts sensibly
    const scale = 1 / Math.max(1, Math.sqrt(dot(grad, grad)));
    return q.map((v) => v * scale);
  }
  const alpha = new Float64Array(pairs.length);
  for (let k = pairs.length - 1; k >= 0; k--) {
    alpha[k] = pairs[k].rho * dot(pairs[k].s, q);
    const yk = pairs[k].y;
    for (let i = 0; i < q.length; i++) q[i] -= alpha[k] * yk[i];
  }
  const last = pairs[pairs.length - 1];
  const gamma = 1 / (last.rho * dot(last.y, last.y)); // s·y / y·y
  for (let i = 0; i < q.length; i++) q[i] *= gamma;
  for (let k = 0; k < pairs.length; k++) {
    const beta = pairs[k].rho * dot(pairs[k].y, q);
    const sk = pairs[k].s;
    for (let i = 0; i < q.length; i++) q[i] += (alpha[k] - beta) * sk[i];
  }
  return q;
}

/**
 * P(y = 1) for each row.
 *
 * @param model the weights and bias
 * @param x the rows (features as in the fit)
 * @returns one probability per row (n)
 */
export function predictProbabilities(model: LogisticModel, x: SparseRows): Float64Array {
  const out = new Float64Array(x.rows);
  for (let r = 0; r < x.rows; r++) {
    let z = model.bias;
    for (let k = x.offsets[r]; k < x.offsets[r + 1]; k++) {
      z += model.weights[x.ids[k]] * (x.values?.[k] ?? 1);
    }
    out[r] = 1 / (1 + Math.exp(-z));
  }
  return out;
}
