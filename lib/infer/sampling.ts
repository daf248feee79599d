/**
 * defines: SampleOptions, uniform, filterDistribution, argmax, sampleToken — turning a row of
 * logits into the next token: temperature, top-k, top-p (nucleus), and a seeded
 * random stream in TypeScript so a seed names one output on every machine.
 *
 * @module
 */
import type { Rng } from "../data/gpt_dataset.ts";
import { DenotronError } from "../errors.ts";

/** How the next token is drawn from the logits. */
export interface SampleOptions {
  /** Divides the logits; 0 picks the most likely token (greedy). @default 1 */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 keeps all. @default 0 */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all. @default 1 */
  topP?: number;
}

/**
 * A uniform number in [0, 1) with 53 random bits, from the project's seeded
 * generator (the same one that shuffles the dataset), so a seed names one output on
 * every machine.
 *
 * @param rng the stream
 * @returns the number
 * @example
 * ```ts
 * import { Rng } from "../data/gpt_dataset.ts";
 * import { uniform } from "./sampling.ts";
 * console.log(uniform(new Rng(7)) === uniform(new Rng(7))); // true
 * ```
 */
export function uniform(rng: Rng): number {
  const hi = rng.nextU32() >>> 5, lo = rng.nextU32() >>> 6; // 27 + 26 bits
  return (hi * 67108864 + lo) / 9007199254740992;
}

function checkOptions(o: SampleOptions): Required<SampleOptions> {
  const temperature = o.temperature ?? 1, topK = o.topK ?? 0, topP = o.topP ?? 1;
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new DenotronError(`temperature must be a number >= 0, got ${temperature}`);
  }
  if (!(Number.isInteger(topK) && topK >= 0)) {
    throw new DenotronError(`topK must be an integer >= 0 (0 keeps every token), got ${topK}`);
  }
  if (!(topP > 0 && topP <= 1)) {
    throw new DenotronError(`topP must be in (0, 1] (1 keeps every token), got ${topP}`);
  }
  return { temperature, topK, topP };
}

/**
 * The distribution that sampling draws from: softmax(logits / temperature), cut to
 * the top-k tokens, then to the nucleus of probability topP, then renormalised.
 * Ties are broken towards the lower id, so the result is deterministic.
 *
 * @param logits (V) one row of logits
 * @param opts temperature (> 0 here), topK, topP
 * @returns (V) probabilities summing to 1, zero outside the kept set
 * @example
 * ```ts
 * import { filterDistribution } from "./sampling.ts";
 * const p = filterDistribution(new Float32Array([Math.log(0.5), Math.log(0.3), Math.log(0.2)]), {
 *   topP: 0.7,
 * });
 * console.log(Array.from(p, (x) => x.toFixed(3))); // ["0.625", "0.375", "0.000"]
 * ```
 */
export function filterDistribution(
  logits: ArrayLike<number>,
  opts: SampleOptions = {},
): Float64Array {
  const { temperature, topK, topP } = checkOptions(opts);
  const V = logits.length;
  if (V === 0) throw new DenotronError("filterDistribution: empty logits");
  const t = temperature > 0 ? temperature : 1;
  let mx = -Infinity;
  for (let i = 0; i < V; i++) mx = Math.max(mx, logits[i] / t);
  const p = new Float64Array(V);
  let sum = 0;
  for (let i = 0; i < V; i++) sum += p[i] = Math.exp(logits[i] / t - mx);
  for (let i = 0; i < V; i++) p[i] /= sum;
  if ((topK === 0 || topK >= V) && topP >= 1) return p;
  // Decide how many tokens survive from the largest values alone, then rank only the
  // ids at or above the cut: sampling from a 50k vocabulary stays cheap.
  let keep = topK > 0 ? Math.min(topK, V) : V;
  const sorted = largest(p, keep);
  if (topP < 1) {
    let mass = 0;
    for (let r = 0; r < keep; r++) mass += sorted[r];
    let acc = 0;
    for (let r = 0; r < keep; r++) {
      acc += sorted[r];
      // Measured within the top-k set, so the two filters compose as in Hugging Face's
      // sampling (top-k first, then top-p on the renormalised rest).
      if (acc >= topP * mass) {
        keep = r + 1;
        break;
      }
    }
  }
  const cut = sorted[keep - 1];
  const order: number[] = [];
  for (let i = 0; i < V; i++) if (p[i] >= cut) order.push(i);
  order.sort((a, b) => p[b] - p[a] || a - b); // ties at the cut: lower ids first
  const out = new Float64Array(V);
  let kept = 0;
  for (let r = 0; r < keep; r++) kept += p[order[r]];
  for (let r = 0; r < keep; r++) out[order[r]] = p[order[r]] / kept;
  return out;
}

/** The k largest values of p, in descending order. */
function largest(p: Float64Array, k: number): Float64Array {
  if (4 * k >= p.length) return Float64Array.from(p).sort().reverse().subarray(0, k);
  // A min-heap of the k largest seen so far: O(V log k).
  const heap = new Float64Array(k);
  let n = 0;
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < n && heap[l] < heap[m]) m = l;
      if (r < n && heap[r] < heap[m]) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (let i = 0; i < p.length; i++) {
    const x = p[i];
    if (n < k) {
      let j = n++;
      heap[j] = x;
      while (j > 0 && heap[(j - 1) >> 1] > heap[j]) {
        const up = (j - 1) >> 1;
        [heap[j], heap[up]] = [heap[up], heap[j]];
        j = up;
      }
    } else if (x > heap[0]) {
      heap[0] = x;
      siftDown(0);
    }
  }
  return heap.sort().reverse();
}

/** The index of the largest value; the lowest index among ties. */
export function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/**
 * Draws the next token from one row of logits.
 *
 * @param logits (V)
 * @param opts temperature (0: greedy), topK, topP
 * @param rng the random stream; one number is drawn unless greedy
 * @returns a token id in [0, V)
 */
export function sampleToken(logits: ArrayLike<number>, opts: SampleOptions, rng: Rng): number {
  const o = checkOptions(opts);
  if (o.temperature === 0 || o.topK === 1) return argmax(logits);
  const p = filterDistribution(logits, o);
  const u = uniform(rng);
  let acc = 0, last = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) continue;
    last = i;
    acc += p[i];
    if (u < acc) return i;
  }
  return last; // rounding left acc a hair below 1
}
