/**
 * Fuzzed readers of the run configuration: YAML files and command lines.
 *
 * defines: yaml, cli
 *
 * @module
 */

import { join } from "node:path";
import { CONFIG_KEYS, loadConfig } from "../../lib/train/config.ts";
import { writeFileSet } from "./files.ts";
import { weirdScalarText } from "./mutate.ts";
import type { Rng } from "./rng.ts";
import { mutatedSeed, type Reader, utf8 } from "./reader.ts";

// ---------------------------------------------------------------------------------------
// YAML configuration files and command lines

/** A small valid run, as section -> key -> YAML scalar text. */
const CONFIG_SEED: Record<string, Record<string, string>> = {
  model: { nLayer: "2", nHead: "2", nEmbd: "8", seqLength: "16", dropout: "0.1" },
  training: {
    microBatchSize: "2",
    globalBatchSize: "4",
    trainIters: "10",
    lr: "0.001",
    minLr: "0.0001",
    lrWarmupIters: "2",
    lrDecayStyle: "cosine",
  },
  data: { split: '"98,1,1"', tokenizer: "byte" },
  checkpoints: { save: "null", saveInterval: "5" },
};

/** Every key and its flag. */
const ALL_KEYS: [section: string, key: string, flag: string][] = Object.entries(CONFIG_KEYS)
  .flatMap(([section, keys]) =>
    Object.entries(keys as Record<string, { flag: string }>).map(([k, d]) =>
      [section, k, d.flag] as [string, string, string]
    )
  );

/** What a command-line error may name: a flag or a key, in the spellings the reader accepts. */
const FIELD_NAMES = [...ALL_KEYS.flatMap(([, k, flag]) => [k, flag]), "--config"];

function yamlText(doc: Record<string, Record<string, string>>, flat: boolean): string {
  const lines: string[] = [];
  for (const [section, keys] of Object.entries(doc)) {
    if (!flat) lines.push(`${section}:`);
    for (const [k, v] of Object.entries(keys)) lines.push(`${flat ? "" : "  "}${k}: ${v}`);
  }
  return lines.join("\n") + "\n";
}

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/** A structural YAML mutation: a value, a key's place or spelling, aliases, nesting. */
function mutateYamlDoc(rng: Rng): { text: string; what: string } {
  const doc = structuredClone(CONFIG_SEED);
  const flat = rng.chance(0.3);
  const [section, key] = (() => {
    const [s, k] = rng.chance(0.5)
      ? (() => {
        const s = rng.pick(Object.keys(doc));
        return [s, rng.pick(Object.keys(doc[s]))];
      })()
      : rng.pick(ALL_KEYS);
    return [s, k] as const;
  })();
  doc[section] ??= {};
  const op = rng.int(8);
  let what: string;
  if (op < 4) {
    doc[section][key] = rng.chance(0.2) ? `[${weirdScalarText(rng)}]` : weirdScalarText(rng);
    what = `${section}.${key} = ${doc[section][key].slice(0, 20)}`;
  } else if (op === 4) {
    const other = rng.pick(Object.keys(CONFIG_KEYS));
    (doc[other] ??= {})[key] = doc[section][key] ?? "1";
    what = `${key} under ${other}`;
  } else if (op === 5) {
    doc[section][rng.chance(0.5) ? kebab(key) : `${key}x`] = doc[section][key] ?? "2";
    what = `${key} respelled`;
  } else if (op === 6) {
    const d = rng.pick([10, 1000, 50_000]);
    doc[section][key] = "[".repeat(d) + "]".repeat(d);
    what = `${key} nested ${d}`;
  } else {
    doc[section][key] = "&a [1, 1]";
    doc[section][`${key}2`] = "[*a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a]";
    what = `${key} aliases`;
  }
  return { text: yamlText(doc, flat), what };
}

export const yaml: Reader = {
  name: "yaml",
  about: "lib/train/config.ts loadConfig({ file }): YAML, nested or flat, then validation",
  seeds() {
    return Promise.resolve(
      [false, true].map((flat) =>
        new Map([["config.yaml", utf8.encode(yamlText(CONFIG_SEED, flat))]])
      ),
    );
  },
  async input(rng, seeds, root) {
    const path = join(root, "config.yaml");
    let what: string;
    if (rng.chance(0.5)) {
      const m = mutateYamlDoc(rng);
      await writeFileSet(root, new Map([["config.yaml", utf8.encode(m.text)]]));
      what = m.what;
    } else {
      what = (await mutatedSeed(rng, seeds, root)).what;
    }
    return {
      what,
      mustName: [[root]],
      async run() {
        await loadConfig({ file: path });
        return [];
      },
    };
  },
};

/** The command line of the YAML seed, as `--flag value` words. */
function seedArgs(): string[] {
  const flagOf = new Map(ALL_KEYS.map(([, k, f]) => [k, f]));
  return Object.values(CONFIG_SEED).flatMap((keys) =>
    Object.entries(keys).flatMap(([k, v]) => [flagOf.get(k)!, v.replace(/^"|"$/g, "")])
  );
}

/** The option names of a command line as typed: `--lr=3` gives "lr". */
function typedNames(args: readonly string[]): string[] {
  return args.filter((a) => a.startsWith("--") && a.length > 2).map((a) => a.slice(2).split("=")[0])
    .filter((n) => n.length > 1);
}

/** One command-line mutation. */
function mutateArgs(rng: Rng, args: string[], root: string): string {
  const i = rng.int(args.length);
  const word = () => rng.pick(["--", "-", "-lr", "---lr", "--=1", "--lr=", "--no-bf16", "--no-lr"]);
  switch (rng.int(10)) {
    case 0:
    case 1: { // a real flag with an extreme or wrong-typed value
      const [, , flag] = rng.pick(ALL_KEYS);
      const v = weirdScalarText(rng);
      if (rng.chance(0.5)) args.push(`${flag}=${v}`);
      else args.push(flag, v);
      return `${flag} ${v.slice(0, 20)}`;
    }
    case 2:
      if (i + 1 < args.length) [args[i], args[i + 1]] = [args[i + 1], args[i]];
      return `words ${i} and ${i + 1} swapped`;
    case 3:
      args.splice(i, 1);
      return `word ${i} dropped`;
    case 4: { // a typo in a flag
      const [, , flag] = rng.pick(ALL_KEYS);
      const at = 2 + rng.int(flag.length - 2);
      args.push(flag.slice(0, at) + flag.slice(at + 1), "1");
      return `typo ${flag}`;
    }
    case 5: {
      const w = word();
      args.splice(i, 0, w);
      return `${w} inserted`;
    }
    case 6: { // --config: missing file, no file, a file that is not YAML
      const v = rng.pick([join(root, "missing.yaml"), root, "", "--lr"]);
      args.push("--config", v);
      return `--config ${v}`;
    }
    case 7: { // a key's camelCase or snake_case spelling
      const [, k] = rng.pick(ALL_KEYS);
      args.push(
        rng.chance(0.5) ? `--${k}` : `--${kebab(k).replace(/-/g, "_")}`,
        weirdScalarText(rng),
      );
      return `--${k} spelled`;
    }
    case 8:
      args.push(args[i]);
      return `word ${i} repeated`;
    default: {
      const [, , flag] = rng.pick(ALL_KEYS);
      args.push(flag);
      return `${flag} without a value`;
    }
  }
}

export const cli: Reader = {
  name: "cli",
  about: "lib/train/config.ts loadConfig({ args }): parseArgsToOverrides, overrides, validation",
  seeds() {
    return Promise.resolve([]);
  },
  async input(rng, _seeds, root) {
    await Deno.mkdir(root, { recursive: true });
    const args = seedArgs();
    const what: string[] = [];
    if (!rng.chance(0.02)) {
      const steps = rng.chance(0.7) ? 1 : 2 + rng.int(2);
      for (let s = 0; s < steps; s++) what.push(mutateArgs(rng, args, root));
    }
    return {
      what: what.join("; "),
      // a typo is named as typed
      mustName: [["command line", root], [...FIELD_NAMES, ...typedNames(args), root]],
      async run() {
        await loadConfig({ args });
        return [];
      },
    };
  },
};
