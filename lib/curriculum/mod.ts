/**
 * Curriculum training: sequence-length warmup, progressive layer dropping,
 * batch-size ramp-up, data ordered by difficulty, and user-written schedules.
 *
 * @module
 */
export * from "./seqlen.ts";
export * from "./layer_drop.ts";
export * from "./batch_rampup.ts";
export * from "./data.ts";
export * from "./curriculum.ts";
