/**
 * The rendezvous store's server on a thread of its own (a Web Worker), so that rank 0
 * keeps answering the other ranks while its main thread is blocked in a native
 * collective. Messages: in {hostname, port, secret} or "close"; out {port} or {error},
 * then "closed". The server catches every connection's failure itself; the handlers
 * below are a backstop so that nothing a client sends can end this thread.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { StoreServer } from "./store.ts";

self.addEventListener("unhandledrejection", (e) => e.preventDefault());
self.addEventListener("error", (e) => e.preventDefault());

let server: StoreServer | null = null;
self.onmessage = async (e: MessageEvent) => {
  if (e.data === "close") {
    await server?.close();
    self.postMessage("closed");
    self.close();
    return;
  }
  try {
    server = StoreServer.listen(e.data.hostname, e.data.port, { secret: e.data.secret });
    self.postMessage({ port: server.port });
  } catch (err) {
    self.postMessage({ error: (err as Error).message });
  }
};
