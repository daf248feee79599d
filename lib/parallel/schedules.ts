/**
 * defines: PipelineAction, noPipelining, oneFOneB, interleavedOneFOneB, virtualStage,
 *          CommOp, planCommunication
 *
 * Pipeline schedules as pure generators: for one stage they yield, in order, the forward
 * and backward passes it runs — each a (kind, micro-batch, model chunk) tagged with the
 * phase it belongs to. No I/O: the executor (pipeline.ts) turns them into work and
 * messages, and the tests compare them with tables worked out by hand.
 *
 * Virtual stages: with v model chunks per rank and p ranks, chunk c of pipeline rank r is
 * virtual stage c·p + r, so the model's layers go round the ranks v times.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";

/** One pass of one micro-batch through one model chunk of this stage. */
export interface PipelineAction {
  /** Which pass. */
  kind: "forward" | "backward";
  /** The micro-batch's index in the step. */
  microBatch: number;
  /** The model chunk (0 without interleaving). */
  chunk: number;
  /** The schedule's part: forwards only, alternating, or backwards only. */
  phase: "warmup" | "steady" | "cooldown";
}

function checkCounts(p: number, m: number): void {
  if (!Number.isInteger(p) || p < 1 || !Number.isInteger(m) || m < 1) {
    throw new DenotronError(
      `pipeline schedule: stages ${p} and micro-batches ${m} must be positive integers`,
    );
  }
}

/**
 * No pipelining (one stage): forward then backward of each micro-batch in turn, so only
 * one micro-batch's activations are alive at a time.
 */
export function* noPipelining(m: number): Generator<PipelineAction> {
  checkCounts(1, m);
  for (let i = 0; i < m; i++) {
    yield { kind: "forward", microBatch: i, chunk: 0, phase: "steady" };
    yield { kind: "backward", microBatch: i, chunk: 0, phase: "steady" };
  }
}

/**
 * 1F1B (PipeDream-Flush): stage `rank` of `p` first runs p − rank − 1 forwards (warmup),
 * then alternates one forward and one backward (steady state), then runs the remaining
 * backwards (cooldown). At most p − rank micro-batches are in flight on a stage.
 *
 * @param p pipeline stages
 * @param rank this stage
 * @param m micro-batches
 */
export function* oneFOneB(p: number, rank: number, m: number): Generator<PipelineAction> {
  checkCounts(p, m);
  const warmup = Math.min(p - rank - 1, m);
  const steady = m - warmup;
  // warmup
  for (let i = 0; i < warmup; i++) {
    yield { kind: "forward", microBatch: i, chunk: 0, phase: "warmup" };
  }
  // 1F1B steady state
  for (let i = 0; i < steady; i++) {
    yield { kind: "forward", microBatch: warmup + i, chunk: 0, phase: "steady" };
    yield { kind: "backward", microBatch: i, chunk: 0, phase: "steady" };
  }
  // cooldown
  for (let i = steady; i < m; i++) {
    yield { kind: "backward", microBatch: i, chunk: 0, phase: "cooldown" };
  }
}

/**
 * Interleaved 1F1B: each rank holds v model chunks. Micro-batches go through the chunks
 * in groups of p: the k-th forward of a rank is micro-batch ⌊k/(p·v)⌋·p + k mod p on
 * chunk ⌊(k mod p·v)/p⌋, and the k-th backward the same micro-batch on the chunks in
 * reverse. Warmup is (p − rank − 1)·2 + (v − 1)·p forwards (all of them when m = p),
 * then 1F1B, then the remaining backwards. m must be a multiple of p.
 *
 * @param p pipeline ranks
 * @param rank this rank
 * @param m micro-batches
 * @param v model chunks per rank
 */
export function* interleavedOneFOneB(
  p: number,
  rank: number,
  m: number,
  v: number,
): Generator<PipelineAction> {
  checkCounts(p, m);
  if (m % p !== 0) {
    throw new DenotronError(
      `interleaved schedule: micro-batches ${m} must be a multiple of the pipeline size ${p}`,
    );
  }
  const total = m * v;
  const group = p * v;
  const at = (k: number, backward: boolean) => {
    const inGroup = k % group;
    const chunk = Math.floor(inGroup / p);
    return {
      microBatch: Math.floor(k / group) * p + (k % p),
      chunk: backward ? v - 1 - chunk : chunk,
    };
  };
  const warmup = m === p ? total : Math.min((p - rank - 1) * 2 + (v - 1) * p, total);
  const steady = total - warmup;
  // warmup
  for (let k = 0; k < warmup; k++) yield { kind: "forward", ...at(k, false), phase: "warmup" };
  // 1F1B steady state
  for (let i = 0; i < steady; i++) {
    yield { kind: "forward", ...at(warmup + i, false), phase: "steady" };
    yield { kind: "backward", ...at(i, true), phase: "steady" };
  }
  // cooldown
  for (let k = steady; k < total; k++) {
    yield { kind: "backward", ...at(k, true), phase: "cooldown" };
  }
}

/** The virtual stage of chunk `chunk` on pipeline rank `rank` of `p`. */
export function virtualStage(rank: number, chunk: number, p: number): number {
  return chunk * p + rank;
}

/** A message between stages: an activation (forward) or a gradient (backward). */
export interface Message {
  /** What it carries. */
  kind: "activation" | "gradient";
  /** The micro-batch's index in the step. */
  microBatch: number;
  /** The virtual stage that consumes it. */
  toStage: number;
}

/** One step of a rank's plan. */
export type CommOp =
  | { op: "compute"; action: PipelineAction }
  | { op: "send" | "recv"; peer: number; message: Message };

/**
 * Orders every rank's computation and messages so that synchronous sends cannot
 * deadlock. The schedules are simulated in rounds; each message gets the time at which
 * its producer ran, and both the sender's send (right after producing it) and the
 * receiver's recv are placed at that time. Every rank then meets its messages in
 * increasing time, so the oldest outstanding message always has both ends ready; and
 * since a message is taken as soon as the receiver has finished the work that comes
 * before it in the simulation, the sender goes on to its next pass while the receiver
 * computes (the overlap of 1F1B).
 *
 * @param schedules every pipeline rank's actions, in order
 * @param v model chunks per rank
 * @returns each rank's plan
 */
export function planCommunication(schedules: PipelineAction[][], v = 1): CommOp[][] {
  const p = schedules.length;
  const last = p * v - 1;
  const key = (m: Message) => `${m.kind}:${m.microBatch}:${m.toStage}`;
  /** Message key → the time of the pass that produced it. */
  const produced = new Map<string, number>();
  const timeline: { time: number; op: CommOp }[][] = schedules.map(() => []);
  const next = schedules.map(() => 0);
  let time = 0;
  const remaining = () => next.some((n, r) => n < schedules[r].length);
  while (remaining()) {
    let progressed = false;
    for (let r = 0; r < p; r++) {
      const action = schedules[r][next[r]];
      if (!action) continue;
      const s = virtualStage(r, action.chunk, p);
      const input: Message | null = action.kind === "forward"
        ? (s > 0 ? { kind: "activation", microBatch: action.microBatch, toStage: s } : null)
        : (s < last ? { kind: "gradient", microBatch: action.microBatch, toStage: s } : null);
      if (input && !produced.has(key(input))) continue;
      const t = time++;
      if (input) {
        const from = (action.kind === "forward" ? s - 1 : s + 1) % p;
        // Half a step after the producing pass: after it on the sender, before anything
        // later on the receiver.
        const at = produced.get(key(input))! + 0.5;
        timeline[from].push({ time: at, op: { op: "send", peer: r, message: input } });
        timeline[r].push({ time: at, op: { op: "recv", peer: from, message: input } });
      }
      timeline[r].push({ time: t, op: { op: "compute", action } });
      const output: Message | null = action.kind === "forward"
        ? (s < last ? { kind: "activation", microBatch: action.microBatch, toStage: s + 1 } : null)
        : (s > 0 ? { kind: "gradient", microBatch: action.microBatch, toStage: s - 1 } : null);
      if (output) produced.set(key(output), t);
      next[r]++;
      progressed = true;
    }
    if (!progressed) {
      const stuck = next.map((n, r) => `rank ${r} at ${JSON.stringify(schedules[r][n])}`);
      throw new DenotronError(`pipeline schedule cannot make progress: ${stuck.join("; ")}`);
    }
  }
  return timeline.map((events) => events.sort((a, b) => a.time - b.time).map((e) => e.op));
}
