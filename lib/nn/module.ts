/**
 * Module: named parameters, child modules, a state dict, and train/eval mode.
 *
 * Parameters are declared as placeholders (`this.param(...)`) while a model is built,
 * then {@linkcode FlatParameters} lays them out in one flat buffer (and one flat
 * gradient buffer) and binds each to a view: optimizers, gradient clipping,
 * data-parallel buckets and checkpoints then work on slices, not copies.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { hashString } from "../random.ts";
import { displayBundle, JUPYTER_DISPLAY, type MimeBundle } from "../display_registry.ts";
import { type DType, DTYPE_CODE, Tensor } from "../tensor.ts";

/** How a parameter starts. */
export type Init =
  /** N(0, std²); with `rows`, only the first rows are drawn and the rest stay zero (vocabulary padding) */
  | { kind: "normal"; std: number; rows?: number }
  | { kind: "zeros" }
  | { kind: "ones" };

/** A parameter's declaration. */
export interface ParamSpec {
  /** Full dotted name, e.g. "h.0.attn.qkv.weight". */
  name: string;
  /** The parameter. */
  tensor: Tensor;
  /** How it is initialised. */
  init: Init;
  /** Whether AdamW decays it: matrices yes, biases and norm gains no. */
  weightDecay: boolean;
}

const inits = new WeakMap<Tensor, Init>();

/** Base class of every layer. */
export abstract class Module {
  #params = new Map<string, Tensor>();
  #children = new Map<string, Module>();
  /** False in eval mode: dropout is off. */
  training = true;

  /** Declares a parameter of this module. */
  protected param(
    name: string,
    shape: number[],
    init: Init,
    device: Device,
    dtype: DType = "f32",
  ): Tensor {
    if (this.#params.has(name)) throw new DenotronError(`parameter '${name}' declared twice`);
    const t = Tensor.placeholder(shape, dtype, device, true, name);
    inits.set(t, init);
    this.#params.set(name, t);
    return t;
  }

  /** Registers a child module under `name`. */
  protected child<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** Every parameter with its dotted name, each tensor once, in declaration order. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const walk = (m: Module, p: string) => {
      for (const [n, t] of m.#params) {
        if (!seen.has(t)) {
          seen.add(t);
          out.push([p + n, t]);
        }
      }
      for (const [n, c] of m.#children) walk(c, `${p}${n}.`);
    };
    walk(this, prefix);
    return out;
  }

  /** The parameters' declarations (with their initialisers). */
  paramSpecs(): ParamSpec[] {
    return this.namedParameters().map(([name, tensor]) => ({
      name,
      tensor,
      init: inits.get(tensor) ?? { kind: "zeros" },
      weightDecay: tensor.ndim >= 2,
    }));
  }

  /** Total number of parameter elements. */
  numParameters(): number {
    return this.namedParameters().reduce((s, [, t]) => s + t.numel, 0);
  }

  /** Name → parameter tensor (views; not copies). */
  stateDict(): Record<string, Tensor> {
    return Object.fromEntries(this.namedParameters());
  }

  /**
   * Copies values into the parameters. Every parameter must be present with its exact
   * shape; extra or missing names are errors that list them.
   */
  loadStateDict(
    state: Record<string, { shape: readonly number[]; data: Float32Array }>,
    source = "state dict",
  ): void {
    const params = this.namedParameters();
    const names = new Set(params.map(([n]) => n));
    const missing = params.map(([n]) => n).filter((n) => !(n in state));
    const extra = Object.keys(state).filter((n) => !names.has(n));
    if (missing.length || extra.length) {
      throw new DenotronError(
        `${source} does not fit this model: ` +
          [
            missing.length ? `missing ${missing.join(", ")}` : "",
            extra.length ? `unexpected ${extra.join(", ")}` : "",
          ]
            .filter(Boolean).join("; "),
      );
    }
    for (const [name, t] of params) {
      const s = state[name];
      if (s.shape.length !== t.ndim || s.shape.some((d, i) => d !== t.shape[i])) {
        throw new DenotronError(
          `${source}: tensor '${name}' has shape ${fmtShape(s.shape)}, the model expects ${
            fmtShape(t.shape)
          }`,
        );
      }
      if (s.data.length !== t.numel) {
        throw new DenotronError(
          `${source}: tensor '${name}' has ${s.data.length} values for shape ${fmtShape(t.shape)}`,
        );
      }
    }
    for (const [name, t] of params) t.copyFromHost(state[name].data);
  }

  /** Switches this module and its children to training mode (dropout on). */
  train(on = true): this {
    this.training = on;
    for (const c of this.#children.values()) c.train(on);
    return this;
  }

  /** Switches to evaluation mode (dropout off). */
  eval(): this {
    return this.train(false);
  }

  /** A tree of the module's children and parameter shapes. */
  toString(): string {
    const lines: string[] = [];
    const walk = (m: Module, name: string, depth: number) => {
      const own = [...m.#params].map(([n, t]) => `${n}${fmtShape(t.shape)}`).join(" ");
      lines.push(`${"  ".repeat(depth)}${name}: ${m.constructor.name}${own ? ` ${own}` : ""}`);
      for (const [n, c] of m.#children) walk(c, n, depth + 1);
    };
    walk(this, "model", 0);
    return `${lines.join("\n")}\n(${this.numParameters().toLocaleString("en-US")} parameters)`;
  }

  /** Prints the module tree. */
  [Symbol.for("Deno.customInspect")](): string {
    return this.toString();
  }

  /**
   * The module's Jupyter MIME bundle: the formatter lib/notebook registers (a table of
   * its parameters), or the module tree as text without it.
   */
  [JUPYTER_DISPLAY](): MimeBundle {
    return displayBundle(this);
  }
}

/**
 * One flat buffer holding every parameter of a model, and one for their gradients.
 * Each parameter becomes a view of the first, its `.grad` a view of the second.
 *
 * Mixed precision: with bf16 or f16 parameters the gradient buffer is fp32 (Megatron's
 * "main grads"): backward kernels accumulate straight into it, so micro-batches add up
 * in fp32 and no 16-bit gradient is ever stored.
 */
export class FlatParameters {
  /** All parameter values, concatenated in declaration order. */
  readonly data: Tensor;
  /** All gradients, in the same layout. */
  readonly grad: Tensor;
  /** The parameters, with their offsets into the flat buffers. */
  readonly entries: (ParamSpec & { offset: number })[];

  /**
   * Lays out, allocates, binds and initialises the parameters of `model`.
   *
   * @param model a module whose parameters are still placeholders
   * @param device where the buffers live
   * @param seed each parameter is drawn from stream hash(name) ^ seed, so its values do
   *   not depend on the order of declaration or on how it is later split
   */
  constructor(model: Module, device: Device, seed: number) {
    const specs = model.paramSpecs();
    let offset = 0;
    this.entries = specs.map((s) => {
      const e = { ...s, offset };
      // Keep every parameter 64-byte aligned, as the kernels' vector loads prefer.
      offset += Math.ceil(s.tensor.numel / 16) * 16;
      return e;
    });
    const dtype = specs[0]?.tensor.dtype ?? "f32";
    const mixed = specs.find((s) => s.tensor.dtype !== dtype);
    if (mixed) {
      throw new DenotronError(
        `FlatParameters: '${mixed.name}' is ${mixed.tensor.dtype} but the first parameter is ${dtype}; ` +
          `a model's parameters share one dtype`,
      );
    }
    // Zeroed, so the alignment gaps between parameters hold no stale memory.
    this.data = Tensor.zeros([offset], { device, dtype });
    this.grad = Tensor.zeros([offset], { device, dtype: "f32" });
    const lib = device.lib;
    for (const e of this.entries) {
      e.tensor.bindTo(this.data, e.offset);
      const g = Tensor.placeholder(e.tensor.shape, "f32", device, false);
      g.bindTo(this.grad, e.offset);
      e.tensor.grad = g;
      e.tensor.name = e.name;
      const t = e.tensor;
      if (e.init.kind === "normal") {
        const stream = (hashString(e.name) ^ seed) >>> 0;
        // the same draws as an unpadded tensor: element i from counter i of the stream
        const rows = Math.min(e.init.rows ?? t.shape[0] ?? 1, t.shape[0] ?? 1);
        const drawn = t.ndim === 0 ? 1 : rows * (t.numel / t.shape[0]);
        lib.check(
          lib.sym.dn_fill_normal(
            DTYPE_CODE[t.dtype],
            t.ptr,
            BigInt(drawn),
            0,
            e.init.std,
            BigInt(stream),
            0n,
          ),
          `initialising ${e.name}`,
        );
      } else {
        t.fill_(e.init.kind === "ones" ? 1 : 0);
      }
    }
  }

  /** Sets every gradient to zero (one call over the flat buffer). */
  zeroGrad(): void {
    this.grad.zero_();
  }

  /** Frees both buffers (the parameter views become unusable). */
  dispose(): void {
    for (const e of this.entries) {
      e.tensor.grad?.dispose();
      e.tensor.dispose();
    }
    this.data.dispose();
    this.grad.dispose();
  }
}
