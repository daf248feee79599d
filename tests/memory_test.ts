/** Memory stays flat over a long run. */
import assert from "assert";

Deno.test("resident memory after 300 training steps is within 5% of after step 20", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      decodeURIComponent(new URL("./fixtures/memory_run.ts", import.meta.url).pathname),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const { rss, heap, native } = JSON.parse(text.trim().split("\n").at(-1)!);
  assert.equal(native[300], native[20], "native memory (in use + cached) is the same");
  assert.ok(heap[300] < heap[20] * 1.05, `JS heap grew: ${heap[20]} -> ${heap[300]}`);
  const growth = rss[300] / rss[20] - 1;
  assert.ok(
    Math.abs(growth) < 0.05,
    `RSS grew ${(growth * 100).toFixed(1)}%: ${rss[20]} -> ${rss[300]}`,
  );
});
