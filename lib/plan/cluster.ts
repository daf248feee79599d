/**
 * Cluster descriptions: what one accelerator computes and holds, and how fast its
 * links are. Presets for A100, H100, H200 and this project's 2-core CPU machine.
 *
 * defines: ClusterConfig, ClusterOverrides, Precision, CLUSTER_PRESETS, NIC_EFFICIENCY,
 * withOverrides, peakFlops
 *
 * @module
 */

/** Training precision: the dtype of weights and activations. */
export type Precision = "bf16" | "fp16" | "fp32";

/** One kind of node, repeated as many times as the layout needs. */
export interface ClusterConfig {
  /** Preset name, shown in reports. */
  name: string;
  /** Accelerators (or CPU ranks) per node. */
  gpusPerNode: number;
  /** Dense peak FLOP/s of one accelerator by precision. */
  peakFlops: Record<Precision, number>;
  /** Fraction of peak that large matrix multiplies sustain inside a training step. */
  sustainedFraction: number;
  /** Fraction of peak that attention (scores, softmax·V) sustains: smaller, batched GEMMs. */
  attentionFraction: number;
  /** Memory of one accelerator, bytes. */
  memoryBytes: number;
  /** Memory the framework cannot use (context, communication buffers, workspace), bytes. */
  reservedBytes: number;
  /** Achievable memory bandwidth of one accelerator, bytes/s. */
  memoryBandwidth: number;
  /** Achievable collective bus bandwidth inside a node, per accelerator, bytes/s. */
  intraNodeBandwidth: number;
  /** Achievable network bandwidth per accelerator between nodes, bytes/s. */
  interNodeBandwidth: number;
  /** Latency of one collective step (one hop of a ring or tree), seconds. */
  latency: number;
}

/** What `--gpu-memory-gb`, `--nics-per-node`, `--inter-node-gbps`, `--intra-node-gbps` change. */
export interface ClusterOverrides {
  /** Memory of one accelerator, GB (10⁹ bytes). */
  gpuMemoryGb?: number;
  /** Network cards per node; each accelerator gets nics/gpusPerNode of one. @default gpusPerNode */
  nicsPerNode?: number;
  /** Line rate of one network card, Gb/s. @default the preset's (200 HDR, 400 NDR) */
  interNodeGbps?: number;
  /** Achievable collective bus bandwidth inside a node per accelerator, GB/s. */
  intraNodeGbps?: number;
}

/**
 * Fraction of a network card's line rate that NCCL's rings reach (23 of 25 GB/s on HDR,
 * 45 of 50 on NDR: the presets' own figures).
 */
export const NIC_EFFICIENCY = 0.9;

/** Line rate of each preset's network cards, Gb/s, one per accelerator. */
const NIC_GBPS: Record<string, number> = {
  a100: 200,
  "a100-80gb": 200,
  "a100-40gb": 200,
  h100: 400,
  "h100-sxm": 400,
  h200: 400,
};

/**
 * A cluster preset with some of its figures changed. The network bandwidth per
 * accelerator becomes nicsPerNode · interNodeGbps/8 · NIC_EFFICIENCY / gpusPerNode.
 *
 * @param cluster the preset
 * @param overrides what to change
 * @returns a new cluster; the preset is not modified
 * @example
 * ```ts
 * import { CLUSTER_PRESETS, withOverrides } from "./cluster.ts";
 * const fourNics = withOverrides(CLUSTER_PRESETS.h100, { nicsPerNode: 4 });
 * console.assert(fourNics.interNodeBandwidth === 4 * 50e9 * 0.9 / 8);
 * ```
 */
export function withOverrides(cluster: ClusterConfig, overrides: ClusterOverrides): ClusterConfig {
  const out = { ...cluster };
  if (overrides.gpuMemoryGb !== undefined) out.memoryBytes = overrides.gpuMemoryGb * GB;
  if (overrides.intraNodeGbps !== undefined) out.intraNodeBandwidth = overrides.intraNodeGbps * GB;
  if (overrides.nicsPerNode !== undefined || overrides.interNodeGbps !== undefined) {
    const nics = overrides.nicsPerNode ?? cluster.gpusPerNode;
    const gbps = overrides.interNodeGbps ?? NIC_GBPS[cluster.name] ??
      (cluster.interNodeBandwidth * 8) / NIC_EFFICIENCY / GB;
    out.interNodeBandwidth = (nics * (gbps / 8) * GB * NIC_EFFICIENCY) / cluster.gpusPerNode;
  }
  return out;
}

const GB = 1e9;
const T = 1e12;

const H100_SXM: ClusterConfig = {
  name: "h100",
  gpusPerNode: 8,
  peakFlops: { bf16: 989 * T, fp16: 989 * T, fp32: 67 * T },
  sustainedFraction: 0.7,
  attentionFraction: 0.35,
  memoryBytes: 80 * GB,
  reservedBytes: 3 * GB,
  memoryBandwidth: 3.0 * T,
  intraNodeBandwidth: 360 * GB,
  interNodeBandwidth: 45 * GB,
  latency: 10e-6,
};

const A100_80GB: ClusterConfig = {
  name: "a100",
  gpusPerNode: 8,
  peakFlops: { bf16: 312 * T, fp16: 312 * T, fp32: 19.5 * T },
  sustainedFraction: 0.7,
  attentionFraction: 0.5,
  memoryBytes: 80 * GB,
  reservedBytes: 3 * GB,
  memoryBandwidth: 1.8 * T,
  intraNodeBandwidth: 230 * GB,
  interNodeBandwidth: 23 * GB,
  latency: 10e-6,
};

/**
 * Cluster presets.
 *
 * - `a100` (also `a100-80gb`): DGX A100 80 GB nodes (8 GPUs, NVLink 3, one 200 Gb/s HDR
 *   NIC per GPU), the machines of Narayanan et al. 2021; `a100-40gb` the 40 GB part.
 * - `h100` (also `h100-sxm`): DGX H100 nodes (8 GPUs, NVLink 4, one 400 Gb/s NDR NIC per GPU).
 * - `h200`: as `h100` with 141 GB of HBM3e at 4.8 TB/s.
 * - `cpu`: this project's machine: 2 AVX2 Zen cores as 2 ranks of one node, fp32 sgemm
 *   about 125 GFLOP/s, about 20 GB/s of memory bandwidth, ranks talking through shared
 *   memory at about 5 GB/s. No bf16 units: bf16 is costed at the fp32 rate.
 *
 * `sustainedFraction` is the one fitted constant of each GPU preset (see docs/planner.md).
 *
 * @example
 * ```ts
 * import { CLUSTER_PRESETS } from "./cluster.ts";
 * console.assert(CLUSTER_PRESETS.a100.peakFlops.bf16 === 312e12);
 * ```
 */
export const CLUSTER_PRESETS: Readonly<Record<string, ClusterConfig>> = Object.freeze({
  a100: A100_80GB,
  "a100-80gb": { ...A100_80GB, name: "a100-80gb" },
  // A100 40 GB: the same chip with 1.55 TB/s of HBM2 (about 1.4 achievable).
  "a100-40gb": { ...A100_80GB, name: "a100-40gb", memoryBytes: 40 * GB, memoryBandwidth: 1.4 * T },
  h100: H100_SXM,
  "h100-sxm": { ...H100_SXM, name: "h100-sxm" },
  h200: {
    name: "h200",
    gpusPerNode: 8,
    peakFlops: { bf16: 989 * T, fp16: 989 * T, fp32: 67 * T },
    sustainedFraction: 0.7,
    attentionFraction: 0.35,
    memoryBytes: 141 * GB,
    reservedBytes: 3 * GB,
    memoryBandwidth: 4.3 * T,
    intraNodeBandwidth: 360 * GB,
    interNodeBandwidth: 45 * GB,
    latency: 10e-6,
  },
  cpu: {
    name: "cpu",
    gpusPerNode: 2,
    // 2 cores x 3 GHz x (2 FMA pipes x 8 fp32 lanes x 2 FLOPs)
    peakFlops: { bf16: 192e9, fp16: 192e9, fp32: 192e9 },
    sustainedFraction: 0.65,
    attentionFraction: 0.5,
    memoryBytes: 24 * GB,
    reservedBytes: 2 * GB,
    memoryBandwidth: 20 * GB,
    intraNodeBandwidth: 5 * GB,
    interNodeBandwidth: 5 * GB,
    latency: 5e-6,
  },
});

/**
 * Dense peak FLOP/s of one accelerator at a precision.
 *
 * @param cluster the cluster
 * @param precision the training precision
 * @returns FLOP/s
 * @example
 * ```ts
 * import { CLUSTER_PRESETS, peakFlops } from "./cluster.ts";
 * console.assert(peakFlops(CLUSTER_PRESETS.h100, "bf16") === 989e12);
 * ```
 */
export function peakFlops(cluster: ClusterConfig, precision: Precision): number {
  return cluster.peakFlops[precision];
}
