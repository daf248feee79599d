/**
 * A process group of one rank with a real communicator (`communicatorForOne`): every
 * collective in every dtype returns what one rank holds. On the CPU it runs the shm
 * backend (always); on a GPU the nccl backend, through newProcessGroup's unique-id
 * exchange in the store and the CUDA library's NCCL calls (bench/gpu_check.sh runs it
 * with DENOTRON_DEVICE=cuda; without a GPU that case is skipped).
 */
import assert from "assert";
import { type Device, device } from "../lib/device.ts";
import { type DType, Tensor, tidy } from "../lib/tensor.ts";
import { newProcessGroup, type ProcessGroup } from "../lib/parallel/process_group.ts";
import { StoreClient, StoreServer } from "../lib/parallel/store.ts";
import { randomArray } from "./helpers.ts";

function cudaDevice(): Device | null {
  if (Deno.env.get("DENOTRON_DEVICE") !== "cuda") return null;
  try {
    return device("cuda");
  } catch {
    return null;
  }
}

/** Opens a one-rank group with its communicator on `dev`, runs `fn`, closes it all. */
async function withGroupOfOne(dev: Device, fn: (pg: ProcessGroup) => void): Promise<void> {
  const auth = { secret: "nccl-test" };
  const server = StoreServer.listen("127.0.0.1", 0, auth);
  const store = await StoreClient.connect("127.0.0.1", server.port, auth);
  try {
    const pg = await newProcessGroup(store, `one${Date.now() % 100000}`, 0, [0], "solo", {
      device: dev,
      communicatorForOne: true,
    });
    assert.ok(pg);
    try {
      fn(pg);
    } finally {
      pg.close();
    }
  } finally {
    store.close();
    await server.close();
  }
}

/** Every collective on one rank (a started all-reduce too), f32 / bf16 / f16, against the rank's own values. */
function checkEveryCollective(pg: ProcessGroup, dev: Device): void {
  const n = 1001;
  const data = randomArray(n, 7, 3);
  for (const dtype of ["f32", "bf16", "f16"] as DType[]) {
    tidy(() => {
      const make = () => Tensor.fromArray(data, [n], { device: dev, dtype });
      const want = Array.from(make().toArray());
      const check = (t: Tensor, what: string) =>
        assert.deepEqual(Array.from(t.toArray()), want, `${what} (${dtype}, ${pg.backend})`);
      for (const op of ["sum", "max", "min"] as const) {
        const t = make();
        pg.allReduce(t, op);
        check(t, `allReduce ${op}`);
      }
      // started (NCCL: on the group's own stream), then ordered before the read
      const started = make();
      assert.ok(pg.allReduceStart && pg.wait, `${pg.backend} groups start all-reduces`);
      pg.allReduceStart(started);
      pg.wait();
      check(started, "allReduceStart + wait");
      const out = Tensor.zeros([n], { device: dev, dtype });
      pg.reduceScatter(make(), out);
      check(out, "reduceScatter");
      const gathered = Tensor.zeros([n], { device: dev, dtype });
      pg.allGather(make(), gathered);
      check(gathered, "allGather");
      const b = make();
      pg.broadcast(b, 0);
      check(b, "broadcast");
      pg.barrier();
    });
  }
  assert.equal(pg.failed, false);
}

Deno.test("a one-rank shm group with its communicator: every collective and dtype returns the rank's values", async () => {
  const cpu = device("cpu");
  await withGroupOfOne(cpu, (pg) => {
    assert.equal(pg.backend, "shm");
    checkEveryCollective(pg, cpu);
  });
});

const cuda = cudaDevice();
Deno.test({
  name:
    "a one-rank NCCL group (id through the store): every collective and dtype returns the rank's values",
  ignore: cuda === null,
  fn: async () => {
    await withGroupOfOne(cuda!, (pg) => {
      assert.equal(pg.backend, "nccl");
      checkEveryCollective(pg, cuda!);
    });
  },
});
