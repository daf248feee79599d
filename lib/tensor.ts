/**
 * Tensor = (storage handle, dtype, shape, device). Storage is native memory from the
 * device's caching allocator, shared by views and released when its last tensor is
 * disposed. Release is explicit: `dispose()`, `using`, or {@linkcode tidy}; a
 * FinalizationRegistry frees what a program forgot, as a backstop only.
 *
 * @module
 */
import { type Device, device as getDevice } from "./device.ts";
import { DenotronError, fmtShape } from "./errors.ts";
import { displayBundle, JUPYTER_DISPLAY, type MimeBundle } from "./display_registry.ts";

/** Element types. Index tensors (tokens, targets) are i32. */
export type DType = "f32" | "bf16" | "f16" | "i32";

/**
 * One recorded op: its inputs and how to push a gradient back to them. Declared here,
 * beside the {@linkcode Tensor.gradFn} that holds it, so that this file needs nothing
 * from lib/autograd.ts, which records and walks the nodes.
 */
export interface Node {
  /** The op's name, for messages. */
  readonly name: string;
  /** The tensors the op read (only those that may need a gradient matter). */
  readonly inputs: readonly Tensor[];
  /**
   * Adds this op's input gradients, given the output's gradient. Implementations
   * call `gradOf` (lib/autograd.ts) for each input that `needsGrad`.
   */
  backward(gradOutput: Tensor): void;
}

/** The ABI's dtype codes (kernels/include/denotron.h). */
export const DTYPE_CODE: Record<DType, number> = { f32: 0, bf16: 1, f16: 2, i32: 3 };
/** Bytes per element. */
export const DTYPE_BYTES: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4 };

/** Native memory shared by a tensor and its views. */
class Storage {
  readonly device: Device;
  readonly bytes: number;
  ptr: Deno.PointerObject | null;
  refs = 1;

  /** @param label the tensor being made ("Tensor.empty: f32[2, 3]"), for messages */
  constructor(device: Device, bytes: number, label: string) {
    this.device = device;
    this.bytes = bytes;
    const out = new BigUint64Array(1);
    const status = device.lib.sym.dn_malloc(BigInt(bytes), out);
    if (status === DN_ERR_OOM) {
      throw new DenotronError(
        `${label}: ${bytes} bytes do not fit in the memory of ${device.name} ` +
          `(a smaller model, batch or sequence length needs less)`,
      );
    }
    device.lib.check(status, `${label}: allocating ${bytes} bytes`);
    this.ptr = Deno.UnsafePointer.create(out[0]);
  }

  release(): void {
    if (--this.refs > 0 || this.ptr === null) return;
    this.device.lib.check(this.device.lib.sym.dn_free(this.ptr), "dn_free");
    this.ptr = null;
  }
}

const backstop = new FinalizationRegistry<Storage>((s) => s.release());

/** Tensors created inside each open {@linkcode tidy} scope, innermost last. */
const scopes: Set<Tensor>[] = [];

/**
 * The most bytes one tensor may hold (2^46 = 64 TiB): beyond any device, and far enough
 * below 2^53 that every element and byte count under it is an exact integer. The native
 * allocators refuse more too (DN_MAX_BYTES in kernels/include/denotron.h).
 */
export const MAX_TENSOR_BYTES = 2 ** 46;

/** dn_status DN_ERR_OOM: the allocator could not get the memory. */
const DN_ERR_OOM = 2;

/**
 * The element count of `shape`, after checking that every dimension is a non-negative
 * safe integer and that the tensor's bytes stay within {@linkcode MAX_TENSOR_BYTES}. The
 * running product is compared with the limit at each step, so it is exact whenever it
 * passes: a shape can never wrap around to a small allocation.
 *
 * @param shape the dimensions to check
 * @param dtype the element type (its size sets the byte count)
 * @param what the op and, when known, the tensor's name, for the message
 * @returns the product of the dimensions
 * @example
 * ```ts
 * import { checkedNumel } from "./tensor.ts";
 * checkedNumel([2, 3], "f32", "example"); // 6
 * ```
 */
export function checkedNumel(shape: readonly number[], dtype: DType, what: string): number {
  if (!Array.isArray(shape)) {
    throw new DenotronError(`${what}: shape must be an array of integers, got ${String(shape)}`);
  }
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new DenotronError(
        `${what}: shape ${fmtShape(shape)} has a dimension (${
          String(d)
        }) that is not a non-negative integer`,
      );
    }
  }
  if (shape.includes(0)) return 0;
  const maxNumel = MAX_TENSOR_BYTES / DTYPE_BYTES[dtype];
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > maxNumel) {
      // Exact in BigInt when every dimension is; a dimension past 2^53 is already rounded.
      const bytes = shape.every(Number.isSafeInteger)
        ? `${shape.reduce((p, x) => p * BigInt(x), BigInt(DTYPE_BYTES[dtype]))} bytes`
        : "more than 2^53 bytes";
      throw new DenotronError(
        `${what}: shape ${fmtShape(shape)} of ${dtype} needs ${bytes}, more than one ` +
          `tensor may hold (2^46 bytes = 64 TiB)`,
      );
    }
  }
  return n;
}

/** The op and, when known, the tensor's name, for messages: "Tensor.empty of 'wte'". */
function named(what: string, name?: string): string {
  return name ? `${what} of '${name}'` : what;
}

/** An element offset must be a non-negative safe integer (the caller checks the end). */
function checkOffset(offset: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new DenotronError(
      `${what}: element offset ${String(offset)} is not an integer in [0, 2^53)`,
    );
  }
}

/** Options for creating a tensor. */
export interface TensorOptions {
  /** Element type. @default "f32" */
  dtype?: DType;
  /** Where the storage lives. @default device() */
  device?: Device;
  /** Whether backward() should compute a gradient for this tensor. @default false */
  requiresGrad?: boolean;
  /** A name for messages and state dicts ({@linkcode Tensor.name}). @default undefined */
  name?: string;
}

/**
 * An n-dimensional array in native memory.
 *
 * @example
 * ```ts
 * import { Tensor } from "./tensor.ts";
 * using t = Tensor.fromArray([1, 2, 3, 4], [2, 2]);
 * console.log(t.toArray()); // Float32Array [1, 2, 3, 4]
 * ```
 */
export class Tensor {
  /** Size of each dimension. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Elements (product of the shape). */
  readonly numel: number;
  /** Whether backward() computes a gradient for this tensor. */
  requiresGrad: boolean;
  /** The accumulated gradient (leaves) after backward(). */
  grad: Tensor | null = null;
  /** The op that produced this tensor, while the graph is alive. */
  gradFn: Node | null = null;
  /** An optional name, used in messages and state dicts. */
  name?: string;
  #storage: Storage | null;
  #wasDisposed = false;
  #byteOffset: number;
  #ptr: Deno.PointerObject | null = null;
  #device: Device;

  private constructor(
    storage: Storage | null,
    device: Device,
    byteOffset: number,
    shape: readonly number[],
    numel: number,
    dtype: DType,
    requiresGrad: boolean,
  ) {
    this.#storage = storage;
    this.#device = device;
    this.#byteOffset = byteOffset;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.numel = numel;
    this.requiresGrad = requiresGrad;
    if (storage) {
      backstop.register(this, storage, this);
      scopes.at(-1)?.add(this);
    }
  }

  /**
   * An uninitialised tensor. Every constructor comes through here: the shape is checked
   * ({@linkcode checkedNumel}) before anything is allocated.
   */
  static empty(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const dtype = opts.dtype ?? "f32";
    const what = named("Tensor.empty", opts.name);
    const numel = checkedNumel(shape, dtype, what);
    const dev = opts.device ?? getDevice();
    const storage = new Storage(
      dev,
      Math.max(numel * DTYPE_BYTES[dtype], 1),
      `${what}: ${dtype}${fmtShape(shape)}`,
    );
    const t = new Tensor(storage, dev, 0, shape, numel, dtype, opts.requiresGrad ?? false);
    if (opts.name !== undefined) t.name = opts.name;
    return t;
  }

  /** A tensor of zeros. */
  static zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const t = Tensor.empty(shape, opts);
    t.zero_();
    return t;
  }

  /** A tensor filled with `value`. */
  static full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
    const t = Tensor.empty(shape, opts);
    t.fill_(value);
    return t;
  }

  /**
   * Normal(mean, std) values from the counter-based generator: the same (seed, offset)
   * gives the same values on every device and thread count.
   */
  static randn(
    shape: readonly number[],
    opts: TensorOptions & { seed?: number; offset?: number; mean?: number; std?: number } = {},
  ): Tensor {
    const t = Tensor.empty(shape, opts);
    const lib = t.device.lib;
    lib.check(
      lib.sym.dn_fill_normal(
        DTYPE_CODE[t.dtype],
        t.ptr,
        BigInt(t.numel),
        opts.mean ?? 0,
        opts.std ?? 1,
        BigInt(opts.seed ?? 0),
        BigInt(opts.offset ?? 0),
      ),
      "Tensor.randn",
    );
    return t;
  }

  /** Copies host data into a new tensor. i32 tensors take integers. */
  static fromArray(
    data: ArrayLike<number>,
    shape?: readonly number[],
    opts: TensorOptions = {},
  ): Tensor {
    const dtype = opts.dtype ?? (data instanceof Int32Array ? "i32" : "f32");
    const s = shape ?? [data.length];
    const numel = checkedNumel(s, dtype, named("Tensor.fromArray", opts.name));
    if (numel !== data.length) {
      throw new DenotronError(
        `Tensor.fromArray: ${data.length} values do not fill shape ${
          fmtShape(s)
        } (${numel} elements)`,
      );
    }
    if (dtype === "bf16" || dtype === "f16") {
      // Rounded to nearest even by the native cast, like every 16-bit store.
      const wide = Tensor.fromArray(data, s, { ...opts, dtype: "f32", requiresGrad: false });
      const t = wide.cast(dtype);
      wide.dispose();
      t.requiresGrad = opts.requiresGrad ?? false;
      return t;
    }
    const t = Tensor.empty(s, { ...opts, dtype });
    const host = dtype === "i32" ? Int32Array.from(data) : Float32Array.from(data);
    if (dtype === "i32" && !(data instanceof Int32Array)) {
      for (let i = 0; i < data.length; i++) {
        if (!Number.isInteger(data[i]) || host[i] !== data[i]) {
          throw new DenotronError(
            `Tensor.fromArray: value ${data[i]} at index ${i} is not an int32`,
          );
        }
      }
    }
    t.copyFromHost(host);
    return t;
  }

  /**
   * A tensor with no memory yet, bound later by a parameter store; `name` is only for
   * the message of a bad shape. @internal
   */
  static placeholder(
    shape: readonly number[],
    dtype: DType,
    device: Device,
    requiresGrad: boolean,
    name?: string,
  ): Tensor {
    const numel = checkedNumel(shape, dtype, named("parameter", name));
    return new Tensor(null, device, 0, shape, numel, dtype, requiresGrad);
  }

  /** Points a placeholder (or re-points a tensor) at a slice of `base`. @internal */
  bindTo(base: Tensor, elementOffset: number): void {
    checkOffset(elementOffset, "bindTo");
    if (base.dtype !== this.dtype) {
      throw new DenotronError(
        `bindTo: dtype ${this.dtype} does not match the buffer's ${base.dtype}`,
      );
    }
    if (elementOffset + this.numel > base.numel) {
      throw new DenotronError(
        `bindTo: ${this.numel} elements at ${elementOffset} overrun a buffer of ${base.numel}`,
      );
    }
    const storage = base.#storageOrThrow("bindTo");
    storage.refs++;
    if (this.#storage) {
      backstop.unregister(this);
      this.#storage.release();
    }
    this.#storage = storage;
    this.#device = base.#device;
    this.#byteOffset = base.#byteOffset + elementOffset * DTYPE_BYTES[this.dtype];
    this.#ptr = null;
    backstop.register(this, storage, this);
  }

  /** A view of `numel(shape)` elements starting at `elementOffset`, sharing storage. */
  view(shape: readonly number[], elementOffset = 0): Tensor {
    const n = checkedNumel(shape, this.dtype, named("view", this.name));
    checkOffset(elementOffset, "view");
    if (elementOffset + n > this.numel) {
      throw new DenotronError(
        `view: shape ${
          fmtShape(shape)
        } at offset ${elementOffset} does not fit in a tensor of ${this.numel} elements ${
          fmtShape(this.shape)
        }`,
      );
    }
    const storage = this.#storageOrThrow("view");
    storage.refs++;
    return new Tensor(
      storage,
      this.#device,
      this.#byteOffset + elementOffset * DTYPE_BYTES[this.dtype],
      shape,
      n,
      this.dtype,
      false,
    );
  }

  /** The same data with another shape of the same size (a view; no gradient flows). */
  reshape(shape: readonly number[]): Tensor {
    if (
      checkedNumel(shape, this.dtype, named("reshape", this.name)) !== this.numel
    ) {
      throw new DenotronError(`reshape: cannot view ${fmtShape(this.shape)} as ${fmtShape(shape)}`);
    }
    return this.view(shape);
  }

  /** The device holding the storage. */
  get device(): Device {
    return this.#device;
  }

  /** Bytes of data (not counting allocator rounding). */
  get bytes(): number {
    return this.numel * DTYPE_BYTES[this.dtype];
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }

  /** True once dispose() has run (or before a placeholder is bound). */
  get disposed(): boolean {
    return this.#storage === null || this.#storage.ptr === null;
  }

  #storageOrThrow(what: string): Storage {
    if (!this.#storage) {
      throw new DenotronError(
        `${what}: tensor ${this.describe()} ${
          this.#wasDisposed ? "was disposed" : "has no memory yet (an unbound parameter)"
        }`,
      );
    }
    if (this.#storage.ptr === null) {
      throw new DenotronError(`${what}: tensor ${this.describe()} was disposed`);
    }
    return this.#storage;
  }

  /** The native pointer to the first element (valid until dispose). */
  get ptr(): Deno.PointerObject {
    if (this.#ptr && this.#storage?.ptr) return this.#ptr;
    const s = this.#storageOrThrow("ptr");
    this.#ptr = this.#byteOffset === 0
      ? s.ptr!
      : Deno.UnsafePointer.offset(s.ptr!, this.#byteOffset)!;
    return this.#ptr;
  }

  /** The pointer as a number, for the ABI's host arrays of pointers. */
  get address(): bigint {
    return Deno.UnsafePointer.value(this.ptr) as bigint;
  }

  /** Releases this tensor's hold on its storage. Safe to call twice. */
  dispose(): void {
    if (!this.#storage) return;
    backstop.unregister(this);
    const s = this.#storage;
    this.#storage = null;
    this.#wasDisposed = true;
    this.#ptr = null;
    for (const scope of scopes) scope.delete(this);
    s.release();
  }

  /** Frees the storage (for `using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Sets every element to zero, in place. */
  zero_(): this {
    const lib = this.device.lib;
    lib.check(lib.sym.dn_memset_zero(this.ptr, BigInt(this.bytes)), "zero_");
    return this;
  }

  /** Sets every element to `value`, in place. */
  fill_(value: number): this {
    const lib = this.device.lib;
    lib.check(
      lib.sym.dn_fill(DTYPE_CODE[this.dtype], this.ptr, BigInt(this.numel), value),
      "fill_",
    );
    return this;
  }

  /**
   * Copies host values into this tensor (same element count; i32 tensors take an
   * Int32Array, float tensors a Float32Array, rounded for 16-bit tensors).
   */
  copyFromHost(data: Float32Array | Int32Array): this {
    if (data.length !== this.numel) {
      throw new DenotronError(
        `copyFromHost: ${data.length} values for a tensor of ${this.numel} ${fmtShape(this.shape)}`,
      );
    }
    if ((this.dtype === "bf16" || this.dtype === "f16") && data instanceof Float32Array) {
      const wide = Tensor.fromArray(data, this.shape, { device: this.#device });
      const lib = this.device.lib;
      try {
        lib.check(
          lib.sym.dn_cast(DTYPE_CODE[this.dtype], this.ptr, 0, wide.ptr, BigInt(this.numel)),
          "copyFromHost",
        );
      } finally {
        wide.dispose();
      }
      return this;
    }
    const want = this.dtype === "i32" ? Int32Array : Float32Array;
    if (!(data instanceof want)) {
      throw new DenotronError(`copyFromHost: a ${this.dtype} tensor needs a ${want.name}`);
    }
    const lib = this.device.lib;
    lib.check(lib.sym.dn_memcpy_h2d(this.ptr, data, BigInt(this.bytes)), "copyFromHost");
    return this;
  }

  /** Copies another tensor's values into this one (same shape and dtype). */
  copy_(src: Tensor): this {
    if (src.numel !== this.numel || src.dtype !== this.dtype) {
      throw new DenotronError(
        `copy_: source ${src.describe()} does not match destination ${this.describe()}`,
      );
    }
    const lib = this.device.lib;
    lib.check(lib.sym.dn_memcpy_d2d(this.ptr, src.ptr, BigInt(this.bytes)), "copy_");
    return this;
  }

  /**
   * A new tensor holding these values converted to `dtype` (rounded to nearest even when
   * narrowing; inf and NaN kept). Not recorded for autograd.
   *
   * @param dtype a float dtype (or i32 for an i32 tensor)
   * @returns the converted copy
   */
  cast(dtype: DType): Tensor {
    const out = Tensor.empty(this.shape, { dtype, device: this.#device });
    const lib = this.device.lib;
    lib.check(
      lib.sym.dn_cast(
        DTYPE_CODE[dtype],
        out.ptr,
        DTYPE_CODE[this.dtype],
        this.ptr,
        BigInt(this.numel),
      ),
      "cast",
    );
    return out;
  }

  /** A host copy of the values (16-bit tensors come back widened to a Float32Array). */
  toArray(): Float32Array | Int32Array {
    if (this.dtype === "bf16" || this.dtype === "f16") {
      const wide = this.cast("f32");
      try {
        return wide.toArray();
      } finally {
        wide.dispose();
      }
    }
    const out = this.dtype === "i32" ? new Int32Array(this.numel) : new Float32Array(this.numel);
    const lib = this.device.lib;
    lib.check(lib.sym.dn_memcpy_d2h(out, this.ptr, BigInt(this.bytes)), "toArray");
    return out;
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) {
      throw new DenotronError(`item: tensor ${this.describe()} has ${this.numel} elements, not 1`);
    }
    return this.toArray()[0];
  }

  /** Runs backpropagation from this tensor. See {@linkcode backward} in autograd.ts. */
  backward(grad?: Tensor): void {
    backwardImpl!(this, grad);
  }

  /** "f32[2, 3] on cpu" */
  describe(): string {
    return `${this.name ? this.name + " " : ""}${this.dtype}${
      fmtShape(this.shape)
    } on ${this.#device.name}`;
  }

  /** "Tensor(f32[2, 3] on cpu) [values…]": the description and the first eight values. */
  toString(): string {
    const head = `Tensor(${this.describe()}${this.requiresGrad ? ", requiresGrad" : ""}${
      this.gradFn ? `, gradFn=${this.gradFn.name}` : ""
    })`;
    if (this.disposed) return `${head} <disposed>`;
    if (this.dtype !== "f32" && this.dtype !== "i32") {
      const wide = this.cast("f32");
      try {
        return `${wide.toString().replace(/^Tensor\([^)]*\)/, head)}`;
      } finally {
        wide.dispose();
      }
    }
    const n = Math.min(this.numel, 8);
    const out = this.dtype === "i32" ? new Int32Array(n) : new Float32Array(n);
    const lib = this.device.lib;
    lib.check(lib.sym.dn_memcpy_d2h(out, this.ptr, BigInt(n * 4)), "toString");
    const values = Array.from(out, (v) => Number.isInteger(v) ? String(v) : v.toPrecision(4));
    return `${head} [${values.join(", ")}${this.numel > n ? ", …" : ""}]`;
  }

  /** Prints as {@linkcode Tensor.toString}. */
  [Symbol.for("Deno.customInspect")](): string {
    return this.toString();
  }

  /**
   * The tensor's Jupyter MIME bundle: the formatter lib/notebook registers (a card with
   * shape, statistics and a corner of the values), or the text form without it.
   */
  [JUPYTER_DISPLAY](): MimeBundle {
    return displayBundle(this);
  }
}

/** Set by autograd.ts, which imports this module (a cycle broken at call time). */
let backwardImpl: ((t: Tensor, grad?: Tensor) => void) | undefined;
/** @internal */
export function registerBackward(fn: (t: Tensor, grad?: Tensor) => void): void {
  backwardImpl = fn;
}

function collect(value: unknown, into: Set<Tensor>): void {
  if (value instanceof Tensor) into.add(value);
  else if (Array.isArray(value)) { for (const v of value) collect(v, into); }
  else if (
    value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype
  ) {
    for (const v of Object.values(value)) collect(v, into);
  }
}

/**
 * Runs `fn` and disposes every tensor created inside it, except the tensors it
 * returns (directly, in an array or in a plain object) and those passed to
 * {@linkcode keep}. Scopes nest.
 *
 * @param fn the work; must be synchronous
 * @returns what fn returned
 * @example
 * ```ts
 * import { Tensor, tidy } from "./tensor.ts";
 * const kept = tidy(() => {
 *   const a = Tensor.full([4], 2);
 *   return Tensor.full([4], a.item === undefined ? 0 : 3);
 * });
 * console.log(kept.toArray());
 * kept.dispose();
 * ```
 */
export function tidy<T>(fn: () => T): T {
  const { result, scope } = inScope(fn);
  const keepers = new Set<Tensor>();
  collect(result, keepers);
  for (const t of scope) {
    if (keepers.has(t)) scopes.at(-1)?.add(t);
    else t.dispose();
  }
  return result;
}

/**
 * Runs `fn` and returns what it returned with every tensor created inside it that is
 * still alive, none disposed: the caller frees them when their work is done, which need
 * not be the end of a scope (a pipeline frees a micro-batch's forward tensors after that
 * micro-batch's backward). Tensors passed to {@linkcode keep} are not in the list. The
 * listed tensors also stay in the enclosing {@linkcode tidy} scope, so an error before
 * the caller frees them still frees them there; if `fn` throws, they are disposed.
 *
 * @param fn the work; must be synchronous
 * @returns fn's result, and the tensors it created
 * @example
 * ```ts
 * import { Tensor, tracked } from "./tensor.ts";
 * const { result, tensors } = tracked(() => Tensor.full([4], 2));
 * console.log(result.toArray(), tensors.length); // Float32Array [2, 2, 2, 2] 1
 * for (const t of tensors) t.dispose();
 * ```
 */
export function tracked<T>(fn: () => T): { result: T; tensors: Tensor[] } {
  const { result, scope } = inScope(fn);
  for (const t of scope) scopes.at(-1)?.add(t);
  return { result, tensors: [...scope] };
}

/** Runs `fn` in a scope of its own: its result and the tensors it created (freed if it throws). */
function inScope<T>(fn: () => T): { result: T; scope: Set<Tensor> } {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  try {
    return { result: fn(), scope };
  } catch (e) {
    for (const t of scope) t.dispose();
    throw e;
  } finally {
    scopes.pop();
  }
}

/** Takes a tensor out of the enclosing tidy scopes, so they do not dispose it. */
export function keep<T extends Tensor>(t: T): T {
  for (const scope of scopes) scope.delete(t);
  return t;
}
