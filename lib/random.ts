/**
 * A counter-based random stream: (seed, offset) names every random number, so a
 * dropout mask is the same for the same seed whatever the thread count or device,
 * and a checkpoint saves the stream as two numbers.
 *
 * @module
 */

/** Serialisable state of a {@linkcode Generator}. */
export interface GeneratorState {
  /** The stream's seed. */
  seed: number;
  /** Random numbers drawn so far. */
  offset: number;
}

/**
 * Hands out disjoint ranges of counters under one seed.
 *
 * @example
 * ```ts
 * import { Generator } from "./random.ts";
 * const g = new Generator(1234);
 * const a = g.take(100); // counters [0, 100)
 * const b = g.take(100); // counters [100, 200)
 * console.log(a.offset, b.offset); // 0 100
 * ```
 */
export class Generator {
  /** The stream's seed. */
  seed: number;
  /** Random numbers drawn so far (the counter of the next draw). */
  offset = 0;
  /** A stream starting at offset 0. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new RangeError(`Generator: seed must be a non-negative safe integer, got ${seed}`);
    }
    this.seed = seed;
  }
  /** Reserves `n` counters and returns where they start. */
  take(n: number): GeneratorState {
    const out = { seed: this.seed, offset: this.offset };
    this.offset += n;
    return out;
  }
  /** Saves the stream. */
  state(): GeneratorState {
    return { seed: this.seed, offset: this.offset };
  }
  /** Restores a saved stream. */
  setState(s: GeneratorState): void {
    this.seed = s.seed;
    this.offset = s.offset;
  }
}

/** A stable 52-bit hash of a string (FNV-1a folded), used to seed per-parameter streams. */
export function hashString(s: string): number {
  let h = 0xcbf29ce484222325n;
  for (const c of new TextEncoder().encode(s)) {
    h ^= BigInt(c);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return Number(h & 0xfffffffffffffn);
}
