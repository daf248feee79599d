/**
 * Sizes are checked before anything is allocated: shapes whose bytes overflow, model
 * dimensions past their limits and allocations beyond the machine's memory are one-line
 * errors naming the shape, the field or the byte count, never a wrapped allocation, a
 * heap overflow or an abort. The native ABI checks again (DN_MAX_BYTES).
 */
import assert from "assert";
import { join } from "node:path";
import { device } from "../lib/device.ts";
import { DenotronError } from "../lib/errors.ts";
import { gptConfigFromHf } from "../lib/io/hf_gpt2.ts";
import { GPT, type GPTConfig } from "../lib/nn/gpt.ts";
import { MAX_TENSOR_BYTES, Tensor } from "../lib/tensor.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

/** Live native blocks, to show that a refused shape allocated nothing. */
function liveBlocks(): bigint {
  const stats = new BigInt64Array(4);
  device().lib.check(device().lib.sym.dn_memory_stats(stats), "dn_memory_stats");
  return stats[3];
}

/** Asserts `fn` throws a DenotronError whose message is one line matching `pattern`. */
function throwsOneLine(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof DenotronError, `expected a DenotronError, got ${e}`);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("Tensor.zeros([2**62 + 1024]) is refused before any allocation (it used to wrap to 4096 bytes)", () => {
  const before = liveBlocks();
  throwsOneLine(
    () => Tensor.zeros([2 ** 62 + 1024]),
    /^Tensor\.empty: shape \[4611686018427389000\] of f32 needs more than 2\^53 bytes, more than one tensor may hold/,
  );
  assert.equal(liveBlocks(), before);
});

Deno.test("a shape whose product overflows is refused by every constructor, naming the exact bytes", () => {
  const shape = [2 ** 31, 2 ** 31, 2];
  const bytes = /needs 36893488147419103232 bytes/;
  throwsOneLine(() => Tensor.empty(shape), bytes);
  throwsOneLine(() => Tensor.full(shape, 1), bytes);
  throwsOneLine(() => Tensor.randn(shape), bytes);
  throwsOneLine(() => Tensor.empty(shape, { name: "wte" }), /^Tensor\.empty of 'wte': shape/);
  throwsOneLine(() => Tensor.fromArray([1], shape), /^Tensor\.fromArray: shape/);
  using t = Tensor.zeros([4]);
  t.name = "buf";
  throwsOneLine(() => t.view(shape), /^view of 'buf': shape \[2147483648, 2147483648, 2\]/);
  throwsOneLine(() => t.reshape(shape), /^reshape of 'buf': shape/);
  throwsOneLine(
    () => t.view([2], 2 ** 60),
    /^view: element offset 1152921504606847000 is not an integer in \[0, 2\^53\)/,
  );
  throwsOneLine(() => t.view([1], 1.5), /^view: element offset 1\.5 is not an integer in/);
  throwsOneLine(() => t.view([2], 3), /^view: shape \[2\] at offset 3 does not fit/);
});

Deno.test("the limit is 2^46 bytes whatever the dtype", () => {
  throwsOneLine(() => Tensor.empty([MAX_TENSOR_BYTES / 4 + 1]), /needs 70368744177668 bytes/);
  throwsOneLine(() => Tensor.empty([MAX_TENSOR_BYTES / 2 + 1], { dtype: "bf16" }), /of bf16/);
  throwsOneLine(() => Tensor.empty([1.5]), /has a dimension \(1\.5\) that is not a non-negative/);
  throwsOneLine(() => Tensor.empty([NaN]), /has a dimension \(NaN\)/);
});

// With overcommit_memory=1 the kernel grants any allocation and the zeroing would be
// killed for memory instead; there the refusal cannot be shown.
const overcommitAlways = (() => {
  try {
    return Deno.readTextFileSync("/proc/sys/vm/overcommit_memory").trim() === "1";
  } catch {
    return false;
  }
})();

Deno.test({
  name: "Tensor.zeros([2**40]) (4 TiB) is a one-line error naming the bytes, not an abort",
  ignore: overcommitAlways,
  fn: () => {
    throwsOneLine(
      () => Tensor.zeros([2 ** 40]),
      /^Tensor\.empty: f32\[1099511627776\]: 4398046511104 bytes do not fit in the memory of cpu/,
    );
  },
});

const TINY: GPTConfig = { vocabSize: 16, blockSize: 8, nLayer: 1, nHead: 1, nEmbd: 8 };

Deno.test("model dimensions past their limits name the field before anything is allocated", () => {
  const before = liveBlocks();
  const cases: [Partial<GPTConfig>, RegExp][] = [
    [
      { vocabSize: 288230376151711808 },
      /GPT config: vocabSize 288230376151711800 is more than the limit of 16777216/,
    ],
    [{ nLayer: 2 ** 31 }, /GPT config: nLayer 2147483648 is more than the limit of 4096/],
    [{ nEmbd: 2 ** 17, nHead: 1 }, /GPT config: nEmbd 131072 is more than the limit of 65536/],
    [{ blockSize: 2 ** 21 }, /GPT config: blockSize 2097152 is more than the limit of 1048576/],
    [{ nHead: 1.5 }, /GPT config: nHead must be a positive integer, got 1\.5/],
    [{ ffnHidden: 2 ** 40 }, /GPT config: ffnHidden 1099511627776 is more than the limit/],
    [{ layerNormEps: 1e-50 }, /GPT config: layerNormEps must be a number in \(0, 1\]/],
  ];
  for (const [edit, pattern] of cases) {
    throwsOneLine(() => new GPT({ ...TINY, ...edit }), pattern);
  }
  assert.equal(liveBlocks(), before);
});

const HF = {
  model_type: "gpt2",
  vocab_size: 16,
  n_embd: 16,
  n_head: 1,
  n_layer: 1,
  n_positions: 1,
};

Deno.test("the HF config reader names config.json and the field for every bad size", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { vocab_size: 288230376151711808 },
      /field "vocab_size" 288230376151711800 is more than the limit/,
    ],
    [{ n_layer: 2 ** 31 }, /field "n_layer" 2147483648 is more than the limit of 4096/],
    [{ n_embd: 1e9 }, /field "n_embd" 1000000000 is more than the limit/],
    [{ n_head: 0 }, /field "n_head" must be a positive integer, got 0/],
    [{ n_positions: "8" }, /field "n_positions" must be a positive integer, got "8"/],
    [{ n_inner: 2 ** 40 }, /field "n_inner" 1099511627776 is more than the limit/],
    [{ layer_norm_epsilon: 1e-50 }, /field "layer_norm_epsilon" must be a number in \(0, 1\]/],
    [{ layer_norm_epsilon: "x" }, /field "layer_norm_epsilon" must be a number .* got "x"/],
  ];
  for (const [edit, pattern] of cases) {
    throwsOneLine(
      () => gptConfigFromHf({ ...HF, ...edit }, "m/config.json"),
      new RegExp(`^m/config\\.json: ${pattern.source}`),
    );
  }
});

Deno.test("generate --hf with a 100-byte config.json of vocab_size 2^58 exits 2 with one error line (it used to segfault)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      join(dir, "config.json"),
      JSON.stringify({ ...HF, vocab_size: 288230376151711808 }),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(ROOT, "tools/generate.ts"), "--hf", dir, "--prompt", "x"],
      env: { DENOTRON_NUM_THREADS: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, stderr);
    assert.match(
      stderr,
      /^error: .*config\.json: field "vocab_size" .* is more than the limit of 16777216\n$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the native ABI refuses sizes whose products overflow, with a status and a message", () => {
  const lib = device().lib;
  const status = (call: () => number): [number, string] => {
    const s = call();
    return [s, Deno.UnsafePointerView.getCString(lib.sym.dn_last_error()!)];
  };
  const huge = 2n ** 62n;
  let [s, msg] = status(() => lib.sym.dn_malloc(huge, new BigUint64Array(1)));
  assert.equal(s, 1);
  assert.match(msg, /dn_malloc: 4611686018427387904 bytes is not a size in \[0, 2\^46\]/);
  [s, msg] = status(() => lib.sym.dn_fill(0, null, huge, 0));
  assert.equal(s, 1);
  assert.match(msg, /dn_fill: sizes \(n\) = \(4611686018427387904\) span more than 2\^46/);
  [s, msg] = status(() => lib.sym.dn_memset_zero(null, -1n));
  assert.equal(s, 1);
  assert.match(msg, /dn_memset_zero: sizes \(bytes\) = \(-1\) include a negative size/);
  // B*T*(NH+2*NKV)*HS = 2^64 would wrap to 0 in int64 arithmetic.
  [s, msg] = status(() =>
    lib.sym.dn_attention_forward(0, null, null, null, 2n ** 20n, 2n ** 20n, 2n, 1n, 2n ** 22n)
  );
  assert.equal(s, 1);
  assert.match(
    msg,
    /dn_attention_forward: sizes \(B, T, NH \+ 2 \* NKV, HS\) = \(1048576, 1048576, 4, 4194304\) span more than 2\^46 elements/,
  );
  [s, msg] = status(() =>
    lib.sym.dn_embedding_forward(0, null, null, null, null, 1n, 1n, 2n ** 40n, 2n ** 40n)
  );
  assert.equal(s, 1);
  assert.match(msg, /dn_embedding_forward: sizes \(V, C\)/);
});
