/**
 * The rendezvous store: set/get/wait/add/barrier across clients and their timeouts; and
 * that only the job can use it: a wrong secret, random bytes, an oversized frame or a
 * second job on the port each end that one connection, at once, while the job's own
 * clients go on being served.
 */
import assert from "assert";
import {
  startStoreThread,
  type StoreAuth,
  StoreClient,
  StoreServer,
} from "../lib/parallel/store.ts";
import { encodeFrame, FrameReader, storeProof } from "../lib/parallel/store_wire.ts";
import { readDistributedEnv, storeSecretFrom } from "../lib/parallel/env.ts";
import { initDistributed } from "../lib/parallel/init.ts";
import { launch } from "../lib/parallel/launch.ts";
import { launchFixture } from "./parallel_helpers.ts";
import { distributedTimeoutMs, setDistributedTimeoutMinutes } from "../lib/parallel/timeouts.ts";

const AUTH: StoreAuth = { secret: "the job's secret" };

async function withStore(
  fn: (a: StoreClient, b: StoreClient, server: StoreServer) => Promise<void>,
) {
  const server = StoreServer.listen("127.0.0.1", 0, AUTH);
  const a = await StoreClient.connect("127.0.0.1", server.port, AUTH);
  const b = await StoreClient.connect("127.0.0.1", server.port, AUTH);
  try {
    await fn(a, b, server);
  } finally {
    a.close();
    b.close();
    await server.close();
  }
}

/** Resolves once the server has closed `conn` (read returns EOF or fails). */
async function closedByServer(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    try {
      if (await conn.read(buf) === null) return;
    } catch {
      return;
    }
  }
}

/** A raw connection that has passed the handshake, for sending bytes no client would. */
async function authenticatedSocket(port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new FrameReader(conn, 4096);
  const { nonce } = await reader.next() as { nonce: string };
  await conn.write(encodeFrame({ op: "hello", proof: await storeProof(AUTH.secret, nonce) }));
  assert.deepEqual(await reader.next(), { ok: true });
  return conn;
}

Deno.test("get waits for another client's set; add counts; wait returns once every key exists", () =>
  withStore(async (a, b) => {
    const pending = b.get("name");
    await a.set("name", "/denotron-x-world");
    assert.equal(await pending, "/denotron-x-world");
    assert.equal(await a.add("n"), 1);
    assert.equal(await b.add("n", 5), 6);
    const both = b.wait(["k1", "k2"]);
    await a.set("k1", "");
    await a.set("k2", "");
    await both;
  }));

Deno.test("a barrier returns when every client has entered it, round after round", () =>
  withStore(async (a, b) => {
    for (let round = 0; round < 3; round++) {
      await Promise.all([a.barrier("b", 2), b.barrier("b", 2)]);
    }
  }));

Deno.test("get, wait and barrier time out with a message naming what is missing", () =>
  withStore(async (a) => {
    const t0 = performance.now();
    await assert.rejects(() => a.get("never", 200), /timed out after 200 ms waiting for never/);
    assert.ok(performance.now() - t0 < 2000);
    await assert.rejects(() => a.wait(["x", "y"], 100), /waiting for x, y/);
    await assert.rejects(
      () => a.barrier("alone", 2, 150),
      /barrier 'alone'.*2 ranks were expected/,
    );
  }));

Deno.test("connecting to a store that is not there fails after the connect timeout", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  await assert.rejects(
    () => StoreClient.connect("127.0.0.1", port, { ...AUTH, connectTimeoutMs: 300 }),
    /could not reach the rendezvous store at 127.0.0.1:\d+ within 300 ms/,
  );
});

Deno.test("a store on its own thread serves clients; requests fail once it is gone", async () => {
  const server = await startStoreThread("127.0.0.1", 0, AUTH);
  const c = await StoreClient.connect("127.0.0.1", server.port, AUTH);
  await c.set("a", "1");
  assert.equal(await c.get("a"), "1");
  await server.close();
  await server.close();
  await assert.rejects(() => c.get("b", 500), /closed|no answer|timed out/);
  c.close();
});

Deno.test("a client with the wrong secret is refused at once and never sees a value", () =>
  withStore(async (a, _b, server) => {
    await a.set("runId", "abc123");
    const t0 = performance.now();
    await assert.rejects(
      () => StoreClient.connect("127.0.0.1", server.port, { secret: "a guess" }),
      /refused this rank: port \d+ is in use by another job/,
    );
    assert.ok(performance.now() - t0 < 2000);
    // Without the handshake, a request is not answered: the connection just ends.
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const reader = new FrameReader(raw, 4096);
    assert.ok("nonce" in (await reader.next() as object));
    await raw.write(encodeFrame({ id: 1, op: "get", key: "runId" }));
    assert.equal(await reader.next(), null);
    raw.close();
    assert.equal(await a.get("runId"), "abc123");
  }));

Deno.test("a second job on the same port is refused with a sentence saying the port is taken", async () => {
  const first = await startStoreThread("127.0.0.1", 0, { secret: "job one" });
  try {
    await assert.rejects(
      () => StoreClient.connect("127.0.0.1", first.port, { secret: "job two" }),
      (e: Error) => {
        assert.match(e.message, /port \d+ is in use by another job/);
        assert.match(e.message, /Pick another port with --master-port or MASTER_PORT/);
        assert.doesNotMatch(e.message, /shm_open/);
        return true;
      },
    );
  } finally {
    await first.close();
  }
});

Deno.test("80 KB of random bytes do not kill the store's thread: later clients are served", async () => {
  const server = await startStoreThread("127.0.0.1", 0, AUTH);
  try {
    // before the handshake, and after it
    for (const authenticated of [false, true]) {
      const conn = authenticated
        ? await authenticatedSocket(server.port)
        : await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      const junk = new Uint8Array(80 * 1024);
      for (let i = 0; i < junk.length; i += 65536) {
        crypto.getRandomValues(junk.subarray(i, i + 65536));
      }
      await conn.write(junk).catch(() => {});
      await closedByServer(conn);
      conn.close();
    }
    // a frame that is JSON but not a request ends that connection too
    const odd = await authenticatedSocket(server.port);
    await odd.write(encodeFrame({ id: 1, op: "set", key: 42 }));
    await closedByServer(odd);
    odd.close();
    const c = await StoreClient.connect("127.0.0.1", server.port, AUTH);
    await c.set("still", "alive");
    assert.equal(await c.get("still"), "alive");
    c.close();
  } finally {
    await server.close();
  }
});

Deno.test("a frame claiming 4 GiB is refused at once, without buffering it", () =>
  withStore(async (a, _b, server) => {
    const rss0 = Deno.memoryUsage().rss;
    const t0 = performance.now();
    for (const authenticated of [false, true]) {
      const conn = authenticated
        ? await authenticatedSocket(server.port)
        : await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      const header = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
      await conn.write(header);
      // keep sending, as an attacker would: the server must not be reading it into memory
      const chunk = new Uint8Array(1 << 20);
      for (let i = 0; i < 8; i++) await conn.write(chunk).catch(() => {});
      await closedByServer(conn);
      conn.close();
    }
    assert.ok(performance.now() - t0 < 3000, `took ${performance.now() - t0} ms`);
    assert.ok(Deno.memoryUsage().rss - rss0 < 64 << 20, "the server grew by 64 MiB or more");
    assert.ok(server.refused >= 2);
    await a.set("after", "ok");
    assert.equal(await a.get("after"), "ok");
  }));

Deno.test("a client's own message over the frame limit is an error before anything is sent", () =>
  withStore(async (a) => {
    await assert.rejects(
      () => a.set("big", "x".repeat(17 << 20)),
      /a store message of \d+ bytes is over the limit of 16777216 bytes/,
    );
    await a.set("small", "fine");
    assert.equal(await a.get("small"), "fine");
  }));

Deno.test("the receive buffer grows by doubling: a 16 MiB frame in 1 KiB pieces is read in linear time", async () => {
  // A fake connection that hands out one maximal frame 1 KiB at a time. Re-copying the
  // buffer on every read, as the store once did, moves 16384 x 8 MiB = 128 GiB here.
  const frame = encodeFrame({ id: 1, op: "set", key: "k", value: "v".repeat((16 << 20) - 64) });
  let at = 0;
  const conn = {
    read(p: Uint8Array): Promise<number | null> {
      if (at >= frame.length) return Promise.resolve(null);
      const n = Math.min(1024, p.length, frame.length - at);
      p.set(frame.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  } as unknown as Deno.Conn;
  const reader = new FrameReader(conn, 16 << 20);
  const t0 = performance.now();
  const msg = await reader.next() as { value: string };
  const ms = performance.now() - t0;
  assert.equal(msg.value.length, (16 << 20) - 64);
  assert.ok(ms < 5000, `reading took ${ms} ms`);
  assert.ok(reader.bufferBytes <= 32 << 20, `the buffer grew to ${reader.bufferBytes} bytes`);
  assert.equal(await reader.next(), null);
});

Deno.test("the store secret comes from DENOTRON_STORE_SECRET, torchrun, SLURM or the run id, in that order", () => {
  const all = {
    DENOTRON_STORE_SECRET: "s3cret",
    TORCHELASTIC_RUN_ID: "abc",
    SLURM_JOB_ID: "42",
    SLURM_STEP_ID: "0",
    DENOTRON_RUN_ID: "r1",
    MASTER_ADDR: "h",
    MASTER_PORT: "1",
  };
  const order = [
    "DENOTRON_STORE_SECRET",
    "TORCHELASTIC_RUN_ID",
    "SLURM_JOB_ID",
    "DENOTRON_RUN_ID",
  ] as const;
  const env: Record<string, string | undefined> = { ...all };
  for (const source of order) {
    assert.equal(storeSecretFrom(env)?.source, source);
    delete env[source];
  }
  assert.equal(storeSecretFrom(env), undefined);
  // Two SLURM jobs, or two torchrun jobs, get different secrets.
  assert.notEqual(
    storeSecretFrom({ SLURM_JOB_ID: "42" })?.value,
    storeSecretFrom({ SLURM_JOB_ID: "43" })?.value,
  );
  const e = readDistributedEnv({ RANK: "1", WORLD_SIZE: "2", DENOTRON_STORE_SECRET: "x" });
  assert.deepEqual(e.storeSecret, { value: "x", source: "DENOTRON_STORE_SECRET" });
});

Deno.test("a job with no secret to share is refused with a sentence, before it listens", async () => {
  await assert.rejects(
    () => initDistributed({ env: { RANK: "0", WORLD_SIZE: "2", MASTER_PORT: "1" } }),
    /a job of 2 ranks needs a rendezvous-store secret shared by its ranks: set DENOTRON_STORE_SECRET/,
  );
});

Deno.test("the collective timeout is two minutes unless the trainer or the environment says otherwise", () => {
  assert.equal(distributedTimeoutMs({}), 120_000);
  assert.equal(distributedTimeoutMs({ DENOTRON_DISTRIBUTED_TIMEOUT_MINUTES: "0.5" }), 30_000);
  assert.equal(distributedTimeoutMs({ DENOTRON_COMM_TIMEOUT_MS: "1500" }), 1500);
  assert.throws(
    () => distributedTimeoutMs({ DENOTRON_DISTRIBUTED_TIMEOUT_MINUTES: "-1" }),
    /DENOTRON_DISTRIBUTED_TIMEOUT_MINUTES must be a number in \(0, 10080\]/,
  );
  setDistributedTimeoutMinutes(3);
  try {
    assert.equal(distributedTimeoutMs({ DENOTRON_DISTRIBUTED_TIMEOUT_MINUTES: "1" }), 180_000);
  } finally {
    setDistributedTimeoutMinutes(null);
  }
  assert.throws(() => setDistributedTimeoutMinutes(0), /--distributed-timeout-minutes must be/);
});

Deno.test("a multi-node launch without a shared secret is refused, naming the variable", async () => {
  await assert.rejects(
    () => launch({ nprocPerNode: 1, nnodes: 2, script: "x.ts", env: {}, log: () => {} }),
    /--nnodes 2 needs DENOTRON_STORE_SECRET, the same on every node/,
  );
});

Deno.test("on one machine the launcher hosts the store on the port it hands the ranks; rank 0 starts none", async () => {
  const r = await launchFixture(3, "agent_store.ts");
  assert.equal(r.code, 0, [...r.output, ...r.log].join("\n"));
  assert.equal(r.output.filter((l) => l.endsWith("agent store ok")).length, 3, r.output.join("\n"));
});
