/**
 * The GEMMs of one GPT-2 124M training step on the CUDA device, shape by shape: each
 * layer's forward (x Wᵀ + b), input gradient (dy W) and weight gradient (dyᵀ x, into an
 * fp32 main gradient with beta 1), in bf16 with fp32 accumulation at batch × sequence
 * rows, and the tied output layer. Prints each call's time and TFLOP/s and the step's
 * total, to tell slow shapes from slow kernels around them.
 *
 *   deno run -A bench/gemm_cuda.ts [--rows 16384] [--reps 10]
 *
 * @module
 */
import { parseFlags } from "../lib/cli_args.ts";
import { device as getDevice } from "../lib/device.ts";
import { dtypeWithGrad } from "../lib/ops/check.ts";
import { type DType, Tensor } from "../lib/tensor.ts";

const { values } = parseFlags({
  args: Deno.args,
  options: { rows: { type: "string", default: "16384" }, reps: { type: "string", default: "10" } },
});
const R = Number(values.rows), reps = Number(values.reps);
const dev = getDevice("cuda");
const lib = dev.lib;
const sync = () => lib.check(lib.sym.dn_synchronize(), "dn_synchronize");
const zeros = (shape: number[], dtype: DType) => Tensor.zeros(shape, { device: dev, dtype });

/** ms per call of C(M,N) = op(A) op(B) (+ bias), A and B bf16. */
function time(
  tA: boolean,
  tB: boolean,
  M: number,
  N: number,
  K: number,
  cDtype: DType,
  beta: number,
  withBias: boolean,
): number {
  const a = zeros([M * K], "bf16"), b = zeros([K * N], "bf16"), c = zeros([M * N], cDtype);
  const bias = withBias ? zeros([N], "bf16") : null;
  const call = () =>
    lib.check(
      lib.sym.dn_matmul(
        dtypeWithGrad("bf16", cDtype),
        tA ? 1 : 0,
        tB ? 1 : 0,
        BigInt(M),
        BigInt(N),
        BigInt(K),
        1,
        a.ptr,
        BigInt(tA ? M : K),
        0n,
        b.ptr,
        BigInt(tB ? K : N),
        0n,
        beta,
        c.ptr,
        BigInt(N),
        0n,
        bias ? bias.ptr : null,
        1n,
      ),
      "dn_matmul",
    );
  call();
  sync();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) call();
  sync();
  const ms = (performance.now() - t0) / reps;
  for (const t of [a, b, c, bias]) t?.dispose();
  return ms;
}

const shapes: [string, number, number, number][] = [
  ["qkv", 2304, 768, 12],
  ["attn proj", 768, 768, 12],
  ["fc", 3072, 768, 12],
  ["fc proj", 768, 3072, 12],
  ["lm head", 50257, 768, 1],
];
let total = 0;
console.log(`# ${dev.info()}\n# ${R} rows, bf16 inputs, fp32 accumulation, ${reps} reps`);
for (const [name, out, inp, count] of shapes) {
  const bias = name !== "lm head";
  const fwd = time(false, true, R, out, inp, "bf16", 0, bias);
  const fwdNoBias = time(false, true, R, out, inp, "bf16", 0, false);
  const dgrad = time(false, false, R, inp, out, "bf16", 0, false);
  const wgrad = time(true, false, out, inp, R, "f32", 1, false);
  const tf = (ms: number) => ((2 * R * out * inp) / (ms * 1e-3) / 1e12).toFixed(0);
  console.log(
    `${name.padEnd(10)} (${out}x${inp}) x${count}: fwd ${fwd.toFixed(3)} ms ${tf(fwd)} TF/s ` +
      `(no bias ${fwdNoBias.toFixed(3)} ms), ` +
      `dgrad ${dgrad.toFixed(3)} ms ${tf(dgrad)} TF/s, wgrad ${wgrad.toFixed(3)} ms ${
        tf(wgrad)
      } TF/s`,
  );
  total += count * (fwd + dgrad + wgrad);
}
console.log(`GEMM total per step ${total.toFixed(1)} ms`);
