/**
 * defines: sseEvent, SSE_DONE, sseResponse — server-sent events, as OpenAI's streaming
 * API frames them: each event one `data: JSON` line and a blank line, the stream closed
 * by `data: [DONE]`.
 *
 * @module
 */

const utf8 = new TextEncoder();

/**
 * One event: `data: ` and the JSON of `value` (one line: JSON escapes newlines), then a
 * blank line.
 *
 * @param value the event's payload
 * @returns the bytes to write
 * @example
 * ```ts
 * import { sseEvent } from "./sse.ts";
 * console.log(new TextDecoder().decode(sseEvent({ text: "a\nb" }))); // 'data: {"text":"a\\nb"}\n\n'
 * ```
 */
export function sseEvent(value: unknown): Uint8Array {
  return utf8.encode(`data: ${JSON.stringify(value)}\n\n`);
}

/** The last event of a stream. */
export const SSE_DONE: Uint8Array = utf8.encode("data: [DONE]\n\n");

/**
 * A streaming response whose events `produce` writes; the stream ends with `[DONE]`
 * when it returns. When the client goes away, `onCancel` runs (to stop generating).
 *
 * @param produce writes events through `send`
 * @param onCancel called once if the client disconnects first
 * @returns the response (status 200, text/event-stream)
 */
export function sseResponse(
  produce: (send: (value: unknown) => void) => Promise<void>,
  onCancel: () => void,
): Response {
  let open = true;
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (value: unknown) => {
        if (open) controller.enqueue(sseEvent(value));
      };
      try {
        await produce(send);
      } catch (e) {
        // Headers are gone already: the failure becomes the stream's last event.
        send({ error: { message: (e as Error).message, type: "server_error", param: null } });
      }
      if (open) {
        controller.enqueue(SSE_DONE);
        controller.close();
        open = false;
      }
    },
    cancel() {
      open = false;
      onCancel();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "connection": "keep-alive",
    },
  });
}
