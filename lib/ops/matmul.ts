/**
 * defines: linear, linearActivation, linearGelu, matmul — forward and backward, through
 * dn_matmul (and dn_linear_act_forward).
 *
 * @module
 */
import { gradOf, needsGrad, record, writeGrad } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { type Activation, activationBackward, activationCode } from "./activation.ts";
import {
  big,
  dtypeWithGrad,
  expectSameDeviceAndDtype,
  expectShape,
  expectTensor,
} from "./check.ts";

const FLOAT = ["f32", "bf16", "f16"] as const;

interface Gemm {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  a: Tensor;
  lda: number;
  strideA: number;
  b: Tensor;
  ldb: number;
  strideB: number;
  beta: number;
  c: Tensor;
  ldc: number;
  strideC: number;
  bias?: Tensor | null;
  batch?: number;
}

/**
 * One dn_matmul call: C_b = op(A_b) op(B_b) + beta C_b (+ bias). C may be an fp32 main
 * gradient while A and B are 16-bit.
 */
function gemm(g: Gemm): void {
  const lib = g.c.device.lib;
  lib.check(
    lib.sym.dn_matmul(
      dtypeWithGrad(g.a.dtype, g.c.dtype),
      g.transA ? 1 : 0,
      g.transB ? 1 : 0,
      ...big(g.M, g.N, g.K),
      1,
      g.a.ptr,
      ...big(g.lda, g.strideA),
      g.b.ptr,
      ...big(g.ldb, g.strideB),
      g.beta,
      g.c.ptr,
      ...big(g.ldc, g.strideC),
      g.bias ? g.bias.ptr : null,
      BigInt(g.batch ?? 1),
    ),
    "matmul",
  );
}

/**
 * y = x Wᵀ + b, the layer of every projection.
 *
 * @param x input (..., in)
 * @param weight (out, in), the PyTorch/Megatron layout
 * @param bias (out) or null
 * @returns (..., out)
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const op = "linear";
  const [nOut, nIn] = linearShapes(op, x, weight, bias);
  const M = x.numel / nIn;
  const out = Tensor.empty([...x.shape.slice(0, -1), nOut], { dtype: x.dtype, device: x.device });
  gemm({
    transA: false,
    transB: true,
    M,
    N: nOut,
    K: nIn,
    a: x,
    lda: nIn,
    strideA: 0,
    b: weight,
    ldb: nIn,
    strideB: 0,
    beta: 0,
    c: out,
    ldc: nOut,
    strideC: 0,
    bias,
  });
  return record(out, {
    name: op,
    inputs: bias ? [x, weight, bias] : [x, weight],
    backward(g) {
      linearBackward(g, x, weight, M);
      if (bias && needsGrad(bias)) {
        const lib = g.device.lib;
        const db = gradOf(bias);
        lib.check(
          lib.sym.dn_bias_backward(
            dtypeWithGrad(g.dtype, db.dtype),
            db.ptr,
            g.ptr,
            ...big(M, nOut),
          ),
          "linear backward (bias)",
        );
      }
    },
  });
}

/** The checks of {@linkcode linear} and {@linkcode linearActivation}; returns (out, in). */
function linearShapes(
  op: string,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null | undefined,
): [number, number] {
  expectTensor(op, "x", x, FLOAT);
  expectTensor(op, "weight", weight, FLOAT);
  if (bias) expectTensor(op, "bias", bias, FLOAT);
  expectSameDeviceAndDtype(op, { x, weight, bias });
  if (weight.ndim !== 2 || x.ndim < 1) {
    throw new DenotronError(
      `${op}: weight must be (out, in), got ${fmtShape(weight.shape)}; x ${fmtShape(x.shape)}`,
    );
  }
  const [nOut, nIn] = weight.shape;
  if (x.shape[x.ndim - 1] !== nIn) {
    throw new DenotronError(
      `${op}: x ${fmtShape(x.shape)} has last dimension ${x.shape[x.ndim - 1]} but weight ${
        fmtShape(weight.shape)
      } expects ${nIn}`,
    );
  }
  if (bias) expectShape(op, "bias", bias, [nOut], "one per output feature");
  return [nOut, nIn];
}

/**
 * A gradient GEMM into `t`'s gradient: a fresh gradient is overwritten (beta 0: no zeroing
 * pass, and the GEMM does not read it), an existing one is added into (beta 1).
 */
function gemmIntoGrad(t: Tensor, g: Omit<Gemm, "c" | "beta">): void {
  writeGrad(t, (c, accumulate) => gemm({ ...g, c, beta: accumulate ? 1 : 0 }));
}

/** dx += g W and dW += gᵀ x for y = x Wᵀ over M rows (the bias is the caller's). */
function linearBackward(g: Tensor, x: Tensor, weight: Tensor, M: number): void {
  const [nOut, nIn] = weight.shape;
  if (needsGrad(x)) {
    // dx(M,in) += g(M,out) @ W(out,in)
    gemmIntoGrad(x, {
      transA: false,
      transB: false,
      M,
      N: nIn,
      K: nOut,
      a: g,
      lda: nOut,
      strideA: 0,
      b: weight,
      ldb: nIn,
      strideB: 0,
      ldc: nIn,
      strideC: 0,
    });
  }
  if (needsGrad(weight)) {
    // dW(out,in) += gᵀ(out,M) @ x(M,in)
    gemm({
      transA: true,
      transB: false,
      M: nOut,
      N: nIn,
      K: M,
      a: g,
      lda: nOut,
      strideA: 0,
      b: x,
      ldb: nIn,
      strideB: 0,
      beta: 1,
      c: gradOf(weight),
      ldc: nIn,
      strideC: 0,
    });
  }
}

/**
 * act(x Wᵀ + b) in one native call (dn_linear_act_forward: on CUDA with cuBLASLt, the tanh
 * GELU is one GEMM with the GELU epilogue). Keeps the activation's argument for backward,
 * which forms its gradient once and feeds both the bias gradient and the two GEMMs.
 *
 * @param x input (..., in)
 * @param weight (out, in)
 * @param bias (out) or null
 * @param act the activation (see {@linkcode Activation})
 * @returns (..., out)
 */
export function linearActivation(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null | undefined,
  act: Activation,
): Tensor {
  return linearActivationAs("linearActivation", x, weight, bias, act);
}

/**
 * gelu(x Wᵀ + b) with GPT-2's tanh GELU: {@linkcode linearActivation} with "gelu-tanh".
 *
 * @param x input (..., in)
 * @param weight (out, in)
 * @param bias (out) or null
 * @returns (..., out)
 */
export function linearGelu(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return linearActivationAs("linearGelu", x, weight, bias, "gelu-tanh");
}

/** {@linkcode linearActivation}, its errors naming `op`. */
function linearActivationAs(
  op: string,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null | undefined,
  act: Activation,
): Tensor {
  const code = activationCode(op, act);
  const [nOut, nIn] = linearShapes(op, x, weight, bias);
  const M = x.numel / nIn;
  const shape = [...x.shape.slice(0, -1), nOut];
  const out = Tensor.empty(shape, { dtype: x.dtype, device: x.device });
  if (M === 0) return out;
  const pre = Tensor.empty(shape, { dtype: x.dtype, device: x.device });
  const lib = x.device.lib;
  lib.check(
    lib.sym.dn_linear_act_forward(
      DTYPE_CODE[x.dtype],
      code,
      out.ptr,
      pre.ptr,
      x.ptr,
      weight.ptr,
      bias ? bias.ptr : null,
      ...big(M, nOut, nIn),
    ),
    op,
  );
  const result = record(out, {
    name: op,
    inputs: bias ? [x, weight, bias] : [x, weight],
    backward(g) {
      // dpre = g · act'(pre) (written, not added: no zeroing), and the bias gradient as
      // its column sums, in one pass
      const dpre = Tensor.empty(shape, { dtype: x.dtype, device: x.device });
      const db = bias && needsGrad(bias) ? gradOf(bias) : null;
      activationBackward(act, g, pre, null, dpre, db, false, `${op} backward`);
      linearBackward(dpre, x, weight, M);
      dpre.dispose();
    },
  });
  if (!result.gradFn) pre.dispose();
  return result;
}

/** Options of {@linkcode matmul}. */
export interface MatmulOptions {
  /** a is stored transposed: (..., K, M). @default false */
  transA?: boolean;
  /** b is stored transposed: (..., N, K). @default false */
  transB?: boolean;
}

/**
 * Batched matrix product op(a) @ op(b). a is (M,K) or (batch,M,K); b is (K,N) or
 * (batch,K,N) (a 2-D b is shared by every batch). Transposes describe how the operands
 * are stored.
 *
 * @returns (M,N) or (batch,M,N)
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const op = "matmul";
  expectTensor(op, "a", a, FLOAT);
  expectTensor(op, "b", b, FLOAT);
  expectSameDeviceAndDtype(op, { a, b });
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  if (a.ndim < 2 || a.ndim > 3 || b.ndim < 2 || b.ndim > 3) {
    throw new DenotronError(
      `${op}: operands must be 2-D or 3-D, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
    );
  }
  const batch = a.ndim === 3 ? a.shape[0] : 1;
  if (b.ndim === 3 && (a.ndim !== 3 || b.shape[0] !== batch)) {
    throw new DenotronError(
      `${op}: batch sizes of ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`,
    );
  }
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const M = transA ? ac : ar, K = transA ? ar : ac;
  const Kb = transB ? bc : br, N = transB ? br : bc;
  if (K !== Kb) {
    throw new DenotronError(
      `${op}: inner dimensions differ: op(a) is ${M}x${K} (a ${fmtShape(a.shape)}${
        transA ? " transposed" : ""
      }), op(b) is ${Kb}x${N} (b ${fmtShape(b.shape)}${transB ? " transposed" : ""})`,
    );
  }
  const strideA = M * K, strideB = b.ndim === 3 ? K * N : 0;
  const out = Tensor.empty(a.ndim === 3 ? [batch, M, N] : [M, N], {
    dtype: a.dtype,
    device: a.device,
  });
  gemm({
    transA,
    transB,
    M,
    N,
    K,
    a,
    lda: ac,
    strideA,
    b,
    ldb: bc,
    strideB,
    beta: 0,
    c: out,
    ldc: N,
    strideC: M * N,
    batch,
  });
  return record(out, {
    name: op,
    inputs: [a, b],
    backward(g) {
      if (needsGrad(a)) {
        if (!transA) { // dA(M,K) += g(M,N) op(B)ᵀ
          gemmIntoGrad(a, {
            transA: false,
            transB: !transB,
            M,
            N: K,
            K: N,
            a: g,
            lda: N,
            strideA: M * N,
            b,
            ldb: bc,
            strideB,
            ldc: K,
            strideC: strideA,
            batch,
          });
        } else { // dA(K,M) += op(B) gᵀ
          gemmIntoGrad(a, {
            transA: transB,
            transB: true,
            M: K,
            N: M,
            K: N,
            a: b,
            lda: bc,
            strideA: strideB,
            b: g,
            ldb: N,
            strideB: M * N,
            ldc: M,
            strideC: strideA,
            batch,
          });
        }
      }
      if (needsGrad(b)) {
        // A b shared by every batch has one gradient that all batches add into, in order:
        // it cannot be overwritten by the first.
        const shared = strideB === 0 && batch > 1;
        const into = (spec: Omit<Gemm, "c" | "beta">) =>
          shared ? gemm({ ...spec, c: gradOf(b), beta: 1 }) : gemmIntoGrad(b, spec);
        if (!transB) { // dB(K,N) += op(A)ᵀ g
          into({
            transA: !transA,
            transB: false,
            M: K,
            N,
            K: M,
            a,
            lda: ac,
            strideA,
            b: g,
            ldb: N,
            strideB: M * N,
            ldc: N,
            strideC: strideB,
            batch,
          });
        } else { // dB(N,K) += gᵀ op(A)
          into({
            transA: true,
            transB: transA,
            M: N,
            N: K,
            K: M,
            a: g,
            lda: N,
            strideA: M * N,
            b: a,
            ldb: ac,
            strideB: strideA,
            ldc: K,
            strideC: strideB,
            batch,
          });
        }
      }
    },
  });
}
