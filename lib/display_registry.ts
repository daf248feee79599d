/**
 * Rich display without an upward import: tensors and modules ask this registry for
 * their Jupyter MIME bundle, and lib/notebook registers its formatters when it is
 * imported (mod.ts imports it, so the public API displays richly). Without a
 * registered formatter a value shows as its text form.
 *
 * defines: MimeBundle, JUPYTER_DISPLAY, registerDisplay, displayBundle
 *
 * @module
 */

/** A value's representations by MIME type; `text/plain` is always present. */
export interface MimeBundle {
  /** The fallback shown by terminals and text-only front ends. */
  "text/plain": string;
  /** An HTML fragment. */
  "text/html"?: string;
  /** An SVG document. */
  "image/svg+xml"?: string;
}

/** The symbol the Deno Jupyter kernel looks for on a cell's value. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display") as never;

/** Formatters by the prototype of the class they were registered for. */
const formatters = new Map<object, (value: never) => MimeBundle>();

/**
 * Sets how instances of `cls` (and of its subclasses, unless they have their own)
 * display in Jupyter; a later call for the same class replaces the formatter.
 *
 * @param cls the class (any constructor: abstract, or private as Tensor's is)
 * @param format the instance's MIME bundle
 * @example
 * ```ts
 * import { displayBundle, registerDisplay } from "./display_registry.ts";
 * class Point {
 *   constructor(readonly x: number, readonly y: number) {}
 *   toString(): string {
 *     return `(${this.x}, ${this.y})`;
 *   }
 * }
 * registerDisplay(Point, (p) => ({ "text/plain": String(p), "text/html": `<b>${p}</b>` }));
 * displayBundle(new Point(1, 2))["text/html"]; // "<b>(1, 2)</b>"
 * ```
 */
export function registerDisplay<T extends object>(
  cls: { readonly prototype: T },
  format: (value: T) => MimeBundle,
): void {
  formatters.set(cls.prototype, format);
}

/**
 * The MIME bundle of `value`: the formatter registered for its class or the nearest
 * ancestor class, else `{ "text/plain": String(value) }`.
 *
 * @param value any object
 * @returns its representations
 * @example
 * ```ts
 * import { displayBundle } from "./display_registry.ts";
 * displayBundle(new Map()); // { "text/plain": "[object Map]" } (nothing registered)
 * ```
 */
export function displayBundle(value: object): MimeBundle {
  for (let p = Object.getPrototypeOf(value); p !== null; p = Object.getPrototypeOf(p)) {
    const format = formatters.get(p) as ((v: object) => MimeBundle) | undefined;
    if (format) return format(value);
  }
  return { "text/plain": String(value) };
}
