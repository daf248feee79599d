/**
 * Reverse-mode autograd over coarse, fused ops. Each op that sees an input with
 * `requiresGrad` records a {@linkcode Node} on its output; `backward()` walks those
 * links in reverse topological order. There is no global tape: the graph lives on
 * the tensors and goes away with them.
 *
 * Gradients accumulate: the backward kernels add into `grad`, so calling backward
 * over several micro-batches sums their gradients until the optimizer zeroes them.
 *
 * @module
 */
import { DenotronError, fmtShape } from "./errors.ts";
import { DTYPE_CODE, keep, type Node, registerBackward, Tensor } from "./tensor.ts";

export type { Node };

let noGradDepth = 0;

/** True when ops should record nodes (outside {@linkcode noGrad}). */
export function isGradEnabled(): boolean {
  return noGradDepth === 0;
}

/**
 * Runs fn without recording the graph (evaluation, generation).
 *
 * @example
 * ```ts
 * import { noGrad, isGradEnabled } from "./autograd.ts";
 * noGrad(() => console.log(isGradEnabled())); // false
 * ```
 */
export function noGrad<T>(fn: () => T): T {
  noGradDepth++;
  try {
    return fn();
  } finally {
    noGradDepth--;
  }
}

/** True when `t` takes part in gradient computation. */
export function needsGrad(t: Tensor | null | undefined): boolean {
  return !!t && t.requiresGrad;
}

/**
 * Records `node` as the producer of `out` when grad mode is on and some input needs a
 * gradient.
 *
 * @returns out
 */
export function record(out: Tensor, node: Node): Tensor {
  if (isGradEnabled() && node.inputs.some(needsGrad)) {
    out.requiresGrad = true;
    out.gradFn = node;
  }
  return out;
}

/**
 * The gradient buffer of `t`, created zeroed on first use. Backward kernels add
 * into it. It belongs to `t`, not to any tidy scope: a leaf's gradient must outlive
 * the step, and backward() frees intermediate ones itself.
 */
export function gradOf(t: Tensor): Tensor {
  if (!t.grad) {
    t.grad = keep(Tensor.zeros(t.shape, { dtype: t.dtype, device: t.device }));
  }
  return t.grad;
}

/**
 * Writes `t`'s gradient through `write`, skipping the zeroing of a fresh buffer: when `t`
 * has no gradient yet, `write` gets an uninitialised buffer and `accumulate` false, and
 * must overwrite every element; otherwise it gets the existing gradient and `accumulate`
 * true. Used by the backward kernels that can do either (cross-entropy, GELU, the GEMMs of
 * linear and matmul), so that a large fresh gradient costs no zeroing pass and no read.
 */
export function writeGrad(t: Tensor, write: (grad: Tensor, accumulate: boolean) => void): void {
  if (t.grad) {
    write(t.grad, true);
    return;
  }
  const fresh = keep(Tensor.empty(t.shape, { dtype: t.dtype, device: t.device }));
  try {
    write(fresh, false);
  } catch (e) {
    fresh.dispose();
    throw e;
  }
  t.grad = fresh;
}

const gradReadyHooks = new Set<(leaf: Tensor) => void>();

/**
 * Calls `hook(leaf)` during each {@linkcode backward} as soon as a leaf's gradient is
 * complete, i.e. every op that read the leaf has added its part. Data parallelism starts
 * a bucket's all-reduce there, while backward goes on with earlier layers.
 *
 * @param hook called once per leaf that needs a gradient, per backward
 * @returns a function that removes the hook
 */
export function onGradReady(hook: (leaf: Tensor) => void): () => void {
  gradReadyHooks.add(hook);
  return () => gradReadyHooks.delete(hook);
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: models with hundreds of layers would overflow a recursive one.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const next = inputs[i];
      if (needsGrad(next) && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order.reverse();
}

/**
 * Backpropagates from `root`. With no `grad`, root must hold one element and its
 * gradient is 1; a pipeline stage passes the gradient received from the next stage.
 * Leaf gradients accumulate into `.grad`; intermediate gradients are freed as soon as
 * they have been used, and the graph is released.
 *
 * @param root the tensor to differentiate (usually the loss)
 * @param grad d(objective)/d(root), same shape as root
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) {
    throw new DenotronError(
      `backward: ${root.describe()} does not require grad (was it computed under noGrad, or from inputs without requiresGrad?)`,
    );
  }
  if (grad) {
    if (grad.numel !== root.numel || grad.dtype !== root.dtype) {
      throw new DenotronError(
        `backward: gradient ${grad.dtype}${fmtShape(grad.shape)} does not match ${root.describe()}`,
      );
    }
  } else if (root.numel !== 1) {
    throw new DenotronError(
      `backward: ${root.describe()} is not a scalar; pass the incoming gradient explicitly`,
    );
  }
  const g = gradOf(root);
  const lib = g.device.lib;
  if (grad) {
    lib.check(
      lib.sym.dn_axpby(DTYPE_CODE[g.dtype], g.ptr, 1, grad.ptr, 1, BigInt(g.numel)),
      "backward",
    );
  } else {
    const one = Tensor.full([1], 1, { device: g.device });
    lib.check(lib.sym.dn_axpby(DTYPE_CODE[g.dtype], g.ptr, 1, one.ptr, 1, 1n), "backward");
    one.dispose();
  }
  for (const t of topoOrder(root)) {
    const node = t.gradFn;
    if (!node) {
      // A leaf comes after every op that reads it in this order: its gradient is final.
      for (const hook of gradReadyHooks) hook(t);
      continue; // its gradient stays
    }
    if (t.grad) node.backward(t.grad);
    t.gradFn = null;
    t.grad?.dispose();
    t.grad = null;
  }
}

registerBackward(backward);
