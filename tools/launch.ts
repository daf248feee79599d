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

const USAGE =
  `usage: deno task launch --nproc-per-node N [launcher options] script.ts [script args...]

  --nproc-per-node N   ranks on this machine (required)
  --nnodes M           machines in the job [1]; with M > 1 set DENOTRON_STORE_SECRET,
                       the same on every node
  --node-rank R        this machine's index, 0 to M-1 [0]
  --master-addr A      host of rank 0's rendezvous store [127.0.0.1]
  --master-port P      its port [a free one on one node, 29500 on several]

Each rank gets torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
MASTER_ADDR, MASTER_PORT). DENOTRON_COMM=staged sends collectives through host copies.`;

if (import.meta.main) {
  if (Deno.args[0] === "--help" || Deno.args[0] === "-h") console.log(USAGE);
  else await runMain(async () => await launch(parseLaunchArgs(Deno.args)));
}
