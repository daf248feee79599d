/**
 * The fuzzer's random numbers: one small generator per input, seeded from
 * (run seed, reader, input number), so any input is rebuilt alone and every rerun
 * with the same seed makes the same inputs.
 *
 * defines: Rng, inputSeed
 *
 * @module
 */

/** FNV-1a over the text, 32 bits: a stable hash for seeds. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * The seed of one input.
 *
 * @param seed the run's seed
 * @param reader the reader's name
 * @param index the input's number
 * @returns a 32-bit seed
 */
export function inputSeed(seed: number, reader: string, index: number): number {
  return fnv1a(`${seed}/${reader}/${index}`);
}

/** mulberry32: fast, 32-bit state, good enough to pick mutations. */
export class Rng {
  #s: number;

  /** @param seed any 32-bit integer */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }

  /** @returns a number in [0, 1) */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /**
   * @param n the bound
   * @returns an integer in [0, n)
   */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /**
   * @param p the probability
   * @returns true with probability p
   */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /**
   * @param items a non-empty list
   * @returns one of them
   */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /**
   * @param n how many
   * @returns n random bytes
   */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}
