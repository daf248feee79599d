/** Tensors: creation, views, explicit release, scopes, the allocator, printing. */
import assert from "assert";
import { device } from "../lib/device.ts";
import { DenotronError } from "../lib/errors.ts";
import { linear } from "../lib/ops/matmul.ts";
import { keep, Tensor, tidy } from "../lib/tensor.ts";
import { noGrad } from "../lib/autograd.ts";

Deno.test("fromArray() and toArray() round-trip f32 and i32 data", () => {
  using a = Tensor.fromArray([1.5, -2, 3, 4], [2, 2]);
  assert.deepEqual(Array.from(a.toArray()), [1.5, -2, 3, 4]);
  using b = Tensor.fromArray(Int32Array.from([7, -8]), [2]);
  assert.equal(b.dtype, "i32");
  assert.deepEqual(Array.from(b.toArray()), [7, -8]);
});

Deno.test("dispose() is safe to call twice, and a disposed tensor says so when used", () => {
  const a = Tensor.zeros([3]);
  a.dispose();
  a.dispose();
  assert.ok(a.disposed);
  assert.throws(() => a.toArray(), /was disposed/);
  assert.throws(() => linear(a, Tensor.zeros([2, 3])), /linear: x f32\[3\] on cpu was disposed/);
});

Deno.test("views share storage, which lives until the last view is disposed", () => {
  const base = Tensor.fromArray([1, 2, 3, 4, 5, 6], [6]);
  const v = base.view([2, 2], 2);
  base.dispose();
  assert.deepEqual(Array.from(v.toArray()), [3, 4, 5, 6]);
  v.fill_(9);
  assert.deepEqual(Array.from(v.toArray()), [9, 9, 9, 9]);
  v.dispose();
  assert.throws(() => Tensor.zeros([4]).view([5]), /does not fit/);
});

Deno.test("tidy() disposes what it created except what it returns or keeps", () => {
  let inner: Tensor | undefined, kept: Tensor | undefined;
  const out = tidy(() => {
    inner = Tensor.zeros([2]);
    kept = keep(Tensor.zeros([2]));
    return { result: Tensor.full([2], 1) };
  });
  assert.ok(inner!.disposed);
  assert.ok(!kept!.disposed && !out.result.disposed);
  kept!.dispose();
  out.result.dispose();
});

Deno.test("tidy() cleans up when its function throws", () => {
  let inner: Tensor | undefined;
  assert.throws(() =>
    tidy(() => {
      inner = Tensor.zeros([2]);
      throw new Error("boom");
    }), /boom/);
  assert.ok(inner!.disposed);
});

Deno.test("the caching allocator reuses blocks: a repeated step allocates nothing new", () => {
  const dev = device();
  const w = Tensor.fromArray(new Float32Array(64 * 64).fill(0.01), [64, 64], {
    requiresGrad: true,
  });
  const x = Tensor.fromArray(new Float32Array(8 * 64).fill(1), [8, 64]);
  const step = () => tidy(() => linear(linear(x, w), w).backward(Tensor.full([8, 64], 1)));
  step();
  const before = dev.memoryStats();
  for (let i = 0; i < 10; i++) step();
  const after = dev.memoryStats();
  assert.equal(after.inUse, before.inUse);
  assert.equal(
    after.inUse + after.cached,
    before.inUse + before.cached,
    "no new memory from the system",
  );
  w.dispose();
  x.dispose();
});

Deno.test("noGrad() records no graph; backward() without requiresGrad explains itself", () => {
  using w = Tensor.full([2, 2], 1, { requiresGrad: true });
  using x = Tensor.full([1, 2], 1);
  const y = noGrad(() => linear(x, w));
  assert.equal(y.gradFn, null);
  assert.throws(() => y.backward(), /does not require grad/);
  y.dispose();
});

Deno.test("backward() needs an explicit gradient for a non-scalar and checks its shape", () => {
  using w = Tensor.full([2, 2], 1, { requiresGrad: true });
  using x = Tensor.full([3, 2], 1);
  tidy(() => {
    const y = linear(x, w);
    assert.throws(() => y.backward(), /not a scalar/);
    assert.throws(() => y.backward(Tensor.zeros([2, 2])), /gradient f32\[2, 2\] does not match/);
    y.backward(Tensor.full([3, 2], 1));
  });
  assert.deepEqual(Array.from(w.grad!.toArray()), [3, 3, 3, 3]);
});

Deno.test("tensors print their dtype, shape, device and first values", () => {
  using t = Tensor.fromArray([1, 2.5, 3], [3], { requiresGrad: true });
  assert.equal(String(t), "Tensor(f32[3] on cpu, requiresGrad) [1, 2.500, 3]");
  assert.match(Deno.inspect(device()), /Device\(cpu gemm=\w+ threads=\d+/);
});

Deno.test("bad tensor construction is a clear error", () => {
  assert.throws(() => Tensor.fromArray([1, 2, 3], [2, 2]), DenotronError);
  assert.throws(
    () => Tensor.fromArray([1.5], [1], { dtype: "i32" }),
    /1.5 at index 0 is not an int32/,
  );
  assert.throws(() => Tensor.zeros([2, -1]), /not a non-negative integer/);
  assert.throws(() => device("tpu"), /unknown device 'tpu'/);
  assert.throws(() => {
    device().numThreads = 0;
  }, /positive integer/);
});
