/**
 * defines: fullTensors, saveFullCheckpoint, loadFullCheckpoint, FULL_INDEX
 *
 * Layout-independent weights: every parameter is stored as the full tensor of the
 * single-process model, under its name there (`h.3.attn.qkv.weight`, shape (3C, C)), so
 * a checkpoint saved under one TP×PP×DP layout loads under any other, or into the plain
 * GPT. The files follow Hugging Face's sharded-safetensors convention: one
 * `model-0000k-of-0000n.safetensors` per pipeline stage and `model.safetensors.index.json`
 * whose `weight_map` names the file of each tensor.
 *
 * @module
 */
import { DenotronError, fmtShape } from "../errors.ts";
import { readSafetensors, tensorEntry, typedView, writeSafetensors } from "../io/safetensors.ts";
import type { Module } from "../nn/module.ts";
import { Tensor } from "../tensor.ts";
import type { ParallelGroups } from "./init.ts";
import type { ProcessGroup } from "./process_group.ts";
import { shardIndices, shardOwner, tensorParallelInfo } from "./tp_layers.ts";

/** The index file's name. */
export const FULL_INDEX = "model.safetensors.index.json";

/** A full tensor on the host. */
export interface HostTensor {
  /** The full (single-process) shape. */
  shape: number[];
  /** Row-major values. */
  data: Float32Array;
}

/**
 * Every parameter (or gradient) this rank holds, as the full tensor of the
 * single-process model: the shards are all-gathered over the tensor-parallel group
 * (every member must call it) and put back in place with `shardIndices`.
 *
 * @param model a model built of tp_layers.ts layers (or any Module: nothing is sharded)
 * @param tensor the tensor-parallel group
 * @param grads gather the gradients instead of the values
 */
export function fullTensors(
  model: Module,
  tensor: ProcessGroup,
  grads = false,
): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of model.namedParameters()) {
    const src = grads ? t.grad : t;
    if (!src) throw new DenotronError(`fullTensors: ${name} has no gradient`);
    const info = tensorParallelInfo(t);
    const { size } = shardOwner(t);
    const full = new Float32Array(info.fullShape.reduce((p, q) => p * q, 1));
    const local = src.toArray() as Float32Array;
    let gathered = local;
    if (size > 1) {
      const mine = Tensor.fromArray(local, [local.length]);
      const all = Tensor.zeros([local.length * size]);
      tensor.allGather(mine, all);
      gathered = all.toArray() as Float32Array;
      mine.dispose();
      all.dispose();
    }
    for (let r = 0; r < size; r++) {
      const idx = shardIndices(info.fullShape, info.spec, r, size);
      for (let i = 0; i < idx.length; i++) {
        if (idx[i] >= 0) full[idx[i]] = gathered[r * local.length + i];
      }
    }
    out.set(name, { shape: [...info.fullShape], data: full });
  }
  return out;
}

function partName(stage: number, stages: number): string {
  const pad = (n: number) => String(n).padStart(5, "0");
  return `model-${pad(stage + 1)}-of-${pad(stages)}.safetensors`;
}

/**
 * Saves the model's weights as full tensors. Every rank calls it; rank 0 of the tensor
 * and data groups of each pipeline stage writes that stage's file, then world rank 0
 * writes the index.
 *
 * @param dir an existing directory
 * @param model this rank's part of the model
 * @param groups this rank's groups
 */
export async function saveFullCheckpoint(
  dir: string,
  model: Module,
  groups: ParallelGroups,
): Promise<void> {
  const full = fullTensors(model, groups.tensor);
  const stages = groups.pipeline.size;
  const file = partName(groups.pipeline.rank, stages);
  if (groups.tensor.rank === 0 && groups.data.rank === 0) {
    const tensors = new Map(
      [...full].map(([n, t]) => [n, tensorEntry("F32", t.shape, t.data)]),
    );
    await writeSafetensors(`${dir}/${file}`, { tensors, metadata: { format: "pt" } });
  }
  groups.world.barrier();
  if (groups.rank === 0) {
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < stages; s++) {
      const part = partName(s, stages);
      const { tensors } = await readSafetensors(`${dir}/${part}`);
      // The tied embedding is on the first and last stage; both copies are equal.
      for (const name of tensors.keys()) weightMap[name] ??= part;
    }
    await Deno.writeTextFile(
      `${dir}/${FULL_INDEX}`,
      JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 1),
    );
  }
  groups.world.barrier();
}

/**
 * Loads full-tensor weights saved under any layout into this rank's part of a model:
 * each parameter takes its shard of the full tensor.
 *
 * @param dir the checkpoint directory (with model.safetensors.index.json)
 * @param model this rank's part of the model (or a plain single-process model)
 */
export async function loadFullCheckpoint(dir: string, model: Module): Promise<void> {
  const index = JSON.parse(await Deno.readTextFile(`${dir}/${FULL_INDEX}`)) as {
    weight_map: Record<string, string>;
  };
  const files = new Map<string, Awaited<ReturnType<typeof readSafetensors>>>();
  for (const [name, t] of model.namedParameters()) {
    const file = index.weight_map[name];
    if (!file) throw new DenotronError(`${dir}: the checkpoint has no tensor '${name}'`);
    if (!files.has(file)) files.set(file, await readSafetensors(`${dir}/${file}`));
    const entry = files.get(file)!.tensors.get(name)!;
    const info = tensorParallelInfo(t);
    if (entry.shape.join(",") !== info.fullShape.join(",")) {
      throw new DenotronError(
        `${dir}/${file}: '${name}' has shape ${fmtShape(entry.shape)}, the model's full shape is ${
          fmtShape(info.fullShape)
        }`,
      );
    }
    const values = typedView(entry) as Float32Array;
    const { rank, size } = shardOwner(t);
    const idx = shardIndices(info.fullShape, info.spec, rank, size);
    t.copyFromHost(Float32Array.from(idx, (i) => (i < 0 ? 0 : values[i])));
  }
}
