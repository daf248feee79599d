/**
 * defines: gatherFullTensors, shardOfFullTensors, fullTensors
 *
 * Layout-independent tensors: every parameter as the full tensor of the single-process
 * model, under its name there (`h.3.attn.qkv.weight`, shape (3C, C)). Checkpoints hold
 * these (lib/train/checkpoint.ts), so one saved under any TP×PP×DP layout loads under any
 * other, or into the plain GPT; tests compare layouts with them.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import type { HostTensor, NamedTensors } from "../io/checkpoint.ts";
import type { Module } from "../nn/module.ts";
import { Tensor } from "../tensor.ts";
import type { ProcessGroup } from "./process_group.ts";
import { shardIndices, shardOwner, tensorParallelInfo } from "./tp_layers.ts";

/** A parameter bound into a flat buffer: its name, tensor and first element. */
export interface FlatEntry {
  /** Its name in the single-process model. */
  name: string;
  /** This rank's tensor (a shard under tensor parallelism). */
  tensor: Tensor;
  /** Its first element in the flat buffer. */
  offset: number;
}

/**
 * Full tensors by name from arrays laid out like this rank's flat buffer: each
 * parameter's shard is all-gathered over the tensor-parallel group (every member calls
 * it) and put in place with `shardIndices`.
 *
 * @param entries the flat layout
 * @param tp the tensor-parallel group
 * @param flats flat-buffer arrays by name prefix ("" for the weights, "m." ...)
 * @returns `prefix + name` → the full tensor
 */
export function gatherFullTensors(
  entries: readonly FlatEntry[],
  tp: ProcessGroup,
  flats: Record<string, Float32Array>,
): NamedTensors {
  const out: NamedTensors = new Map();
  for (const e of entries) {
    const info = tensorParallelInfo(e.tensor);
    const { size } = shardOwner(e.tensor);
    const n = e.tensor.numel;
    for (const [prefix, all] of Object.entries(flats)) {
      const local = all.slice(e.offset, e.offset + n);
      let gathered: Float32Array = local;
      if (size > 1) {
        using mine = Tensor.fromArray(local, [n]);
        using every = Tensor.zeros([n * size]);
        tp.allGather(mine, every);
        gathered = every.toArray() as Float32Array;
      }
      const full = new Float32Array(info.fullShape.reduce((a, b) => a * b, 1));
      for (let q = 0; q < size; q++) {
        const idx = shardIndices(info.fullShape, info.spec, q, size);
        for (let i = 0; i < n; i++) if (idx[i] >= 0) full[idx[i]] = gathered[q * n + i];
      }
      out.set(prefix + e.name, { shape: [...info.fullShape], data: full });
    }
  }
  return out;
}

/**
 * This rank's flat-buffer layout of `prefix + name` full tensors: each parameter takes its
 * shard (padding at zero).
 *
 * @param entries the flat layout
 * @param numel the flat buffer's length
 * @param get the full tensor of a name, with the full shape it must have (throws if not)
 * @returns the flat array
 */
export function shardOfFullTensors(
  entries: readonly FlatEntry[],
  numel: number,
  get: (name: string, fullShape: readonly number[]) => Float32Array,
): Float32Array {
  const flat = new Float32Array(numel);
  for (const e of entries) {
    const info = tensorParallelInfo(e.tensor);
    const { rank, size } = shardOwner(e.tensor);
    const idx = shardIndices(info.fullShape, info.spec, rank, size);
    const values = get(e.name, info.fullShape);
    flat.set(Float32Array.from(idx, (i) => (i < 0 ? 0 : values[i])), e.offset);
  }
  return flat;
}

/**
 * Every parameter (or gradient) of a model as the full tensor of the single-process
 * model (every member of the tensor group calls it).
 *
 * @param model a model built of tp_layers.ts layers (or any Module: nothing is sharded)
 * @param tensor the tensor-parallel group
 * @param grads gather the gradients instead of the values
 * @returns name → full tensor
 */
export function fullTensors(
  model: Module,
  tensor: ProcessGroup,
  grads = false,
): Map<string, HostTensor> {
  const entries: FlatEntry[] = [];
  const parts: Float32Array[] = [];
  let offset = 0;
  for (const [name, t] of model.namedParameters()) {
    const src = grads ? t.grad : t;
    if (!src) throw new DenotronError(`fullTensors: ${name} has no gradient`);
    entries.push({ name, tensor: t, offset });
    parts.push(src.toArray() as Float32Array);
    offset += t.numel;
  }
  const flat = new Float32Array(offset);
  parts.forEach((p, i) => flat.set(p, entries[i].offset));
  return gatherFullTensors(entries, tensor, { "": flat });
}
