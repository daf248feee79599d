/**
 * defines: ParallelSizes, RankGenerator, RankLayout, parallelLayout, groupContaining
 *
 * Pure rank arithmetic, no I/O. A rank is a mixed-radix number whose digits are the
 * coordinates along the dimensions of `order`, the first dimension varying fastest
 * (Megatron-LM's convention, default order `tp-cp-ep-dp-pp`): with tp=2, ranks 0 and 1
 * share everything but their tensor-parallel coordinate.
 *
 * A group "along" some dimensions holds the ranks that differ only in those
 * dimensions. Groups are listed with the other dimensions' combined coordinate counting
 * up (first dimension fastest), and inside a group ranks are ordered the same way.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";

/** The dimensions a rank layout can have. */
export type ParallelDim = "tp" | "cp" | "ep" | "dp" | "pp";

/** Degrees of parallelism. The data-parallel size follows from the others. */
export interface ParallelSizes {
  /** Ranks in the job. */
  worldSize: number;
  /** Tensor-parallel size. @default 1 */
  tp?: number;
  /** Pipeline-parallel size. @default 1 */
  pp?: number;
  /** Context-parallel size. @default 1 */
  cp?: number;
  /** Expert-parallel size (must be 1 until mixture-of-experts layers exist). @default 1 */
  ep?: number;
  /** The order of the dimensions, fastest first. @default "tp-cp-ep-dp-pp" */
  order?: string;
}

/**
 * Maps (sizes, order) to the groups of any combination of dimensions.
 *
 * @example
 * ```ts
 * import { RankGenerator } from "./layout.ts";
 * const g = new RankGenerator({ worldSize: 8, tp: 2, pp: 2 });
 * console.log(g.groups("dp")); // [[0, 2], [1, 3], [4, 6], [5, 7]]
 * ```
 */
export class RankGenerator {
  /** Ranks in the job. */
  readonly worldSize: number;
  /** Dimensions fastest first, with their sizes. */
  readonly dims: readonly { name: ParallelDim; size: number }[];

  /** Checks `s` (sizes divide the world, order names each dimension once) and fixes dp. */
  constructor(s: ParallelSizes) {
    const order = (s.order ?? "tp-cp-ep-dp-pp").split("-") as ParallelDim[];
    const known: ParallelDim[] = ["tp", "cp", "ep", "dp", "pp"];
    if (order.length !== 5 || known.some((d) => !order.includes(d))) {
      throw new DenotronError(
        `parallel order '${s.order}' must name each of tp, cp, ep, dp, pp once (e.g. "tp-cp-ep-dp-pp")`,
      );
    }
    const tp = s.tp ?? 1, pp = s.pp ?? 1, cp = s.cp ?? 1, ep = s.ep ?? 1;
    for (const [n, v] of [["tp", tp], ["pp", pp], ["cp", cp], ["ep", ep]] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new DenotronError(`${n} size must be a positive integer, got ${v}`);
      }
    }
    if (ep !== 1) {
      throw new DenotronError(
        `expert parallelism (ep=${ep}) needs mixture-of-experts layers, which Denotron does not have yet; use ep=1`,
      );
    }
    const mp = tp * pp * cp * ep;
    if (!Number.isInteger(s.worldSize) || s.worldSize % mp !== 0) {
      throw new DenotronError(
        `world size ${s.worldSize} is not divisible by tp*cp*ep*pp = ${tp}*${cp}*${ep}*${pp} = ${mp}`,
      );
    }
    const size: Record<ParallelDim, number> = { tp, pp, cp, ep, dp: s.worldSize / mp };
    this.worldSize = s.worldSize;
    this.dims = order.map((name) => ({ name, size: size[name] }));
  }

  /** The size of one dimension. */
  size(dim: ParallelDim): number {
    return this.dims.find((d) => d.name === dim)!.size;
  }

  /** The coordinate of `rank` along each dimension. */
  coordinates(rank: number): Record<ParallelDim, number> {
    const out = {} as Record<ParallelDim, number>;
    let r = rank;
    for (const d of this.dims) {
      out[d.name] = r % d.size;
      r = Math.floor(r / d.size);
    }
    return out;
  }

  /**
   * The groups along the dimensions named in `token` ("dp", "tp-pp", ...).
   *
   * @returns every group, each a list of global ranks
   */
  groups(token: string): number[][] {
    const names = token.split("-") as ParallelDim[];
    for (const n of names) {
      if (!this.dims.some((d) => d.name === n)) {
        throw new DenotronError(`unknown parallel dimension '${n}' in '${token}'`);
      }
    }
    const stride: number[] = [];
    let acc = 1;
    for (const d of this.dims) {
      stride.push(acc);
      acc *= d.size;
    }
    const inside = this.dims.map((d, i) => ({ ...d, stride: stride[i] }))
      .filter((d) => names.includes(d.name));
    const across = this.dims.map((d, i) => ({ ...d, stride: stride[i] }))
      .filter((d) => !names.includes(d.name));
    const enumerate = (ds: typeof inside): number[] => {
      let offsets = [0];
      // Build with the first dimension varying fastest.
      for (let i = ds.length - 1; i >= 0; i--) {
        const next: number[] = [];
        for (const o of offsets) {
          for (let k = 0; k < ds[i].size; k++) next.push(o + k * ds[i].stride);
        }
        offsets = next;
      }
      return offsets;
    };
    const bases = enumerate(across);
    const members = enumerate(inside);
    return bases.map((b) => members.map((m) => b + m));
  }
}

/** Every group of a layout, as lists of global ranks. */
export interface RankLayout {
  /** Ranks in the job. */
  worldSize: number;
  /** Tensor-parallel size. */
  tp: number;
  /** Pipeline-parallel size. */
  pp: number;
  /** Context-parallel size. */
  cp: number;
  /** Data-parallel size. */
  dp: number;
  /** The order of the dimensions, fastest first. */
  order: string;
  /** Tensor-parallel groups. */
  tensor: number[][];
  /** Pipelines (one rank per stage, first stage first). */
  pipeline: number[][];
  /** Data-parallel groups. */
  data: number[][];
  /** Context-parallel groups. */
  context: number[][];
  /** Data and context parallel together (where gradients are averaged). */
  dataContext: number[][];
  /** Tensor and pipeline parallel together: the ranks holding one model replica. */
  modelParallel: number[][];
  /** First and last stage of each pipeline (they share the word embeddings). */
  embedding: number[][];
  /** The first stage of each pipeline. */
  positionEmbedding: number[][];
}

/**
 * Every group of the layout given by `sizes`.
 *
 * @example
 * ```ts
 * import { parallelLayout } from "./layout.ts";
 * const l = parallelLayout({ worldSize: 16, tp: 2, pp: 4 });
 * console.log(l.pipeline[0]); // [0, 4, 8, 12]
 * ```
 */
export function parallelLayout(sizes: ParallelSizes): RankLayout {
  const g = new RankGenerator(sizes);
  const pipeline = g.groups("pp");
  return {
    worldSize: g.worldSize,
    tp: g.size("tp"),
    pp: g.size("pp"),
    cp: g.size("cp"),
    dp: g.size("dp"),
    order: g.dims.map((d) => d.name).join("-"),
    tensor: g.groups("tp"),
    pipeline,
    data: g.groups("dp"),
    context: g.groups("cp"),
    dataContext: g.groups("cp-dp"),
    modelParallel: g.groups("tp-pp"),
    embedding: pipeline.map((p) => (p.length > 1 ? [p[0], p[p.length - 1]] : [...p])),
    positionEmbedding: pipeline.map((p) => [p[0]]),
  };
}

/** The group of `groups` that contains `rank`, or undefined. */
export function groupContaining(groups: readonly number[][], rank: number): number[] | undefined {
  return groups.find((g) => g.includes(rank));
}
