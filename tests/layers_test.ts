/**
 * The layer check (tools/check_layers.ts): the repository keeps to its floors, a tree
 * with a planted cycle and an upward import fails with one line for each, and the
 * static reading of imports agrees with Deno's own module graph.
 */
import assert from "assert";
import {
  checkLayers,
  type Exception,
  importSpecifiers,
  readImports,
} from "../tools/check_layers.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");

/** The local files of `deno info --json ENTRY`, each with the local files it imports. */
async function denoGraph(entry: string): Promise<Map<string, Set<string>>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: {
      specifier: string;
      dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
    }[];
  };
  // deno info names modules by URL: a space in the repository's path is %20 there
  const prefix = new URL("../", import.meta.url).href;
  const local = (s: string | undefined) =>
    s?.startsWith(prefix) ? decodeURIComponent(s.slice(prefix.length)) : null;
  const graph = new Map<string, Set<string>>();
  for (const m of info.modules) {
    const file = local(m.specifier);
    if (!file) continue;
    const deps = new Set<string>();
    for (const d of m.dependencies ?? []) {
      for (const s of [d.code?.specifier, d.type?.specifier]) {
        const dep = local(s);
        if (dep) deps.add(dep);
      }
    }
    graph.set(file, deps);
  }
  return graph;
}

/** Writes `files` (path relative to the tree → text) under a fresh directory. */
async function tree(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_layers_" });
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(`${dir}/${path.slice(0, path.lastIndexOf("/") + 1)}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/${path}`, text);
  }
  return dir;
}

/** A tree with one of each violation, and an import inside a JSDoc example (not one). */
const PLANTED = {
  "mod.ts": 'export * from "./lib/tensor.ts";\n',
  "ffi/native.ts": "export const lib = 1;\n",
  "lib/errors.ts": "export class DenotronError extends Error {}\n",
  "lib/tensor.ts": 'import { show } from "./notebook/display.ts";\nexport const Tensor = show;\n',
  "lib/notebook/display.ts":
    'import type { Tensor } from "../tensor.ts";\nexport const show = 1;\n',
  "lib/optim/adamw.ts":
    'import {\n  rate,\n} from "../curriculum/schedule.ts";\nexport const step = rate;\n',
  "lib/curriculum/schedule.ts":
    'export { step } from "../optim/adamw.ts";\nexport const rate = 2;\n',
  "lib/nn/gpt.ts": '/**\n * ```ts\n * import { train } from "../train/trainer.ts";\n * ```\n */\n' +
    'import { DenotronError } from "../errors.ts";\nexport const GPT = DenotronError;\n',
  "lib/shiny/new.ts": 'import { GPT } from "../nn/gpt.ts";\nexport const x = GPT;\n',
  "lib/train/trainer.ts":
    'import { run } from "../../tools/train.ts";\nexport const train = run;\n',
};

Deno.test("the repository's imports keep to the floors of tools/check_layers.ts", async () => {
  const report = await checkLayers(ROOT);
  assert.deepEqual(report.violations, []);
  assert.ok(report.files > 50 && report.imports > 300, `${report.files} files read`);
});

Deno.test("a planted cycle, an upward import, a stray file and an import out of lib/ each fail with one line", async () => {
  const dir = await tree(PLANTED);
  try {
    const report = await checkLayers(dir);
    assert.deepEqual(report.violations.sort(), [
      "cycle: lib/curriculum/ → lib/optim/ → lib/curriculum/ " +
      "(lib/curriculum/schedule.ts:1 → lib/optim/adamw.ts; " +
      "lib/optim/adamw.ts:1 → lib/curriculum/schedule.ts)",
      "cycle: lib/notebook/ → lib/tensor.ts → lib/notebook/ " +
      "(lib/notebook/display.ts:1 → lib/tensor.ts; lib/tensor.ts:1 → lib/notebook/display.ts)",
      "outside: lib/train/trainer.ts:1 → tools/train.ts, which is on no floor",
      "unplaced: lib/shiny/new.ts is on no floor " +
      "(add it or its folder to FLOORS in tools/check_layers.ts)",
      "upward: lib/tensor.ts:1 (tensor) → lib/notebook/display.ts (notebook)",
    ]);
    // The command line prints the same lines and exits 1.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", `${ROOT}/tools/check_layers.ts`, dir],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n").sort();
    assert.deepEqual(lines, report.violations.sort());
    assert.match(new TextDecoder().decode(out.stderr), /check:layers: 5 violations/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a temporary exception silences its import, and warns once nothing needs it", async () => {
  const dir = await tree(PLANTED);
  try {
    const exceptions: Exception[] = [
      { from: "lib/tensor.ts", to: "lib/notebook/display.ts", until: "the test ends" },
      { from: "lib/nn/gpt.ts", to: "lib/train/trainer.ts", until: "never needed" },
    ];
    const report = await checkLayers(dir, undefined, exceptions);
    assert.ok(!report.violations.some((v) => v.includes("lib/notebook/")), report.violations[0]);
    assert.deepEqual(report.warnings, [
      "exception lib/nn/gpt.ts → lib/train/trainer.ts is no longer needed: " +
      "delete it from TEMPORARY_EXCEPTIONS",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("importSpecifiers() reads every import form and skips comments and examples", () => {
  const source = [
    'import a from "./default.ts";',
    'import * as ns from "./namespace.ts";',
    "import {",
    "  b,",
    "  type C,",
    '} from "./multiline.ts";',
    'import d, { e } from "./default_and_named.ts";',
    'import type { F } from "./type_only.ts";',
    'export * from "./star.ts";',
    'export * as g from "./star_as.ts";',
    'export { h } from "./named.ts";',
    'export type { I } from "./type_reexport.ts";',
    'import "./side_effect.ts";',
    'const j = await import("./dynamic.ts");',
    "/**",
    " * ```ts",
    ' * import { k } from "./example.ts";',
    ' * await import("./example_dynamic.ts");',
    " * ```",
    " */",
    '// import { l } from "./commented.ts";',
    "export { a, b };",
    'export const from = "./not_an_import.ts";',
  ].join("\n");
  assert.deepEqual(importSpecifiers(source), [
    { specifier: "./default.ts", line: 1 },
    { specifier: "./namespace.ts", line: 2 },
    { specifier: "./multiline.ts", line: 3 },
    { specifier: "./default_and_named.ts", line: 7 },
    { specifier: "./type_only.ts", line: 8 },
    { specifier: "./star.ts", line: 9 },
    { specifier: "./star_as.ts", line: 10 },
    { specifier: "./named.ts", line: 11 },
    { specifier: "./type_reexport.ts", line: 12 },
    { specifier: "./side_effect.ts", line: 13 },
    { specifier: "./dynamic.ts", line: 14 },
  ]);
});

Deno.test("the static reading of imports finds what deno info finds, file by file", async () => {
  const graph = await denoGraph("mod.ts");
  const { imports } = await readImports(ROOT);
  const read = new Map<string, Set<string>>();
  for (const i of imports) {
    if (!read.has(i.from)) read.set(i.from, new Set());
    read.get(i.from)!.add(i.to);
  }
  assert.ok(graph.size > 50, `${graph.size} modules in mod.ts's graph`);
  for (const [file, deps] of graph) {
    assert.deepEqual([...read.get(file) ?? []].sort(), [...deps].sort(), file);
  }
});

Deno.test("lib/tensor.ts and lib/nn load no notebook or training code", async () => {
  for (const entry of ["lib/tensor.ts", "lib/nn/mod.ts"]) {
    const files = [...(await denoGraph(entry)).keys()];
    assert.ok(files.includes(entry));
    assert.deepEqual(files.filter((f) => /^lib\/(notebook|train)\//.test(f)), [], entry);
  }
});
