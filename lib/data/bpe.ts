/**
 * The byte-pair merge loop shared by every BPE tokenizer here (GPT-2's and
 * Hugging Face `tokenizer.json` ones).
 *
 * defines: BpeMerges
 *
 * A word arrives as a list of symbol ids (bytes, characters or byte-fallback
 * tokens); the adjacent pair with the lowest merge rank is merged, ties going
 * to the leftmost pair, until no pair of the table is left. This is the rule
 * of GPT-2's `bpe()` and of the `tokenizers` crate's `Word::merge_all`. A heap
 * keyed by (rank, position) over a linked list of symbols keeps it
 * O(n log n), which matters where a "word" is a whole document
 * (SentencePiece-style tokenizers have no pre-tokenizer).
 *
 * @module
 */

/** Positions fit below 2^32; keys are rank * 2^32 + position, exact in a double. */
const POS = 2 ** 32;

/**
 * A merge table: (left id, right id) -> (rank, merged id).
 *
 * @example
 * ```ts
 * import { BpeMerges } from "./bpe.ts";
 * const m = new BpeMerges(4); // ids 0 "a", 1 "b", 2 "ab", 3 "abb"
 * m.set(0, 1, 2, 0);
 * m.set(2, 1, 3, 1);
 * m.apply([0, 1, 1, 0]); // [3, 0]
 * ```
 */
export class BpeMerges {
  /** (left * idSpace + right) -> rank * idSpace + merged. */
  readonly #table = new Map<number, number>();
  readonly #idSpace: number;

  /** @param idSpace one more than the largest id a symbol or merge may have */
  constructor(idSpace: number) {
    this.#idSpace = idSpace;
  }

  /** Number of pairs in the table. */
  get size(): number {
    return this.#table.size;
  }

  /**
   * Whether the pair has a merge.
   *
   * @param left left symbol id
   * @param right right symbol id
   * @returns true when {@link set} was called for the pair
   */
  has(left: number, right: number): boolean {
    return this.#table.has(left * this.#idSpace + right);
  }

  /**
   * Sets (or replaces) the merge of a pair.
   *
   * @param left left symbol id
   * @param right right symbol id
   * @param merged the id the pair becomes
   * @param rank priority, lower first (the line of `merges.txt`)
   */
  set(left: number, right: number, merged: number, rank: number): void {
    this.#table.set(left * this.#idSpace + right, rank * this.#idSpace + merged);
  }

  /**
   * The merge table's pairs, lowest rank first.
   *
   * @returns `[left, right, merged]` triples
   */
  pairs(): [number, number, number][] {
    const V = this.#idSpace;
    return [...this.#table.entries()]
      .sort((x, y) => x[1] - y[1])
      .map(([key, value]) => {
        const left = Math.floor(key / V);
        return [left, key - left * V, value % V];
      });
  }

  /**
   * Merges a word.
   *
   * @param ids the word's symbol ids, left to right
   * @returns the ids after every applicable merge (a new array)
   */
  apply(ids: ArrayLike<number>): number[] {
    const n = ids.length;
    if (n < 2) return Array.from(ids);
    const V = this.#idSpace;
    const table = this.#table;
    // sym[i] is the symbol starting at i, or -1 once merged into its left neighbour.
    const sym = Int32Array.from(ids); // (n)
    const next = new Int32Array(n); // (n) next live position, -1 at the end
    const prev = new Int32Array(n); // (n) previous live position, -1 at the start
    const heap: number[] = [];
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
      if (i + 1 < n) {
        const v = table.get(sym[i] * V + sym[i + 1]);
        if (v !== undefined) heap.push(Math.floor(v / V) * POS + i);
      }
    }
    heapify(heap);
    while (heap.length > 0) {
      const key = heapPop(heap);
      const pos = key % POS;
      const rank = (key - pos) / POS;
      const right = next[pos];
      // An entry goes stale when either symbol of its pair has changed since.
      if (sym[pos] < 0 || right < 0) continue;
      const v = table.get(sym[pos] * V + sym[right]);
      if (v === undefined || Math.floor(v / V) !== rank) continue;
      sym[pos] = v % V;
      sym[right] = -1;
      const after = next[right];
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos];
      if (before >= 0) {
        const w = table.get(sym[before] * V + sym[pos]);
        if (w !== undefined) heapPush(heap, Math.floor(w / V) * POS + before);
      }
      if (after >= 0) {
        const w = table.get(sym[pos] * V + sym[after]);
        if (w !== undefined) heapPush(heap, Math.floor(w / V) * POS + pos);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }
}

// A binary min-heap of numbers in a plain array.

function heapify(h: number[]): void {
  for (let i = (h.length >> 1) - 1; i >= 0; i--) siftDown(h, i);
}

function heapPush(h: number[], x: number): void {
  let i = h.length;
  h.push(x);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (h[parent] <= x) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = x;
}

function heapPop(h: number[]): number {
  const top = h[0];
  const last = h.pop()!;
  if (h.length > 0) {
    h[0] = last;
    siftDown(h, 0);
  }
  return top;
}

function siftDown(h: number[], i: number): void {
  const n = h.length;
  const x = h[i];
  for (;;) {
    let child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && h[child + 1] < h[child]) child++;
    if (h[child] >= x) break;
    h[i] = h[child];
    i = child;
  }
  h[i] = x;
}
