/**
 * Every command answers --help with its usage on stdout and exit status 0; the training
 * command's help lists every configuration key's flag and default, from the key table.
 */
import assert from "assert";
import { CONFIG_KEYS } from "../lib/train/config_keys.ts";

const COMMANDS: [string, string][] = [
  ["train", "../tools/train.ts"],
  ["generate", "../tools/generate.ts"],
  ["preprocess", "../tools/preprocess.ts"],
  ["launch", "../tools/launch.ts"],
  ["plan", "../tools/plan.ts"],
  ["bench", "../bench/gpt2_cpu.ts"],
  ["export-hf", "../tools/export_hf.ts"],
  ["serve", "../tools/serve.ts"],
  ["evaluate", "../tools/evaluate.ts"],
  ["finetune", "../tools/finetune.ts"],
];

async function help(script: string): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", decodeURIComponent(new URL(script, import.meta.url).pathname), "--help"],
    env: { NO_COLOR: "1" },
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: r.code, out: text(r.stdout), err: text(r.stderr) };
}

for (const [name, script] of COMMANDS) {
  Deno.test(`deno task ${name} --help prints its usage and exits 0`, async () => {
    const r = await help(script);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, new RegExp(`^usage: deno task ${name}`), r.out);
  });
}

Deno.test("deno task train --help lists every key's flag and default, by section", async () => {
  const { out } = await help("../tools/train.ts");
  for (const [section, keys] of Object.entries(CONFIG_KEYS)) {
    assert.ok(out.includes(`(${section}):`), `section ${section} is missing`);
    for (const [key, d] of Object.entries(keys)) {
      const def = d.default === null ? "none" : JSON.stringify(d.default);
      assert.ok(
        out.split("\n").some((l) =>
          l.trim().startsWith(d.flag + " ") && l.endsWith(`${key} [${def}]`)
        ),
        `${key} (${d.flag}, default ${def}) is not listed`,
      );
    }
  }
});

const TYPOS: [string, string, string][] = [
  ["train", "--train-itres", "--train-iters"],
  ["generate", "--promt", "--prompt"],
  ["preprocess", "--inptu", "--input"],
  ["launch", "--nproc-per-nod", "--nproc-per-node"],
  ["plan", "--gpu", "--gpus"],
  ["serve", "--chekpoint", "--checkpoint"],
  ["evaluate", "--lambda", "--lambada"],
  ["bench", "--stpes", "--steps"],
  ["export-hf", "--chekpoint", "--checkpoint"],
  ["finetune", "--tsak", "--task"],
  ["finetune", "--pretrained-chekpoint", "--pretrained-checkpoint"],
];

for (const [name, typo, meant] of TYPOS) {
  Deno.test(`deno task ${name} ${typo}: one error line naming the nearest option, ${meant}`, async () => {
    const script = COMMANDS.find(([n]) => n === name)![1];
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        decodeURIComponent(new URL(script, import.meta.url).pathname),
        typo,
        "1",
        ...(name === "launch" ? ["x.ts"] : []),
      ],
      env: { NO_COLOR: "1" },
    }).output();
    const err = new TextDecoder().decode(r.stderr).trim();
    assert.equal(r.code, 2, err);
    // train's (and finetune's) options are configuration keys: "command line: " says where
    const where = name === "train" || name === "finetune" ? "command line: " : "";
    const lead = name === "plan" ? "plan: " : "error: ";
    assert.equal(err, `${lead}${where}unknown option ${typo}; did you mean ${meant}?`);
  });
}

for (const name of ["generate", "serve", "evaluate"]) {
  Deno.test(`deno task ${name} without --checkpoint or --hf: one error line, exit 2, nothing loaded`, async () => {
    const script = COMMANDS.find(([n]) => n === name)![1];
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", decodeURIComponent(new URL(script, import.meta.url).pathname)],
      env: { NO_COLOR: "1" },
    }).output();
    const err = new TextDecoder().decode(r.stderr).trim();
    assert.equal(r.code, 2, err);
    assert.equal(err, "error: give exactly one of --checkpoint and --hf (--help shows the usage)");
  });
}
