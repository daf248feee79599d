/**
 * defines: StoreServer, StoreClient, StoreError — the TCP rendezvous store the ranks meet
 * at before any process group exists. Rank 0 hosts it on MASTER_ADDR:MASTER_PORT; every
 * rank (rank 0 too) talks to it as a client.
 *
 * Protocol: each message is a 4-byte big-endian length followed by that many bytes of
 * UTF-8 JSON. Requests carry an id, an op and its arguments; the reply carries the same id
 * and either a value or an error. Values are strings.
 *
 *   set(key, value)          stores value
 *   get(key, timeoutMs)      the value, once the key exists
 *   wait(keys, timeoutMs)    returns once every key exists
 *   add(key, amount)         adds to an integer value (0 when missing), returns the sum
 *
 * A barrier is built from add and wait on the client. The server never blocks: waiters
 * are parked and answered when a set or add completes them, or when their deadline passes.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";

/** A store request that failed: a timeout, a lost connection, or a bad request. */
export class StoreError extends DenotronError {
  constructor(message: string) {
    super(message);
    this.name = "StoreError";
  }
}

interface Request {
  id: number;
  op: "set" | "get" | "wait" | "add";
  key?: string;
  keys?: string[];
  value?: string;
  amount?: number;
  timeoutMs?: number;
}

interface Reply {
  id: number;
  value?: string;
  error?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function frame(msg: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(msg));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** Yields each JSON message read from a connection until it closes. */
async function* messages(conn: Deno.Conn): AsyncGenerator<unknown> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(64 * 1024);
  while (true) {
    while (buf.length >= 4) {
      const len = new DataView(buf.buffer, buf.byteOffset).getUint32(0);
      if (buf.length < 4 + len) break;
      yield JSON.parse(decoder.decode(buf.subarray(4, 4 + len)));
      buf = buf.slice(4 + len);
    }
    let n: number | null;
    try {
      n = await conn.read(chunk);
    } catch {
      return;
    }
    if (n === null) return;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

interface Waiter {
  keys: string[];
  reply: (r: Omit<Reply, "id">) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The store's server: a key-value map with parked waiters. Start it on rank 0 with
 * {@linkcode StoreServer.listen}; stop it with `close()`.
 */
export class StoreServer {
  readonly #listener: Deno.Listener;
  readonly #data = new Map<string, string>();
  #waiters = new Set<Waiter>();
  readonly #conns = new Set<Deno.Conn>();
  #closed = false;
  readonly #served: Promise<void>;

  private constructor(listener: Deno.Listener) {
    this.#listener = listener;
    this.#served = this.#accept();
  }

  /**
   * Listens on `hostname:port` (port 0 picks a free one).
   *
   * @param hostname the address to bind, e.g. "127.0.0.1"
   * @param port the port
   * @returns the running server
   */
  static listen(hostname: string, port: number): StoreServer {
    try {
      return new StoreServer(Deno.listen({ hostname, port, transport: "tcp" }));
    } catch (e) {
      throw new StoreError(
        `the rendezvous store cannot listen on ${hostname}:${port}: ${(e as Error).message} ` +
          `(is another job using MASTER_PORT ${port}? pick another with --master-port)`,
      );
    }
  }

  /** The bound port. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        this.#serve(conn).finally(() => this.#conns.delete(conn));
      }
    } catch (e) {
      if (!this.#closed) throw e;
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const send = (r: Reply) => writeAll(conn, frame(r)).catch(() => {});
    for await (const msg of messages(conn)) {
      const req = msg as Request;
      try {
        this.#handle(req, (r) => void send({ id: req.id, ...r }));
      } catch (e) {
        void send({ id: req.id, error: (e as Error).message });
      }
    }
    try {
      conn.close();
    } catch { /* already closed */ }
  }

  #handle(req: Request, reply: (r: Omit<Reply, "id">) => void): void {
    switch (req.op) {
      case "set":
        this.#data.set(req.key!, req.value ?? "");
        reply({ value: "" });
        this.#wake();
        return;
      case "add": {
        const cur = Number(this.#data.get(req.key!) ?? "0");
        const next = String(cur + (req.amount ?? 1));
        this.#data.set(req.key!, next);
        reply({ value: next });
        this.#wake();
        return;
      }
      case "get":
      case "wait": {
        const keys = req.op === "get" ? [req.key!] : req.keys!;
        const answer = () => req.op === "get" ? this.#data.get(keys[0])! : "";
        if (keys.every((k) => this.#data.has(k))) return reply({ value: answer() });
        const w: Waiter = {
          keys,
          reply: () => reply({ value: answer() }),
          timer: setTimeout(() => {
            this.#waiters.delete(w);
            const missing = keys.filter((k) => !this.#data.has(k));
            reply({
              error: `timed out after ${req.timeoutMs} ms waiting for ${missing.join(", ")}`,
            });
          }, req.timeoutMs ?? 300_000),
        };
        this.#waiters.add(w);
        return;
      }
      default:
        throw new StoreError(`unknown store op '${(req as Request).op}'`);
    }
  }

  #wake(): void {
    for (const w of this.#waiters) {
      if (w.keys.every((k) => this.#data.has(k))) {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        w.reply({});
      }
    }
  }

  /** Stops listening, drops every connection and parked waiter. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#waiters) clearTimeout(w.timer);
    this.#waiters.clear();
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    await this.#served.catch(() => {});
  }
}

/** Options of {@link StoreClient.connect}. */
export interface StoreClientOptions {
  /** How long to keep retrying the first connection (rank 0 may start later). @default 60000 */
  connectTimeoutMs?: number;
  /** Default deadline of get/wait/barrier. @default 300000 */
  timeoutMs?: number;
}

/**
 * A connection to the store. Requests may overlap; each resolves with its own reply.
 *
 * @example
 * ```ts
 * import { StoreClient, StoreServer } from "./store.ts";
 * const server = StoreServer.listen("127.0.0.1", 0);
 * const store = await StoreClient.connect("127.0.0.1", server.port);
 * await store.set("greeting", "hello");
 * console.log(await store.get("greeting")); // hello
 * store.close();
 * await server.close();
 * ```
 */
export class StoreClient {
  readonly #conn: Deno.Conn;
  readonly #pending = new Map<number, { resolve: (r: Reply) => void }>();
  #nextId = 1;
  #closed = false;
  #lost: string | null = null;
  readonly #barriers = new Map<string, number>();
  /** Default deadline of get/wait/barrier, in milliseconds. */
  timeoutMs: number;
  readonly #where: string;

  private constructor(conn: Deno.Conn, where: string, timeoutMs: number) {
    this.#conn = conn;
    this.#where = where;
    this.timeoutMs = timeoutMs;
    void this.#readLoop();
  }

  /**
   * Connects to the store, retrying until it is up or the connect timeout passes.
   *
   * @param hostname the store's host (MASTER_ADDR)
   * @param port the store's port (MASTER_PORT)
   * @param options timeouts
   * @returns the connected client
   */
  static async connect(
    hostname: string,
    port: number,
    options: StoreClientOptions = {},
  ): Promise<StoreClient> {
    const deadline = Date.now() + (options.connectTimeoutMs ?? 60_000);
    let last = "";
    while (true) {
      try {
        const conn = await Deno.connect({ hostname, port, transport: "tcp" });
        conn.setNoDelay(true);
        return new StoreClient(conn, `${hostname}:${port}`, options.timeoutMs ?? 300_000);
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() >= deadline) {
        throw new StoreError(
          `could not reach the rendezvous store at ${hostname}:${port} within ${
            options.connectTimeoutMs ?? 60_000
          } ms (${last}); is rank 0 running, and are MASTER_ADDR/MASTER_PORT right?`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async #readLoop(): Promise<void> {
    for await (const msg of messages(this.#conn)) {
      const r = msg as Reply;
      const p = this.#pending.get(r.id);
      if (p) {
        this.#pending.delete(r.id);
        p.resolve(r);
      }
    }
    this.#lost = `the connection to the rendezvous store at ${this.#where} was closed`;
    for (const [id, p] of this.#pending) p.resolve({ id, error: this.#lost });
    this.#pending.clear();
  }

  async #request(req: Omit<Request, "id">, clientTimeoutMs?: number): Promise<string> {
    if (this.#closed) throw new StoreError("the store client is closed");
    if (this.#lost) throw new StoreError(this.#lost);
    const id = this.#nextId++;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await new Promise<Reply>((resolve) => {
      this.#pending.set(id, { resolve });
      if (clientTimeoutMs !== undefined) {
        // A backstop for a server that died without closing the connection.
        timer = setTimeout(() => {
          this.#pending.delete(id);
          resolve({ id, error: `no answer from ${this.#where} within ${clientTimeoutMs} ms` });
        }, clientTimeoutMs);
      }
      writeAll(this.#conn, frame({ id, ...req })).catch((e) => {
        this.#pending.delete(id);
        resolve({ id, error: `sending to ${this.#where}: ${(e as Error).message}` });
      });
    });
    clearTimeout(timer);
    if (reply.error !== undefined) {
      throw new StoreError(`store ${req.op}(${req.key ?? req.keys?.join(", ")}): ${reply.error}`);
    }
    return reply.value ?? "";
  }

  /** Sets `key` to `value`. */
  async set(key: string, value: string): Promise<void> {
    await this.#request({ op: "set", key, value }, this.timeoutMs);
  }

  /**
   * The value of `key`, waiting until some rank sets it.
   *
   * @throws StoreError after timeoutMs
   */
  get(key: string, timeoutMs: number = this.timeoutMs): Promise<string> {
    return this.#request({ op: "get", key, timeoutMs }, timeoutMs + 5000);
  }

  /**
   * Returns once every key exists.
   *
   * @throws StoreError naming the missing keys after timeoutMs
   */
  async wait(keys: string[], timeoutMs: number = this.timeoutMs): Promise<void> {
    await this.#request({ op: "wait", keys, timeoutMs }, timeoutMs + 5000);
  }

  /** Adds `amount` to the integer at `key` (0 when missing) and returns the result. */
  async add(key: string, amount = 1): Promise<number> {
    return Number(await this.#request({ op: "add", key, amount }, this.timeoutMs));
  }

  /**
   * Returns once `count` clients have entered the barrier `name` (each call of a client
   * is a new round of that barrier).
   *
   * @param name the barrier's name (e.g. a group's)
   * @param count how many clients take part
   * @param timeoutMs deadline @default the client's timeoutMs
   */
  async barrier(name: string, count: number, timeoutMs: number = this.timeoutMs): Promise<void> {
    const round = (this.#barriers.get(name) ?? 0) + 1;
    this.#barriers.set(name, round);
    const key = `barrier/${name}/${round}`;
    const arrived = await this.add(key);
    if (arrived === count) await this.set(`${key}/done`, "");
    try {
      await this.wait([`${key}/done`], timeoutMs);
    } catch (e) {
      throw new StoreError(
        `barrier '${name}' (round ${round}): ${
          (e as Error).message
        }; ${count} ranks were expected, at least ${arrived} arrived`,
      );
    }
  }

  /** Closes the connection. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}

/** A store server running on its own thread; see {@linkcode startStoreThread}. */
export interface StoreThread {
  /** The bound port. */
  readonly port: number;
  /** Stops the server and its thread. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts a {@link StoreServer} on a worker thread: rank 0 hosts the store this way, so
 * the other ranks are answered even while rank 0's main thread waits in a collective.
 *
 * @param hostname the address to bind
 * @param port the port (0: a free one)
 * @returns the running server thread
 */
export async function startStoreThread(hostname: string, port: number): Promise<StoreThread> {
  const worker = new Worker(new URL("./store_worker.ts", import.meta.url), { type: "module" });
  const first = await new Promise<{ port?: number; error?: string }>((resolve) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      resolve({ error: e.message });
    };
    worker.postMessage({ hostname, port });
  });
  if (first.error !== undefined) {
    worker.terminate();
    throw new StoreError(first.error);
  }
  let closing: Promise<void> | null = null;
  return {
    port: first.port!,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          worker.terminate();
          resolve();
        }, 2000);
        worker.onmessage = () => {
          clearTimeout(timer);
          worker.terminate();
          resolve();
        };
        worker.postMessage("close");
      });
      return closing;
    },
  };
}
