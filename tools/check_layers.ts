/**
 * `deno task check:layers`: every import under lib/ and ffi/ and in mod.ts points to
 * its own floor or below, and no two parts of the code (folders, or the files placed
 * one by one) import each other through any path.
 *
 * ```sh
 * deno task check:layers          # this repository
 * deno task check:layers DIR      # another tree laid out the same way (the tests use one)
 * ```
 *
 * Prints one line per violation, naming the importing and the imported file, and
 * exits 1 if there is any. The floors are written once, in {@linkcode FLOORS}; the
 * imports are read from the source text (static `import`/`export ... from`, side-effect
 * imports and `import("...")` with a literal specifier; type-only imports count, since
 * they tie the layers as much as the others). Imports inside JSDoc examples are not
 * read: examples are user code.
 *
 * defines: Floor, FLOORS, Exception, TEMPORARY_EXCEPTIONS, Import, importSpecifiers,
 *          readImports, LayerReport, checkLayers
 *
 * @module
 */

import { posix } from "node:path";

/** One floor: the parts of the code on it, each a folder (ending in "/") or a file. */
export interface Floor {
  /** A short name for messages. */
  readonly name: string;
  /** Folders ("lib/nn/") and files ("lib/tensor.ts"), relative to the repository root. */
  readonly parts: readonly string[];
  /** What the floor holds, for readers of this table. */
  readonly holds: string;
}

/**
 * The floors, bottom first. A file may import files on its own floor and below; two
 * parts of one floor may import each other only one way. A file belongs to the most
 * specific part naming it, so a file can be placed apart from its folder.
 */
export const FLOORS: readonly Floor[] = [
  {
    name: "native",
    parts: ["ffi/"],
    holds: "the one mirror of the C ABI; finds, builds and opens the native libraries",
  },
  {
    name: "base",
    parts: [
      "lib/errors.ts",
      "lib/cli_args.ts",
      "lib/device.ts",
      "lib/random.ts",
      "lib/display_registry.ts",
      "lib/key_table.ts",
    ],
    holds: "errors, devices, the counter RNG, the display registry, the config-key table",
  },
  {
    name: "host",
    parts: ["lib/io/", "lib/data/", "lib/plan/"],
    holds: "files (safetensors, checkpoints, atomic writes), token data, the planner: no tensors",
  },
  { name: "tensor", parts: ["lib/tensor.ts"], holds: "Tensor: storage, dtype, shape, device" },
  {
    name: "ops",
    parts: ["lib/autograd.ts", "lib/ops/"],
    holds: "the tape and one file per fused op family",
  },
  { name: "nn", parts: ["lib/nn/"], holds: "Module, layers, GPT" },
  {
    name: "policies",
    parts: ["lib/optim/", "lib/curriculum/"],
    holds: "optimizers, scalers, clipping; curriculum schedules",
  },
  {
    name: "parallel",
    parts: ["lib/parallel/"],
    holds: "rank layout, process groups, TP/PP/DP, ZeRO-1, launcher",
  },
  {
    name: "hf",
    parts: ["lib/io/hf_gpt2.ts", "lib/io/hf_llama.ts", "lib/io/hf_bert.ts", "lib/io/hf.ts"],
    holds: "Hugging Face checkpoints to and from models (they build a GPT, so above lib/io)",
  },
  { name: "infer", parts: ["lib/infer/"], holds: "KV cache, sampling, generation" },
  {
    name: "eval",
    parts: ["lib/eval/"],
    holds:
      "evaluation: perplexity, LAMBADA, multiple choice, ROUGE (below train, which may call it)",
  },
  {
    name: "serve",
    parts: ["lib/serve/"],
    holds: "the generation server: HTTP endpoints, continuous batching, chat templates",
  },
  {
    name: "train",
    parts: ["lib/train/"],
    holds: "the training loop: config, schedules, engines, checkpoints, metrics",
  },
  { name: "notebook", parts: ["lib/notebook/"], holds: "Jupyter display, live plots, inspection" },
  { name: "api", parts: ["mod.ts"], holds: "the public API: re-exports only" },
];

/** An import allowed against the floors for a while, and what removes the need for it. */
export interface Exception {
  /** The importing file. */
  readonly from: string;
  /** The imported file. */
  readonly to: string;
  /** The change after which the exception goes. */
  readonly until: string;
}

/**
 * Imports tolerated until a change in progress lands; the check warns once one is no
 * longer needed, so that it is deleted.
 */
export const TEMPORARY_EXCEPTIONS: readonly Exception[] = [];

/** One import between two files of the tree. */
export interface Import {
  /** The importing file, relative to the root. */
  readonly from: string;
  /** The imported file, relative to the root. */
  readonly to: string;
  /** The line of the import in `from` (1-based). */
  readonly line: number;
}

/** The clause between `import`/`export` and `from`: default, namespace, named, type. */
const CLAUSE = String.raw`(?:type\s+)?(?:\*\s*(?:as\s+[\w$]+\s*)?|\{[^}]*\}\s*|` +
  String.raw`[\w$]+\s*(?:,\s*(?:\{[^}]*\}|\*\s*as\s+[\w$]+)\s*)?)`;
/** `import x from "m"`, `export { a } from "m"`, `export * from "m"`, at a line's start. */
const STATIC_IMPORT = new RegExp(
  String.raw`^[ \t]*(?:import|export)\s+${CLAUSE}from\s*(["'])([^"'\n]+)\1`,
  "gm",
);
/** `import "m";` */
const SIDE_EFFECT_IMPORT = /^[ \t]*import\s*(["'])([^"'\n]+)\1/gm;
/** `import("m")` with a literal specifier. */
const DYNAMIC_IMPORT = /\bimport\(\s*(["'])([^"'\n]+)\1\s*\)/g;
/** A line of a comment (JSDoc examples included): its imports are not the file's. */
const COMMENT_LINE = /^\s*(?:\*|\/\/|\/\*)/;

/**
 * The specifiers a TypeScript source imports, with their lines.
 *
 * @param source the file's text
 * @returns each import's specifier and 1-based line, in order
 * @example
 * ```ts
 * import { importSpecifiers } from "./check_layers.ts";
 * importSpecifiers('import { a } from "./a.ts";\n// import "./no.ts"\nexport * from "../b.ts";');
 * // [{ specifier: "./a.ts", line: 1 }, { specifier: "../b.ts", line: 3 }]
 * ```
 */
export function importSpecifiers(source: string): { specifier: string; line: number }[] {
  const lineAt = (index: number) => source.slice(0, index).split("\n").length;
  const found: { specifier: string; line: number; index: number }[] = [];
  for (const pattern of [STATIC_IMPORT, SIDE_EFFECT_IMPORT]) {
    for (const m of source.matchAll(pattern)) {
      found.push({ specifier: m[2], line: lineAt(m.index), index: m.index });
    }
  }
  for (const m of source.matchAll(DYNAMIC_IMPORT)) {
    const start = source.lastIndexOf("\n", m.index) + 1;
    if (COMMENT_LINE.test(source.slice(start, m.index))) continue;
    found.push({ specifier: m[2], line: lineAt(m.index), index: m.index });
  }
  found.sort((a, b) => a.index - b.index);
  return found.map(({ specifier, line }) => ({ specifier, line }));
}

/** Every .ts file under `dir` (relative to `root`), sorted. */
async function tsFiles(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const entry of Deno.readDir(posix.join(root, dir))) {
      const rel = posix.join(dir, entry.name);
      if (entry.isDirectory) out.push(...await tsFiles(root, rel));
      else if (entry.isFile && entry.name.endsWith(".ts")) out.push(rel);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/**
 * The files the check reads (lib/, ffi/, mod.ts) and their imports of other files of
 * the tree; package imports (`npm:`, `node:`, import-map names) are left out.
 *
 * @param root the repository root
 * @returns the files, relative to the root, and the imports between files
 */
export async function readImports(root: string): Promise<{ files: string[]; imports: Import[] }> {
  const files = [...await tsFiles(root, "lib"), ...await tsFiles(root, "ffi")];
  try {
    if ((await Deno.stat(posix.join(root, "mod.ts"))).isFile) files.push("mod.ts");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const imports: Import[] = [];
  for (const from of files) {
    const source = await Deno.readTextFile(posix.join(root, from));
    for (const { specifier, line } of importSpecifiers(source)) {
      if (!specifier.startsWith("./") && !specifier.startsWith("../")) continue;
      const to = posix.normalize(posix.join(posix.dirname(from), specifier));
      imports.push({ from, to, line });
    }
  }
  return { files, imports };
}

/** The most specific part of `floors` naming `file`, and its floor's index; null if none. */
function placeOf(file: string, floors: readonly Floor[]): { part: string; floor: number } | null {
  let best: { part: string; floor: number } | null = null;
  for (let floor = 0; floor < floors.length; floor++) {
    for (const part of floors[floor].parts) {
      const names = part.endsWith("/") ? file.startsWith(part) : file === part;
      if (names && (!best || part.length > best.part.length)) best = { part, floor };
    }
  }
  return best;
}

/**
 * The strongly connected components of a directed graph (Tarjan), each as a sorted
 * list of nodes; only components of two or more nodes.
 */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], onStack = new Set<string>(), out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) out.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out.sort((a, b) => a[0].localeCompare(b[0]));
}

/** A shortest path from `start` to `goal` that stays inside `members`; null if none. */
function shortestPath(
  start: string,
  goal: string,
  graph: Map<string, Set<string>>,
  members: Set<string>,
): string[] | null {
  const previous = new Map<string, string>([[start, start]]);
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    if (v === goal) {
      const path = [v];
      while (path[0] !== start) path.unshift(previous.get(path[0])!);
      return path;
    }
    for (const w of [...graph.get(v) ?? []].sort()) {
      if (members.has(w) && !previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return null;
}

/**
 * Cycles that together use every edge of a strongly connected component: each is the
 * shortest one through the first edge (in name order) that no earlier one used.
 */
function coveringCycles(component: string[], graph: Map<string, Set<string>>): string[][] {
  const members = new Set(component);
  const edges = component.flatMap((v) =>
    [...graph.get(v) ?? []].filter((w) => members.has(w)).sort().map((w) => [v, w])
  );
  const used = new Set<string>();
  const out: string[][] = [];
  for (const [v, w] of edges) {
    if (used.has(`${v}\n${w}`)) continue;
    const cycle = [v, ...shortestPath(w, v, graph, members)!];
    for (let i = 1; i < cycle.length; i++) used.add(`${cycle[i - 1]}\n${cycle[i]}`);
    out.push(cycle);
  }
  return out;
}

/** What {@linkcode checkLayers} found. */
export interface LayerReport {
  /** One line per violation, naming the importing and the imported file. */
  violations: string[];
  /** Exceptions that no import needs any more. */
  warnings: string[];
  /** Files read. */
  files: number;
  /** Imports between files of the tree. */
  imports: number;
}

/**
 * Checks a tree against the floors: upward imports, imports of files on no floor,
 * files on no floor, and cycles between parts (through any path).
 *
 * @param root the repository root
 * @param floors the floors, bottom first @default FLOORS
 * @param exceptions imports allowed regardless @default TEMPORARY_EXCEPTIONS
 * @returns the violations and warnings, one line each
 * @example
 * ```ts
 * import { checkLayers } from "./check_layers.ts";
 * const report = await checkLayers(decodeURIComponent(new URL("..", import.meta.url).pathname));
 * console.log(report.violations.join("\n") || "ok");
 * ```
 */
export async function checkLayers(
  root: string,
  floors: readonly Floor[] = FLOORS,
  exceptions: readonly Exception[] = TEMPORARY_EXCEPTIONS,
): Promise<LayerReport> {
  const { files, imports } = await readImports(root);
  const violations: string[] = [];
  for (const file of files) {
    if (!placeOf(file, floors)) {
      violations.push(
        `unplaced: ${file} is on no floor (add it or its folder to FLOORS in tools/check_layers.ts)`,
      );
    }
  }
  const used = new Set<Exception>();
  const graph = new Map<string, Set<string>>();
  const witness = new Map<string, Import>();
  for (const imp of imports) {
    const exception = exceptions.find((e) => e.from === imp.from && e.to === imp.to);
    if (exception) {
      used.add(exception);
      continue;
    }
    const from = placeOf(imp.from, floors), to = placeOf(imp.to, floors);
    if (!from) continue; // reported above
    const where = `${imp.from}:${imp.line}`;
    if (!to) {
      violations.push(`outside: ${where} → ${imp.to}, which is on no floor`);
      continue;
    }
    if (to.floor > from.floor) {
      violations.push(
        `upward: ${where} (${floors[from.floor].name}) → ${imp.to} (${floors[to.floor].name})`,
      );
    }
    if (from.part !== to.part) {
      if (!graph.has(from.part)) graph.set(from.part, new Set());
      graph.get(from.part)!.add(to.part);
      const key = `${from.part}\n${to.part}`;
      if (!witness.has(key)) witness.set(key, imp);
    }
  }
  for (const component of cycles(graph)) {
    for (const path of coveringCycles(component, graph)) {
      const edges = path.slice(1).map((to, i) => {
        const imp = witness.get(`${path[i]}\n${to}`)!;
        return `${imp.from}:${imp.line} → ${imp.to}`;
      });
      violations.push(`cycle: ${path.join(" → ")} (${edges.join("; ")})`);
    }
  }
  const warnings = exceptions.filter((e) => !used.has(e)).map((e) =>
    `exception ${e.from} → ${e.to} is no longer needed: delete it from TEMPORARY_EXCEPTIONS`
  );
  return { violations, warnings, files: files.length, imports: imports.length };
}

if (import.meta.main) {
  const root = Deno.args[0] ?? decodeURIComponent(new URL("..", import.meta.url).pathname);
  const report = await checkLayers(root);
  for (const w of report.warnings) console.error(`warning: ${w}`);
  for (const v of report.violations) console.log(v);
  const summary = `${report.files} files, ${report.imports} imports, ${FLOORS.length} floors`;
  if (report.violations.length) {
    console.error(`check:layers: ${report.violations.length} violations (${summary})`);
    Deno.exit(1);
  }
  console.log(`check:layers: ok (${summary})`);
}
