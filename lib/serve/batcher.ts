/**
 * defines: SequenceRequest, TokenEvent, FinishReason, Sequence, ContinuousBatcher —
 * continuous batching over one KV cache: sequences join a running batch when a cache
 * row is free and leave it when they finish, between two decode steps.
 *
 * Each step (1) gives waiting sequences the free rows of the cache, (2) runs each
 * sequence that has several tokens to feed (its prompt, or its recent context after the
 * row filled up) through the model alone, and (3) runs every sequence that has one token
 * to feed, as one batch: one GEMM per layer for all of them, attention per row over the
 * cache (`forwardCachedRows`). A sequence draws its tokens exactly as `generate()` does —
 * the same context rule when the row is full, the same sampling, its own seeded stream —
 * so its tokens do not depend on which other sequences share the batch (up to the
 * rounding of a GEMM over more rows, see docs/serving.md).
 *
 * @module
 */
import { Rng } from "../data/gpt_dataset.ts";
import { DenotronError } from "../errors.ts";
import { forwardCachedRows, KVCache } from "../infer/kv_cache.ts";
import { type SampleOptions, sampleToken } from "../infer/sampling.ts";
import type { GPT } from "../nn/gpt.ts";
import { Tensor } from "../tensor.ts";

/** One sequence to continue. */
export interface SequenceRequest {
  /** Token ids, at least one; only the last blockSize are read. */
  prompt: readonly number[];
  /** Tokens to generate at most (0: none). */
  maxNewTokens: number;
  /** Temperature (0: greedy), top-k, top-p. */
  sampling: SampleOptions;
  /** Seeds this sequence's own sampling stream. @default 0 */
  seed?: number;
  /** Ids that end the sequence (returned as its last token). @default none */
  stopAt?: readonly number[];
  /**
   * Log-probabilities to report with each token: undefined for none, 0 for the drawn
   * token's, n > 0 for the drawn token's and the n most likely ones'. @default undefined
   */
  logprobs?: number;
}

/** One generated token. */
export interface TokenEvent {
  /** The token id (-1 for a text piece released at the end, in the server). */
  token: number;
  /** log p(token) under the model (softmax of the raw logits), when asked for. */
  logprob?: number;
  /** The most likely tokens and their log-probabilities, most likely first, when asked for. */
  top?: [number, number][];
}

/** Why a sequence ended: a stop token, its token budget, or a cancel. */
export type FinishReason = "stop" | "length" | "cancelled";

/**
 * A sequence in the batcher: an async iterator over its tokens, ending when it
 * finishes (or throwing when the model failed).
 */
export class Sequence implements AsyncIterable<TokenEvent> {
  /** Set once the sequence has ended. */
  finishReason: FinishReason | null = null;
  /** What was asked. */
  readonly request: SequenceRequest;
  /** Row of the cache while running. */
  slot: number = -1;
  /** Positions of the row filled so far. */
  length = 0;
  /** Tokens the model has not yet seen. */
  feed: number[] = [];
  /** Everything the model has seen, for refilling a full row. */
  context: number[];
  /** Tokens drawn so far. */
  generated = 0;
  /** The ids that end it. */
  readonly stop: Set<number>;
  readonly #rng: Rng;
  #events: TokenEvent[] = [];
  #error: unknown = null;
  #wake: (() => void) | null = null;
  #cancelled = false;

  /**
   * A sequence not yet running (the batcher makes them: see ContinuousBatcher.submit).
   *
   * @param request what to generate
   * @param blockSize the model's context: only the prompt's last blockSize tokens are kept
   */
  constructor(request: SequenceRequest, blockSize: number) {
    this.request = request;
    this.context = request.prompt.slice(-blockSize);
    this.#rng = new Rng(request.seed ?? 0);
    this.stop = new Set(request.stopAt ?? []);
  }

  /** Asks the batcher to drop the sequence at its next step (finish reason "cancelled"). */
  cancel(): void {
    this.#cancelled = true;
    this.#notify();
  }

  /** Whether cancel() was called. */
  get cancelled(): boolean {
    return this.#cancelled;
  }

  /**
   * @internal the batcher's side: draws the next token from the logits, (V), with this
   * sequence's sampling options and stream.
   */
  draw(row: Float32Array): number {
    return sampleToken(row, this.request.sampling, this.#rng);
  }

  /** @internal the batcher's side: a new token. */
  push(event: TokenEvent): void {
    this.#events.push(event);
    this.#notify();
  }

  /** @internal the batcher's side: the end. */
  finish(reason: FinishReason, error: unknown = null): void {
    if (this.finishReason) return;
    this.finishReason = reason;
    this.#error = error;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** The tokens as they are drawn; ends when the sequence does, throws if the model failed. */
  async *[Symbol.asyncIterator](): AsyncGenerator<TokenEvent> {
    for (;;) {
      while (this.#events.length > 0) yield this.#events.shift()!;
      if (this.#error) throw this.#error;
      if (this.finishReason) return;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }
}

/**
 * Continuous batching of generation requests over one model.
 *
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { ContinuousBatcher } from "./batcher.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * using batcher = new ContinuousBatcher(model, { maxBatch: 4 });
 * const a = batcher.submit({ prompt: [1, 2], maxNewTokens: 3, sampling: { temperature: 0 } });
 * const b = batcher.submit({ prompt: [5], maxNewTokens: 2, sampling: { temperature: 0.8 }, seed: 1 });
 * for await (const e of a) console.log(e.token);
 * for await (const e of b) console.log(e.token);
 * model.dispose();
 * ```
 */
export class ContinuousBatcher {
  /** The model (in eval mode). */
  readonly model: GPT;
  /** Rows of the cache: sequences decoded together at most. */
  readonly maxBatch: number;
  readonly #cache: KVCache;
  readonly #free: number[];
  readonly #waiting: Sequence[] = [];
  readonly #running: Sequence[] = [];
  #loop: Promise<void> | null = null;
  #disposed = false;
  /** Decode steps run, and sequences summed over them (mean batch = rows / steps). */
  readonly stats = { steps: 0, rows: 0 };

  /**
   * Allocates the KV cache.
   *
   * @param model the model (switched to eval mode)
   * @param opts maxBatch: rows of the KV cache @default 8
   */
  constructor(model: GPT, opts: { maxBatch?: number } = {}) {
    const maxBatch = opts.maxBatch ?? 8;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) {
      throw new DenotronError(
        `ContinuousBatcher: maxBatch must be an integer >= 1, got ${maxBatch}`,
      );
    }
    this.model = model.eval();
    this.maxBatch = maxBatch;
    this.#cache = new KVCache(model, maxBatch);
    // pop() hands out row 0 first
    this.#free = Array.from({ length: maxBatch }, (_, i) => maxBatch - 1 - i);
  }

  /** Sequences running now. */
  get running(): number {
    return this.#running.length;
  }

  /** Sequences waiting for a row. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Queues a sequence; it joins the running batch at the next step with a free row.
   *
   * @param request the prompt, budget, sampling and seed
   * @returns the sequence, to iterate over its tokens
   * @throws DenotronError for an empty prompt or a token outside the vocabulary
   */
  submit(request: SequenceRequest): Sequence {
    if (this.#disposed) throw new DenotronError("ContinuousBatcher: submit after dispose()");
    const V = this.model.config.vocabSize;
    const { prompt, maxNewTokens } = request;
    if (prompt.length === 0) throw new DenotronError("the prompt is empty");
    const bad = prompt.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (bad >= 0) {
      throw new DenotronError(
        `prompt token ${prompt[bad]} at index ${bad} is outside the vocabulary [0, ${V})`,
      );
    }
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
      throw new DenotronError(`maxNewTokens must be an integer >= 0, got ${maxNewTokens}`);
    }
    // The sampling options are checked now, so a bad one fails here, not in the loop.
    sampleToken([0], request.sampling, new Rng(0));
    const seq = new Sequence(request, this.model.config.blockSize);
    if (maxNewTokens === 0) {
      seq.finish("length");
      return seq;
    }
    this.#waiting.push(seq);
    this.#loop ??= this.#run().finally(() => this.#loop = null);
    return seq;
  }

  /** Resolves when no sequence is waiting or running. */
  async idle(): Promise<void> {
    while (this.#loop) await this.#loop;
  }

  /** Cancels every sequence, waiting or running. */
  cancelAll(): void {
    for (const s of [...this.#waiting, ...this.#running]) s.cancel();
  }

  /** Frees the cache (cancelling what is left). Safe to call twice. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.cancelAll();
    const release = () => this.#cache.dispose();
    if (this.#loop) this.#loop.finally(release);
    else release();
  }

  /** Frees the cache (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }

  async #run(): Promise<void> {
    while (this.#waiting.length > 0 || this.#running.length > 0) {
      try {
        this.#step();
      } catch (e) {
        // The model failed (a native error): end every running sequence with it; the
        // server answers 500 for those and keeps serving the rest.
        for (const s of this.#running.splice(0)) {
          this.#free.push(s.slot);
          s.finish("cancelled", e);
        }
      }
      // Let the HTTP side read requests and write tokens between two steps.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }

  /** One step: admit, drop the cancelled, prefill, then one batched decode. */
  #step(): void {
    for (const s of this.#waiting.filter((s) => s.cancelled)) this.#end(s, "cancelled");
    while (this.#waiting.length > 0 && this.#free.length > 0) {
      const s = this.#waiting.shift()!;
      s.slot = this.#free.pop()!;
      s.length = 0;
      s.feed = s.context.slice();
      this.#running.push(s);
    }
    for (const s of this.#running.filter((s) => s.cancelled)) this.#end(s, "cancelled");
    const { blockSize } = this.model.config;
    const maxT = this.#cache.maxT;
    for (const s of this.#running) {
      // generate()'s rule: a full row restarts from the most recent half of the context.
      if (s.feed.length > maxT - s.length) {
        s.length = 0;
        s.feed = s.context.slice(-Math.max(1, Math.floor(blockSize / 2)));
      }
    }
    // Both lists before any forward: a sequence just prefilled waits for the next step,
    // whose check above may have to refill its row first.
    const prefill = this.#running.filter((s) => s.feed.length > 1);
    const batch = this.#running.filter((s) => s.feed.length === 1);
    for (const s of prefill) this.#forward([s]);
    if (batch.length > 0) {
      this.#forward(batch);
      this.stats.steps++;
      this.stats.rows += batch.length;
    }
  }

  /** Feeds each sequence's pending tokens (all the same count) and draws its next token. */
  #forward(seqs: Sequence[]): void {
    const Tn = seqs[0].feed.length;
    const V = this.model.config.vocabSize;
    const ids = Int32Array.from(seqs.flatMap((s) => s.feed));
    using tokens = Tensor.fromArray(ids, [seqs.length, Tn], { device: this.model.device });
    using logits = forwardCachedRows(
      this.model,
      tokens,
      this.#cache,
      seqs.map((s) => s.slot),
      seqs.map((s) => s.length),
      { lastOnly: true },
    ); // (R,1,Vp)
    const all = logits.toArray() as Float32Array;
    const Vp = logits.shape[2];
    seqs.forEach((s, i) => {
      s.length += Tn;
      // a padded vocabulary's extra columns are no token's
      const row = all.subarray(i * Vp, i * Vp + V);
      const token = s.draw(row);
      s.push(tokenEvent(row, token, s.request.logprobs));
      s.generated++;
      if (s.stop.has(token)) this.#end(s, "stop");
      else if (s.generated >= s.request.maxNewTokens) this.#end(s, "length");
      else {
        s.context.push(token);
        s.feed = [token];
      }
    });
  }

  #end(s: Sequence, reason: FinishReason): void {
    const queue = s.slot >= 0 ? this.#running : this.#waiting;
    const at = queue.indexOf(s);
    if (at >= 0) queue.splice(at, 1);
    if (s.slot >= 0) this.#free.push(s.slot);
    s.slot = -1;
    s.finish(reason);
  }
}

/** The event for `token` drawn from `row`, with log-probabilities when asked for. */
function tokenEvent(row: Float32Array, token: number, logprobs: number | undefined): TokenEvent {
  if (logprobs === undefined) return { token };
  let mx = -Infinity;
  for (let i = 0; i < row.length; i++) mx = Math.max(mx, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - mx);
  const lse = mx + Math.log(sum);
  const event: TokenEvent = { token, logprob: row[token] - lse };
  if (logprobs > 0) {
    // n is small (a handful): one pass keeping the n largest, ties to the lower id.
    const top: number[] = [];
    for (let i = 0; i < row.length; i++) {
      if (top.length === logprobs && row[i] <= row[top[top.length - 1]]) continue;
      let j = top.length;
      while (j > 0 && row[top[j - 1]] < row[i]) j--;
      top.splice(j, 0, i);
      if (top.length > logprobs) top.pop();
    }
    event.top = top.map((i) => [i, row[i] - lse]);
  }
  return event;
}
