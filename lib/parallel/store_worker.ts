/**
 * The rendezvous store's server on a thread of its own (a Web Worker), so that rank 0
 * keeps answering the other ranks while its main thread is blocked in a native
 * collective. Messages: in {hostname, port} or "close"; out {port} or {error}, then
 * "closed".
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { StoreServer } from "./store.ts";

let server: StoreServer | null = null;
self.onmessage = async (e: MessageEvent) => {
  if (e.data === "close") {
    await server?.close();
    self.postMessage("closed");
    self.close();
    return;
  }
  try {
    server = StoreServer.listen(e.data.hostname, e.data.port);
    self.postMessage({ port: server.port });
  } catch (err) {
    self.postMessage({ error: (err as Error).message });
  }
};
