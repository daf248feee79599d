/** The rendezvous store: set/get/wait/add/barrier across clients, and its timeouts. */
import assert from "assert";
import { startStoreThread, StoreClient, StoreServer } from "../lib/parallel/store.ts";

async function withStore(fn: (a: StoreClient, b: StoreClient) => Promise<void>) {
  const server = StoreServer.listen("127.0.0.1", 0);
  const a = await StoreClient.connect("127.0.0.1", server.port);
  const b = await StoreClient.connect("127.0.0.1", server.port);
  try {
    await fn(a, b);
  } finally {
    a.close();
    b.close();
    await server.close();
  }
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
    () => StoreClient.connect("127.0.0.1", port, { connectTimeoutMs: 300 }),
    /could not reach the rendezvous store at 127.0.0.1:\d+ within 300 ms/,
  );
});

Deno.test("a store on its own thread serves clients; requests fail once it is gone", async () => {
  const server = await startStoreThread("127.0.0.1", 0);
  const c = await StoreClient.connect("127.0.0.1", server.port);
  await c.set("a", "1");
  assert.equal(await c.get("a"), "1");
  await server.close();
  await server.close();
  await assert.rejects(() => c.get("b", 500), /closed|no answer|timed out/);
  c.close();
});
