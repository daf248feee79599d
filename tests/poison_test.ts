/**
 * Kernels that overwrite fresh buffers (a backward writing a gradient that did not exist yet,
 * GEMMs with beta = 0, Tensor.empty outputs) must never read them first. With
 * DENOTRON_POISON_ALLOC=1 the allocator hands out every block full of NaN (0xFF bytes), so
 * the op, mixed-precision and model tests, which compare with float64 references, fail on
 * any such read. They run here in a child process, since the variable is read when the
 * library loads.
 */
import assert from "assert";

Deno.test({
  name: "the op and model tests pass with every allocation poisoned with NaN",
  ignore: Deno.env.get("DENOTRON_POISON_ALLOC") === "1", // already inside the poisoned run
  fn: async () => {
    const files = ["ops_test.ts", "mixed_ops_test.ts", "llama_ops_test.ts", "model_test.ts"].map((
      f,
    ) => decodeURIComponent(new URL(f, import.meta.url).pathname));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["test", "-A", "--no-check", ...files],
      env: { DENOTRON_POISON_ALLOC: "1", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.ok(out.success, `poisoned run failed:\n${text.slice(-4000)}`);
    assert.match(text, /ok \| \d+ passed \| 0 failed/);
  },
});
