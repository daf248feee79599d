/**
 * defines: StoreServer, StoreClient, StoreError, StoreAuth, startStoreThread — the TCP
 * rendezvous store the ranks meet at before any process group exists. Rank 0 hosts it on
 * MASTER_ADDR:MASTER_PORT (or, on one machine, the launcher does); every rank (rank 0 too)
 * talks to it as a client.
 *
 * Only the job can use it: a connection must first prove the job's secret (see
 * store_wire.ts for the frames and the handshake). A wrong or missing proof, a frame over
 * the limit or a malformed request ends that one connection; the server goes on serving
 * the others. A client whose proof is refused learns that the port belongs to another
 * job, at once, instead of joining that job's store.
 *
 * Requests carry an id, an op and its arguments; the reply carries the same id and
 * either a value or an error. Values are strings.
 *
 *   set(key, value)          stores value
 *   get(key, timeoutMs)      the value, once the key exists
 *   wait(keys, timeoutMs)    returns once every key exists
 *   add(key, amount)         adds to an integer value (0 when missing), returns the sum
 *
 * A barrier is built from add and wait on the client. The server never blocks: waiters
 * are parked (up to STORE_LIMITS) and answered when a set or add completes them, when
 * their deadline passes, or dropped when their connection closes.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";
import {
  checkStoreProof,
  encodeFrame,
  FrameReader,
  jobTag,
  newNonce,
  parseRequest,
  STORE_LIMITS,
  storeProof,
  type StoreReply,
  type StoreRequest,
} from "./store_wire.ts";
import { distributedTimeoutMs } from "./timeouts.ts";

/** A store request that failed: a timeout, a lost connection, or a bad request. */
export class StoreError extends DenotronError {
  constructor(message: string) {
    super(message);
    this.name = "StoreError";
  }
}

/** What a connection must prove: the job's secret (see readDistributedEnv). */
export interface StoreAuth {
  /** Shared by every rank of the job and nobody else. */
  secret: string;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Rejects after `ms`, so a silent peer cannot hold a handshake open. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreError(`${what} took more than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

interface Waiter {
  keys: string[];
  reply: (r: Omit<StoreReply, "id">) => void;
  timer: ReturnType<typeof setTimeout>;
  conn: Deno.Conn;
}

/**
 * The store's server: a key-value map with parked waiters. Start it on rank 0 with
 * {@linkcode StoreServer.listen}; stop it with `close()`.
 */
export class StoreServer {
  readonly #listener: Deno.Listener;
  readonly #auth: StoreAuth;
  readonly #data = new Map<string, string>();
  #waiters = new Set<Waiter>();
  readonly #conns = new Map<Deno.Conn, Set<Waiter>>();
  #closed = false;
  readonly #served: Promise<void>;
  /** Connections ended for a bad handshake, frame or request (for tests and logs). */
  refused = 0;

  private constructor(listener: Deno.Listener, auth: StoreAuth) {
    this.#listener = listener;
    this.#auth = auth;
    this.#served = this.#accept();
  }

  /**
   * Listens on `hostname:port` (port 0 picks a free one).
   *
   * @param hostname the address to bind, e.g. "127.0.0.1"
   * @param port the port
   * @param auth the job's secret, which every connection must prove
   * @returns the running server
   */
  static listen(hostname: string, port: number, auth: StoreAuth): StoreServer {
    if (typeof auth?.secret !== "string" || auth.secret === "") {
      throw new StoreError("the rendezvous store needs the job's secret (StoreAuth.secret)");
    }
    try {
      return new StoreServer(Deno.listen({ hostname, port, transport: "tcp" }), auth);
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
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        if (this.#closed) return;
        // e.g. out of file descriptors: wait a moment rather than die
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (this.#conns.size >= STORE_LIMITS.maxConnections) {
        this.refused++;
        closeQuietly(conn);
        continue;
      }
      this.#conns.set(conn, new Set());
      // #serve catches everything: one connection can never take the server down
      void this.#serve(conn);
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const send = (r: StoreReply) => {
      let bytes: Uint8Array;
      try {
        bytes = encodeFrame(r);
      } catch (e) {
        // A value that filled a whole frame does not fit in a reply: say so instead.
        bytes = encodeFrame({ id: r.id, error: (e as Error).message });
      }
      writeAll(conn, bytes).catch(() => {});
    };
    const reader = new FrameReader(conn, STORE_LIMITS.maxHelloBytes);
    try {
      if (!(await within(this.#handshake(conn, reader), STORE_LIMITS.handshakeMs, "handshake"))) {
        this.refused++;
        return;
      }
      reader.maxFrameBytes = STORE_LIMITS.maxFrameBytes;
      while (!this.#closed) {
        const msg = await reader.next();
        if (msg === null) return;
        const req = parseRequest(msg);
        if (!req) {
          this.refused++;
          return;
        }
        this.#handle(req, conn, (r) => send({ id: req.id, ...r }));
      }
    } catch {
      this.refused++;
    } finally {
      for (const w of this.#conns.get(conn) ?? []) {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
      }
      this.#conns.delete(conn);
      closeQuietly(conn);
    }
  }

  /** True once the client proved the secret; on a wrong proof it is told and dropped. */
  async #handshake(conn: Deno.Conn, reader: FrameReader): Promise<boolean> {
    const nonce = newNonce();
    await writeAll(conn, encodeFrame({ nonce }));
    const hello = await reader.next() as { op?: unknown; proof?: unknown } | null;
    if (!hello || typeof hello !== "object" || hello.op !== "hello") return false;
    if (!(await checkStoreProof(this.#auth.secret, nonce, hello.proof))) {
      await writeAll(conn, encodeFrame({ error: "another job" })).catch(() => {});
      return false;
    }
    await writeAll(conn, encodeFrame({ ok: true }));
    return true;
  }

  #handle(req: StoreRequest, conn: Deno.Conn, reply: (r: Omit<StoreReply, "id">) => void): void {
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
        const mine = this.#conns.get(conn)!;
        if (
          this.#waiters.size >= STORE_LIMITS.maxWaiters ||
          mine.size >= STORE_LIMITS.maxWaitersPerConnection
        ) {
          return reply({ error: `the store has too many waiting requests (${mine.size} here)` });
        }
        const w: Waiter = {
          keys,
          conn,
          reply: () => reply({ value: answer() }),
          timer: setTimeout(() => {
            this.#waiters.delete(w);
            mine.delete(w);
            const missing = keys.filter((k) => !this.#data.has(k));
            reply({
              error: `timed out after ${req.timeoutMs} ms waiting for ${missing.join(", ")}`,
            });
          }, req.timeoutMs ?? 300_000),
        };
        this.#waiters.add(w);
        mine.add(w);
        return;
      }
    }
  }

  #wake(): void {
    for (const w of this.#waiters) {
      if (w.keys.every((k) => this.#data.has(k))) {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        this.#conns.get(w.conn)?.delete(w);
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
    for (const c of this.#conns.keys()) closeQuietly(c);
    await this.#served.catch(() => {});
  }
}

/** Options of {@link StoreClient.connect}. */
export interface StoreClientOptions extends StoreAuth {
  /** How long to keep retrying the first connection (rank 0 may start later). @default 60000 */
  connectTimeoutMs?: number;
  /** Default deadline of get/wait/barrier. @default distributedTimeoutMs() (two minutes) */
  timeoutMs?: number;
}

/**
 * A connection to the store. Requests may overlap; each resolves with its own reply.
 *
 * @example
 * ```ts
 * import { StoreClient, StoreServer } from "./store.ts";
 * const auth = { secret: crypto.randomUUID() };
 * const server = StoreServer.listen("127.0.0.1", 0, auth);
 * const store = await StoreClient.connect("127.0.0.1", server.port, auth);
 * await store.set("greeting", "hello");
 * console.log(await store.get("greeting")); // hello
 * store.close();
 * await server.close();
 * ```
 */
export class StoreClient {
  readonly #conn: Deno.Conn;
  readonly #reader: FrameReader;
  readonly #pending = new Map<number, { resolve: (r: StoreReply) => void }>();
  #nextId = 1;
  #closed = false;
  #lost: string | null = null;
  readonly #barriers = new Map<string, number>();
  /** Default deadline of get/wait/barrier, in milliseconds. */
  timeoutMs: number;
  readonly #where: string;

  private constructor(conn: Deno.Conn, reader: FrameReader, where: string, timeoutMs: number) {
    this.#conn = conn;
    this.#reader = reader;
    this.#where = where;
    this.timeoutMs = timeoutMs;
    void this.#readLoop();
  }

  /**
   * Connects to the store and proves the job's secret, retrying until the store is up or
   * the connect timeout passes. A store that refuses the proof belongs to another job:
   * that fails at once.
   *
   * @param hostname the store's host (MASTER_ADDR)
   * @param port the store's port (MASTER_PORT)
   * @param options the job's secret and the timeouts
   * @returns the connected client
   */
  static async connect(
    hostname: string,
    port: number,
    options: StoreClientOptions,
  ): Promise<StoreClient> {
    const deadline = Date.now() + (options.connectTimeoutMs ?? 60_000);
    const where = `${hostname}:${port}`;
    let last = "";
    while (true) {
      let conn: Deno.TcpConn | null = null;
      try {
        conn = await Deno.connect({ hostname, port, transport: "tcp" });
        conn.setNoDelay(true);
      } catch (e) {
        last = (e as Error).message;
      }
      if (conn) {
        const reader = new FrameReader(conn, STORE_LIMITS.maxHelloBytes);
        try {
          await within(
            StoreClient.#handshake(conn, reader, options.secret, where, port),
            STORE_LIMITS.handshakeMs,
            `the handshake with the rendezvous store at ${where}`,
          );
        } catch (e) {
          closeQuietly(conn);
          throw e;
        }
        reader.maxFrameBytes = STORE_LIMITS.maxFrameBytes;
        return new StoreClient(conn, reader, where, options.timeoutMs ?? distributedTimeoutMs());
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

  static async #handshake(
    conn: Deno.Conn,
    reader: FrameReader,
    secret: string,
    where: string,
    port: number,
  ): Promise<void> {
    const challenge = await reader.next() as { nonce?: unknown } | null;
    if (typeof challenge?.nonce !== "string") {
      throw new StoreError(
        `${where} does not answer as a Denotron rendezvous store; is MASTER_PORT ${port} ` +
          `used by another program?`,
      );
    }
    const proof = await storeProof(secret, challenge.nonce);
    await writeAll(conn, encodeFrame({ op: "hello", proof }, STORE_LIMITS.maxHelloBytes));
    const answer = await reader.next() as { ok?: unknown } | null;
    if (answer?.ok !== true) {
      throw new StoreError(
        `the rendezvous store at ${where} refused this rank: port ${port} is in use by ` +
          `another job (or this rank's job secret differs from rank 0's; this rank is job ` +
          `${await jobTag(secret)}). Pick another port with --master-port or MASTER_PORT.`,
      );
    }
  }

  async #readLoop(): Promise<void> {
    while (true) {
      let msg: unknown;
      try {
        msg = await this.#reader.next();
      } catch {
        msg = null;
      }
      if (msg === null) break;
      const r = msg as StoreReply;
      const p = this.#pending.get(r?.id);
      if (p) {
        this.#pending.delete(r.id);
        p.resolve(r);
      }
    }
    this.#lost = `the connection to the rendezvous store at ${this.#where} was closed`;
    for (const [id, p] of this.#pending) p.resolve({ id, error: this.#lost });
    this.#pending.clear();
  }

  async #request(req: Omit<StoreRequest, "id">, clientTimeoutMs?: number): Promise<string> {
    if (this.#closed) throw new StoreError("the store client is closed");
    if (this.#lost) throw new StoreError(this.#lost);
    const id = this.#nextId++;
    const bytes = encodeFrame({ id, ...req });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await new Promise<StoreReply>((resolve) => {
      this.#pending.set(id, { resolve });
      if (clientTimeoutMs !== undefined) {
        // A backstop for a server that died without closing the connection.
        timer = setTimeout(() => {
          this.#pending.delete(id);
          resolve({ id, error: `no answer from ${this.#where} within ${clientTimeoutMs} ms` });
        }, clientTimeoutMs);
      }
      writeAll(this.#conn, bytes).catch((e) => {
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
 * @param auth the job's secret, which every connection must prove
 * @returns the running server thread
 */
export async function startStoreThread(
  hostname: string,
  port: number,
  auth: StoreAuth,
): Promise<StoreThread> {
  const worker = new Worker(new URL("./store_worker.ts", import.meta.url), { type: "module" });
  const first = await new Promise<{ port?: number; error?: string }>((resolve) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      resolve({ error: e.message });
    };
    worker.postMessage({ hostname, port, secret: auth.secret });
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
