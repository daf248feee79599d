/**
 * Communication: where each process group lands on the nodes (Megatron's default rank
 * order, TP fastest, then DP, then PP) and what its collectives cost.
 *
 * defines: Collective, groupBandwidth, collectiveTime, tensorParallelBandwidth,
 * dataParallelBandwidth, pipelineBandwidth, contextParallelBandwidth
 *
 * @module
 */

import type { ClusterConfig } from "./cluster.ts";

/** A collective operation. */
export type Collective = "all-reduce" | "reduce-scatter" | "all-gather" | "send-recv";

/**
 * Bus bandwidth of a group of `size` ranks of which `perNode` share a node. Inside a node
 * the links give `intraNodeBandwidth`; across nodes each of the `perNode` members drives
 * its own NIC, so the ring moves `perNode` NICs' worth (capped by the node's links).
 *
 * @param cluster the cluster
 * @param size ranks in the group
 * @param perNode ranks of the group on one node
 * @returns bytes/s
 * @example
 * ```ts
 * import { groupBandwidth } from "./comm.ts";
 * import { CLUSTER_PRESETS } from "./cluster.ts";
 * const a100 = CLUSTER_PRESETS.a100;
 * console.assert(groupBandwidth(a100, 8, 8) === a100.intraNodeBandwidth);
 * console.assert(groupBandwidth(a100, 64, 1) === a100.interNodeBandwidth);
 * ```
 */
export function groupBandwidth(cluster: ClusterConfig, size: number, perNode: number): number {
  if (size <= perNode) return cluster.intraNodeBandwidth;
  return Math.min(cluster.intraNodeBandwidth, perNode * cluster.interNodeBandwidth);
}

/**
 * Time of one collective on `bytes` (the full tensor each rank holds before a
 * reduce-scatter or after an all-gather): ring all-reduce moves 2·(n−1)/n of it,
 * reduce-scatter and all-gather (n−1)/n, a send-recv all of it.
 *
 * @param op the collective
 * @param bytes tensor size, bytes
 * @param size ranks in the group
 * @param bandwidth bus bandwidth, bytes/s
 * @param latency seconds per ring step
 * @returns seconds (0 for a group of one)
 * @example
 * ```ts
 * import { collectiveTime } from "./comm.ts";
 * console.assert(collectiveTime("all-reduce", 8e9, 2, 1e9, 0) === 8);
 * ```
 */
export function collectiveTime(
  op: Collective,
  bytes: number,
  size: number,
  bandwidth: number,
  latency: number,
): number {
  if (size <= 1 || bytes === 0) return 0;
  if (op === "send-recv") return bytes / bandwidth + latency;
  const steps = op === "all-reduce" ? 2 * (size - 1) : size - 1;
  return (steps / size) * (bytes / bandwidth) + steps * latency;
}

/**
 * Bandwidth of a tensor-parallel group of `t` consecutive ranks.
 *
 * @param cluster the cluster
 * @param t tensor-parallel size
 * @returns bytes/s
 * @example
 * ```ts
 * import { tensorParallelBandwidth } from "./comm.ts";
 * import { CLUSTER_PRESETS } from "./cluster.ts";
 * console.assert(tensorParallelBandwidth(CLUSTER_PRESETS.h100, 8) === 360e9);
 * ```
 */
export function tensorParallelBandwidth(cluster: ClusterConfig, t: number): number {
  return groupBandwidth(cluster, t, Math.min(t, cluster.gpusPerNode));
}

/**
 * Bandwidth of a data-parallel group: its members are `t` ranks apart, so a node holds
 * max(1, gpusPerNode / t) of them.
 *
 * @param cluster the cluster
 * @param t tensor-parallel size
 * @param d data-parallel size
 * @returns bytes/s
 * @example
 * ```ts
 * import { dataParallelBandwidth } from "./comm.ts";
 * import { CLUSTER_PRESETS } from "./cluster.ts";
 * console.assert(dataParallelBandwidth(CLUSTER_PRESETS.a100, 8, 64) === 23e9);
 * ```
 */
export function dataParallelBandwidth(cluster: ClusterConfig, t: number, d: number): number {
  const perNode = Math.max(1, Math.floor(cluster.gpusPerNode / t));
  return groupBandwidth(cluster, d, Math.min(d, perNode));
}

/**
 * Bandwidth between neighbouring pipeline stages, t·d ranks apart. The pipeline runs at
 * its slowest hop: the node's links when the whole pipeline fits in one node, else one
 * NIC per rank.
 *
 * @param cluster the cluster
 * @param t tensor-parallel size
 * @param d data-parallel size
 * @param p pipeline-parallel size
 * @returns bytes/s
 * @example
 * ```ts
 * import { pipelineBandwidth } from "./comm.ts";
 * import { CLUSTER_PRESETS } from "./cluster.ts";
 * console.assert(pipelineBandwidth(CLUSTER_PRESETS.a100, 8, 1, 2) === 23e9);
 * console.assert(pipelineBandwidth(CLUSTER_PRESETS.a100, 2, 1, 4) === 230e9);
 * ```
 */
export function pipelineBandwidth(cluster: ClusterConfig, t: number, d: number, p: number): number {
  return t * d * p <= cluster.gpusPerNode ? cluster.intraNodeBandwidth : cluster.interNodeBandwidth;
}

/**
 * Bandwidth of a context-parallel ring. In Megatron's rank order (TP, CP, DP, PP) the CP
 * ranks are `t` apart, so a node holds max(1, gpusPerNode / t) of them; ring attention
 * passes key/value chunks point to point, so a ring that leaves the node runs at one NIC
 * per rank.
 *
 * @param cluster the cluster
 * @param t tensor-parallel size
 * @param c context-parallel size
 * @returns bytes/s
 * @example
 * ```ts
 * import { contextParallelBandwidth } from "./comm.ts";
 * import { CLUSTER_PRESETS } from "./cluster.ts";
 * console.assert(contextParallelBandwidth(CLUSTER_PRESETS.h100, 2, 4) === 360e9);
 * console.assert(contextParallelBandwidth(CLUSTER_PRESETS.h100, 8, 2) === 45e9);
 * ```
 */
export function contextParallelBandwidth(cluster: ClusterConfig, t: number, c: number): number {
  const perNode = Math.max(1, Math.floor(cluster.gpusPerNode / t));
  return c <= perNode ? cluster.intraNodeBandwidth : cluster.interNodeBandwidth;
}
