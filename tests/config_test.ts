/**
 * The training configuration: one table of keys (lib/train/config_keys.ts) from which the
 * defaults, the YAML reader and the command line follow; every mistake is a one-line
 * ConfigError naming the key, its flag and the value.
 */
import assert from "assert";
import { type KeyDecl, readValue } from "../lib/key_table.ts";
import {
  applyOverrides,
  CONFIG_KEYS,
  ConfigError,
  configFromObject,
  DEFAULT_CONFIG,
  loadConfig,
  parseArgsToOverrides,
  type TrainConfig,
  validateConfig,
} from "../lib/train/config.ts";

async function withFile(text: string, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_cfg_" });
  try {
    await Deno.writeTextFile(`${dir}/run.yaml`, text);
    await fn(`${dir}/run.yaml`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("defaults pass validation and are frozen", async () => {
  const c = await loadConfig();
  assert.deepEqual(c, DEFAULT_CONFIG);
  assert.ok(Object.isFrozen(DEFAULT_CONFIG.training));
});

Deno.test("command line: --lr 3e-4, --train-iters 100 and --trainIters=100 all work", async () => {
  const c = await loadConfig({
    args: ["--lr", "3e-4", "--train-iters", "100", "--seq_length=64", "--save", "none"],
  });
  assert.equal(c.training.lr, 3e-4);
  assert.equal(c.training.trainIters, 100);
  assert.equal(c.model.seqLength, 64);
  assert.equal(c.checkpoints.save, null);
  const d = await loadConfig({ args: ["--trainIters=100", "--lr-decay-style", "linear"] });
  assert.equal(d.training.trainIters, 100);
  assert.equal(d.training.lrDecayStyle, "linear");
});

Deno.test("Megatron's model argument names are aliases", () => {
  const c = applyOverrides(DEFAULT_CONFIG, {
    "num-layers": "6",
    "hidden-size": 384,
    "num-attention-heads": 6,
  }, "cli");
  assert.deepEqual([c.model.nLayer, c.model.nEmbd, c.model.nHead], [6, 384, 6]);
  const padded = applyOverrides(DEFAULT_CONFIG, { "make-vocab-size-divisible-by": "128" }, "cli");
  assert.equal(padded.model.vocabMultiple, 128);
  assert.throws(
    () => applyOverrides(DEFAULT_CONFIG, { "vocab-multiple": "0" }, "cli"),
    /vocabMultiple/,
  );
});

Deno.test("--data-path takes every word up to the next flag; in YAML a list, or one string that is one word", async () => {
  const c = await loadConfig({ args: ["--data-path", "0.3", "a b", "0.7", "c", "--lr", "1"] });
  assert.deepEqual(c.data.dataPath, ["0.3", "a b", "0.7", "c"]);
  assert.equal(c.training.lr, 1);
  assert.deepEqual((await loadConfig({ args: ["--data-path", "x"] })).data.dataPath, ["x"]);
  assert.deepEqual((await loadConfig({ args: ["--data-path=x"] })).data.dataPath, ["x"]);
  assert.equal((await loadConfig({ args: ["--data-path", "null"] })).data.dataPath, null);
  await assert.rejects(
    loadConfig({ args: ["--data-path", "--lr", "1"] }),
    /dataPath: expected one or more words/,
  );
  await withFile("train-data-path: [0.5, my data, 0.5, other]\ndata-path: null\n", async (path) => {
    const y = await loadConfig({ file: path });
    assert.deepEqual(y.data.trainDataPath, ["0.5", "my data", "0.5", "other"]);
  });
  await withFile("data-path: my data\n", async (path) => {
    assert.deepEqual((await loadConfig({ file: path })).data.dataPath, ["my data"]);
  });
});

Deno.test("YAML: nested sections or flat keys, then command-line overrides win", async () => {
  const yaml = "model:\n  nLayer: 2\n  nEmbd: 64\n  nHead: 2\ntraining:\n  lr: 6.0e-4\n" +
    "train-iters: 50\nsplit: '90,10'\ntokenizer: gpt2\n";
  await withFile(yaml, async (path) => {
    const c = await loadConfig({ file: path, args: ["--lr", "1e-3"] });
    assert.equal(c.model.nLayer, 2);
    assert.equal(c.model.nEmbd, 64);
    assert.equal(c.training.trainIters, 50);
    assert.equal(c.training.lr, 1e-3);
    assert.equal(c.data.split, "90,10");
    assert.equal(c.data.tokenizer, "gpt2");
    assert.equal(c.eval.evalInterval, DEFAULT_CONFIG.eval.evalInterval);
    const viaFlag = await loadConfig({ args: ["--config", path] });
    assert.equal(viaFlag.training.lr, 6e-4);
  });
});

Deno.test("YAML: an unknown key names the file and suggests the closest key", async () => {
  await withFile("training:\n  adamBeta: 0.9\n", async (path) => {
    await assert.rejects(loadConfig({ file: path }), (e: Error) => {
      assert.ok(e instanceof ConfigError);
      assert.match(
        e.message,
        /run\.yaml: unknown key "training\.adamBeta"; did you mean "adamBeta1"\?/,
      );
      return true;
    });
  });
  await withFile("trainIter: 10\n", async (path) => {
    await assert.rejects(
      loadConfig({ file: path }),
      /run\.yaml: unknown key "trainIter"; did you mean "trainIters"\?/,
    );
  });
  await assert.rejects(
    loadConfig({ args: ["--micro-bach-size", "4"] }),
    /command line: unknown option --micro-bach-size; did you mean --micro-batch-size\?/,
  );
});

Deno.test("wrong types name the key and the value", async () => {
  await assert.rejects(
    loadConfig({ args: ["--trainIters", "abc"] }),
    /trainIters: expected an integer, got 'abc'/,
  );
  await assert.rejects(loadConfig({ args: ["--nLayer", "2.5"] }), /nLayer: expected an integer/);
  await assert.rejects(loadConfig({ args: ["--lr"] }), /lr: expected a number, got true/);
  await assert.rejects(loadConfig({ args: ["--lr", "0"] }), /lr: expected a number > 0, got '0'/);
  await assert.rejects(
    loadConfig({ args: ["--tokenizer", "bpe"] }),
    /tokenizer "bpe" is not "gpt2", "byte", "bert-base-uncased", the path of a tokenizer\.json/,
  );
  await withFile("training:\n  lr: [1, 2]\n", async (path) => {
    await assert.rejects(
      loadConfig({ file: path }),
      /run\.yaml: lr: expected a number, got \[1,2\]/,
    );
  });
  await withFile("model:\n  nHead: null\n", async (path) => {
    await assert.rejects(loadConfig({ file: path }), /run\.yaml: nHead: expected a value/);
  });
});

Deno.test("a key in the wrong section is named with its right section", () => {
  assert.throws(
    () => configFromObject({ model: { lr: 1 } }, "f.yaml"),
    /f\.yaml: model\.lr: "lr" belongs in section "training"/,
  );
});

Deno.test("cross-field checks explain the conflict", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--global-batch-size", "10", "--micro-batch-size", "4"],
      /globalBatchSize 10 is not a positive multiple of microBatchSize 4; choose 8 or 12/,
    ],
    [["--lr", "1e-4", "--min-lr", "1e-3"], /minLr 0.001 is larger than lr 0.0001/],
    [["--n-embd", "100", "--n-head", "3"], /nEmbd 100 is not divisible by nHead 3/],
    [
      ["--tensor-model-parallel-size", "3", "--n-head", "4"],
      /tensorModelParallelSize 3 does not divide numAttentionHeads 4/,
    ],
    [["--lr-warmup-iters", "2000"], /lrWarmupIters 2000 is longer than lrDecayIters 800/],
    [["--split", "a,b"], /split: split "a,b": expected up to three non-negative weights/],
  ];
  for (const [args, re] of cases) await assert.rejects(loadConfig({ args }), re);
});

Deno.test("missing, empty and broken YAML files", async () => {
  await assert.rejects(
    loadConfig({ file: "/nonexistent/run.yaml" }),
    /\/nonexistent\/run\.yaml: cannot read config file/,
  );
  await withFile("", async (path) => {
    assert.deepEqual(await loadConfig({ file: path }), DEFAULT_CONFIG);
  });
  await withFile("model: [unclosed\n", async (path) => {
    await assert.rejects(loadConfig({ file: path }), /run\.yaml: not valid YAML/);
  });
  await withFile("- 1\n- 2\n", async (path) => {
    await assert.rejects(loadConfig({ file: path }), /run\.yaml: expected a mapping/);
  });
});

Deno.test("parseArgsToOverrides: forms of options, and a stray word is an error", () => {
  assert.deepEqual(parseArgsToOverrides(["--a", "1", "--b=2", "--c", "--d", "-5"]), {
    overrides: { a: "1", b: "2", c: true, d: "-5" },
    configFile: undefined,
  });
  assert.throws(() => parseArgsToOverrides(["lr"]), /unexpected "lr"; options look like --lr 3e-4/);
});

/** Every key of the table with its section and declaration. */
const TABLE: [string, string, KeyDecl][] = Object.entries(CONFIG_KEYS).flatMap(([section, keys]) =>
  Object.entries(keys as Record<string, KeyDecl>).map(([key, d]) =>
    [section, key, d] as [
      string,
      string,
      KeyDecl,
    ]
  )
);

/** How a value is written after its flag. */
function flagValue(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? v.join(",") : String(v);
}

/** A copy of the defaults without one key, so that only a write to that key restores it. */
function withoutKey(section: string, key: string): TrainConfig {
  const c = structuredClone(DEFAULT_CONFIG) as TrainConfig;
  delete (c as unknown as Record<string, Record<string, unknown>>)[section][key];
  return c;
}

Deno.test("DEFAULT_CONFIG holds exactly the table's keys, each at its table default", () => {
  assert.deepEqual(Object.keys(DEFAULT_CONFIG), Object.keys(CONFIG_KEYS));
  const sections = DEFAULT_CONFIG as unknown as Record<string, Record<string, unknown>>;
  for (const [section, keys] of Object.entries(CONFIG_KEYS)) {
    assert.deepEqual(Object.keys(sections[section]), Object.keys(keys), section);
  }
  for (const [section, key, d] of TABLE) assert.deepEqual(sections[section][key], d.default, key);
});

Deno.test("every default fits its own declaration (type, bounds, choices)", () => {
  for (const [, key, d] of TABLE) {
    assert.deepEqual(readValue(key, d, d.default, ""), d.default, key);
  }
});

Deno.test("every key has a documented flag that round-trips through parseArgsToOverrides", () => {
  const flags = new Set<string>();
  for (const [section, key, d] of TABLE) {
    assert.match(d.flag, /^--[a-z][a-z0-9-]*$/, key);
    assert.ok(!flags.has(d.flag), `${d.flag} is declared twice`);
    flags.add(d.flag);
    for (const args of [[d.flag, flagValue(d.default)], [`${d.flag}=${flagValue(d.default)}`]]) {
      const { overrides } = parseArgsToOverrides(args);
      const c = applyOverrides(withoutKey(section, key), overrides, "command line");
      assert.deepEqual(c, DEFAULT_CONFIG, `${args.join(" ")} does not set ${section}.${key}`);
    }
  }
});

Deno.test("every key in the table carries a line of documentation", async () => {
  const source = (await Promise.all(
    ["../lib/train/config_keys.ts", "../lib/parallel/parallel_config.ts"].map((f) =>
      Deno.readTextFile(new URL(f, import.meta.url))
    ),
  )).join("\n");
  for (const [, key] of TABLE) {
    assert.match(source, new RegExp(`\\*/\\n\\s*${key}: \\{`), `${key} has no JSDoc line`);
  }
});

Deno.test("flags are Megatron's names; the key's own spellings still work", async () => {
  const megatron: Record<string, string> = {
    nLayer: "--num-layers",
    nHead: "--num-attention-heads",
    nEmbd: "--hidden-size",
    vocabMultiple: "--make-vocab-size-divisible-by",
    trainIters: "--train-iters",
    globalBatchSize: "--global-batch-size",
    tensorModelParallelSize: "--tensor-model-parallel-size",
    useDistributedOptimizer: "--use-distributed-optimizer",
    exitDurationInMins: "--exit-duration-in-mins",
    exitInterval: "--exit-interval",
    lrDecayStyle: "--lr-decay-style",
    lrWsdDecayStyle: "--lr-wsd-decay-style",
    lrWsdDecayIters: "--lr-wsd-decay-iters",
  };
  for (const [section, key, d] of TABLE) {
    if (key in megatron) assert.equal(d.flag, megatron[key], section);
  }
  const c = await loadConfig({
    args: ["--n-layer", "2", "--n_head", "2", "--nEmbd", "64", "--tokenizer-type", "gpt2"],
  });
  assert.deepEqual([c.model.nLayer, c.model.nHead, c.model.nEmbd], [2, 2, 64]);
  assert.equal(c.data.tokenizer, "gpt2");
});

Deno.test("YAML: Megatron's numLayers, numAttentionHeads and hiddenSize, flat or nested", () => {
  const flat = configFromObject({ numLayers: 2, numAttentionHeads: 2, hiddenSize: 64 }, "f.yaml");
  const nested = configFromObject(
    { model: { numLayers: 2, numAttentionHeads: 2, hiddenSize: 64 }, tokenizerType: "gpt2" },
    "f.yaml",
  );
  for (const c of [flat, nested]) {
    assert.deepEqual([c.model.nLayer, c.model.nHead, c.model.nEmbd], [2, 2, 64]);
  }
  assert.equal(nested.data.tokenizer, "gpt2");
});

Deno.test("the default run has no time limit (exitDurationInMins null)", () => {
  assert.equal(DEFAULT_CONFIG.training.exitDurationInMins, null);
  const c = applyOverrides(DEFAULT_CONFIG, { "exit-duration-in-mins": "8" }, "cli");
  assert.equal(c.training.exitDurationInMins, 8);
});

Deno.test("--exit-interval: null by default, else a positive integer named when wrong", async () => {
  assert.equal(DEFAULT_CONFIG.training.exitInterval, null);
  assert.equal((await loadConfig({ args: ["--exit-interval", "50"] })).training.exitInterval, 50);
  await rejectsNaming(["--exit-interval", "0"], "exitInterval", "--exit-interval", /integer >= 1/);
  await rejectsNaming(["--exit-interval", "2.5"], "exitInterval", "--exit-interval", /an integer/);
});

Deno.test("WSD and inverse-square-root by Megatron's names, defaults and one-line errors", async () => {
  const d = DEFAULT_CONFIG.training;
  assert.deepEqual([d.lrWsdDecayStyle, d.lrWsdDecayIters], ["exponential", null]);
  const wsd = ["--lr-decay-style", "WSD", "--lr-wsd-decay-iters"];
  const c = await loadConfig({ args: [...wsd, "100", "--lr-wsd-decay-style", "minus_sqrt"] });
  const t = c.training;
  assert.deepEqual([t.lrDecayStyle, t.lrWsdDecayStyle, t.lrWsdDecayIters], [
    "WSD",
    "minus_sqrt",
    100,
  ]);
  const isr = await loadConfig({ args: ["--lr-decay-style", "inverse-square-root"] });
  assert.equal(isr.training.lrDecayStyle, "inverse-square-root");
  await rejectsNaming(
    ["--lr-wsd-decay-style", "sqrt"],
    "lrWsdDecayStyle",
    "--lr-wsd-decay-style",
    /expected one of exponential, linear, cosine, minus_sqrt/,
  );
  await rejectsNaming(
    ["--lr-decay-style", "wsd"],
    "lrDecayStyle",
    "--lr-decay-style",
    /expected one of cosine, linear, constant, WSD, inverse-square-root/,
  );
  await rejectsNaming(
    ["--lr-wsd-decay-iters", "0"],
    "lrWsdDecayIters",
    "--lr-wsd-decay-iters",
    />= 1/,
  );
  // between keys: WSD needs its decay length, and that fits after warmup (800 - 50 = 750)
  const one = (e: Error) => !e.message.includes("\n") && e instanceof ConfigError;
  await assert.rejects(loadConfig({ args: wsd.slice(0, 2) }), (e: Error) => {
    assert.ok(one(e), e.message);
    assert.match(e.message, /lrDecayStyle WSD needs lrWsdDecayIters.*\(--lr-wsd-decay-iters\)$/);
    return true;
  });
  await assert.rejects(loadConfig({ args: [...wsd, "751"] }), (e: Error) => {
    assert.ok(one(e), e.message);
    assert.match(
      e.message,
      /lrWsdDecayIters 751 is longer than lrDecayIters 800 - lrWarmupIters 50 = 750 \(--lr-wsd-decay-iters\)/,
    );
    return true;
  });
  // no stable phase at all is allowed
  assert.equal((await loadConfig({ args: [...wsd, "750"] })).training.lrWsdDecayIters, 750);
});

/** Asserts that `args` fail as one line naming the key, the flag and the value. */
async function rejectsNaming(args: string[], key: string, flag: string, re: RegExp) {
  await assert.rejects(loadConfig({ args }), (e: Error) => {
    assert.ok(e instanceof ConfigError, `${args.join(" ")}: ${e}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), e.message);
    const value = args.length > 1 ? args[1] : args[0].slice(args[0].indexOf("=") + 1);
    for (const part of [key, `(${flag})`, `'${value}'`]) {
      assert.ok(e.message.includes(part), `${e.message} does not name ${part}`);
    }
    return true;
  });
}

Deno.test("integer keys refuse fractions, unsafe integers and non-decimal numbers", async () => {
  const cases: [string[], string, string, RegExp][] = [
    [["--train-iters", "1.5"], "trainIters", "--train-iters", /expected an integer, got/],
    [["--seed", "1e20"], "seed", "--seed", /seed: expected an integer <= 9007199254740991/],
    [["--seed", "9007199254740992"], "seed", "--seed", /expected an integer <= 9007199254740991/],
    [["--micro-batch-size", "0x10"], "microBatchSize", "--micro-batch-size", /an integer, got/],
    [["--eval-iters", ""], "evalIters", "--eval-iters", /evalIters: expected an integer, got ''/],
    [["--lr", "Infinity"], "lr", "--lr", /lr: expected a number, got 'Infinity'/],
  ];
  for (const [args, key, flag, re] of cases) await rejectsNaming(args, key, flag, re);
  const ok = await loadConfig({ args: ["--train-iters", "1e3", "--seed", "9007199254740991"] });
  assert.deepEqual([ok.training.trainIters, ok.training.seed], [1000, 9007199254740991]);
});

Deno.test("negative numbers parse as --flag -1 and --flag=-1; the key's bounds then decide", async () => {
  assert.deepEqual(parseArgsToOverrides(["--lr", "-1", "--seed=-2"]).overrides, {
    lr: "-1",
    seed: "-2",
  });
  assert.deepEqual(parseArgsToOverrides(["--min-lr", "-1e-3", "--bf16"]).overrides, {
    "min-lr": "-1e-3",
    bf16: true,
  });
  await rejectsNaming(["--lr", "-1"], "lr", "--lr", /lr: expected a number > 0, got '-1'/);
  await rejectsNaming(["--lr=-1"], "lr", "--lr", /lr: expected a number > 0, got '-1'/);
  await rejectsNaming(["--seed", "-1"], "seed", "--seed", /seed: expected an integer >= 0/);
  await rejectsNaming(["--min-lr", "-1e-3"], "minLr", "--min-lr", /minLr: expected a number >= 0/);
});

Deno.test("sizes have generous upper bounds, and each limit itself is accepted", async () => {
  const limits: [string, string, number, string][] = [
    ["nLayer", "--num-layers", 4096, "an integer"],
    ["nHead", "--num-attention-heads", 1024, "an integer"],
    ["nEmbd", "--hidden-size", 2 ** 16, "an integer"],
    ["vocabSize", "--vocab-size", 2 ** 24, "an integer"],
    ["seqLength", "--seq-length", 2 ** 20, "an integer"],
    ["maxPositionEmbeddings", "--max-position-embeddings", 2 ** 20, "an integer"],
    ["microBatchSize", "--micro-batch-size", 2 ** 24, "an integer"],
    ["globalBatchSize", "--global-batch-size", 2 ** 24, "an integer"],
    ["trainIters", "--train-iters", 1e9, "an integer"],
  ];
  for (const [key, flag, max, what] of limits) {
    const d = TABLE.find(([, k]) => k === key)![2];
    assert.equal(d.flag, flag);
    assert.equal(readValue(key, d, max, ""), max);
    await rejectsNaming([flag, String(max + 1)], key, flag, new RegExp(`${what} <= ${max},`));
  }
  await rejectsNaming(["--num-layers", "0"], "nLayer", "--num-layers", /expected an integer >= 1/);
});

Deno.test("dropout is a probability in [0, 1)", async () => {
  for (const p of ["0", "0.1", "0.999"]) {
    assert.equal((await loadConfig({ args: ["--dropout", p] })).model.dropout, Number(p));
  }
  await rejectsNaming(["--dropout", "1"], "dropout", "--dropout", /expected a number < 1/);
  await rejectsNaming(["--dropout", "-0.1"], "dropout", "--dropout", /expected a number >= 0/);
});

Deno.test("the global batch must split over micro-batches on every data-parallel rank", () => {
  assert.doesNotThrow(() => validateConfig(DEFAULT_CONFIG, "run", { dataParallelSize: 1 }));
  assert.throws(
    () => validateConfig(DEFAULT_CONFIG, "run", { dataParallelSize: 2 }),
    /run: globalBatchSize 32 is not a positive multiple of microBatchSize 32 × data-parallel size 2; choose 64/,
  );
});

Deno.test("validateConfig also checks a configuration built in code against the table", () => {
  const c = structuredClone(DEFAULT_CONFIG) as TrainConfig;
  c.training.adamBeta1 = 1;
  assert.throws(
    () => validateConfig(c, "code"),
    /^ConfigError: code: adamBeta1: expected a number < 1, got 1 \(--adam-beta1\)$/,
  );
});

Deno.test("--distributed-timeout-minutes and the --no- form of true/false keys", async () => {
  const c = await loadConfig({
    args: [
      "--distributed-timeout-minutes",
      "0.5",
      "--no-check-for-nan-in-loss-and-grad",
      "--no-sequence-parallel",
    ],
  });
  assert.equal(c.parallel.distributedTimeoutMinutes, 0.5);
  assert.equal(c.training.checkForNanInLossAndGrad, false);
  assert.equal(c.parallel.sequenceParallel, false);
  assert.equal(DEFAULT_CONFIG.training.checkForNanInLossAndGrad, true);
  assert.equal(DEFAULT_CONFIG.parallel.distributedTimeoutMinutes, null);
  await rejectsNaming(
    ["--distributed-timeout-minutes", "0"],
    "distributedTimeoutMinutes",
    "--distributed-timeout-minutes",
    /expected a number > 0/,
  );
  // "no-" of a key that is not true/false is still an unknown key
  await assert.rejects(loadConfig({ args: ["--no-lr"] }), /unknown option --no-lr/);
});

Deno.test("an encoder preset brings its learning rate; --lr beside it (before or after) wins", async () => {
  const tiny = await loadConfig({ args: ["--model", "bert-tiny"] });
  assert.equal(tiny.training.lr, 1e-3);
  assert.equal(tiny.training.minLr, 1e-4);
  assert.equal((await loadConfig({ args: ["--model", "bert-base"] })).training.lr, 1e-4);
  for (
    const args of [["--model", "bert-tiny", "--lr", "2e-3"], [
      "--lr",
      "2e-3",
      "--model",
      "bert-tiny",
    ]]
  ) {
    assert.equal((await loadConfig({ args })).training.lr, 2e-3, args.join(" "));
  }
  // decoder presets keep the general default
  assert.equal((await loadConfig({ args: ["--model", "llama-tiny"] })).training.lr, 3e-3);
});

Deno.test("Llama keys: --model sets a preset's shape first, the keys beside it win, and bad combinations are named", async () => {
  const c = await loadConfig({ args: ["--model", "llama-tiny", "--num-layers", "2"] });
  assert.equal(c.model.nLayer, 2);
  assert.equal(c.model.nEmbd, 128);
  assert.equal(c.model.numQueryGroups, 2);
  assert.equal(c.model.swiglu, true);
  assert.equal(c.model.positionEmbeddingType, "rope");
  await assert.rejects(
    loadConfig({ args: ["--model", "llama-9000"] }),
    /modelPreset: no model "llama-9000"; known: /,
  );
  await assert.rejects(
    loadConfig({ args: ["--num-attention-heads", "4", "--num-query-groups", "3"] }),
    /numQueryGroups 3 does not divide nHead 4/,
  );
  await assert.rejects(
    loadConfig({ args: ["--use-rope-scaling"] }),
    /useRopeScaling needs positionEmbeddingType rope/,
  );
});
