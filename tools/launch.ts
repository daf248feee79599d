/**
 * `deno task launch`: runs N ranks of a script on this machine, torchrun-style.
 *
 *   deno task launch --nproc-per-node 2 examples/train_dp.ts --lr 3e-4
 *   export DENOTRON_STORE_SECRET=$(openssl rand -hex 32)   # the same on every node
 *   deno task launch --nproc-per-node 4 --nnodes 2 --node-rank 0 \
 *     --master-addr 10.0.0.1 --master-port 29500 script.ts
 *
 * Each rank gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT and the job's store secret; `initDistributed()` (lib/parallel) reads them.
 * When a rank fails the others are stopped and the exit code is non-zero.
 *
 * @module
 */
import { launch, parseLaunchArgs } from "../lib/parallel/launch.ts";
import { runMain } from "./cli.ts";

if (import.meta.main) await runMain(async () => await launch(parseLaunchArgs(Deno.args)));
