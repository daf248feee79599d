import assert from "assert";
import {
  applyOverrides,
  ConfigError,
  configFromObject,
  DEFAULT_CONFIG,
  loadConfig,
  parseArgsToOverrides,
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
    /command line: unknown key "micro-bach-size"; did you mean "microBatchSize"\?/,
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
    /tokenizer: expected one of gpt2, byte, got 'bpe'/,
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
      /globalBatchSize 10 is not a multiple of microBatchSize 4/,
    ],
    [["--lr", "1e-4", "--min-lr", "1e-3"], /minLr 0.001 is larger than lr 0.0001/],
    [["--n-embd", "100", "--n-head", "3"], /nEmbd 100 is not divisible by nHead 3/],
    [
      ["--tensor-model-parallel-size", "3", "--n-head", "4"],
      /tensorModelParallelSize 3 does not divide nHead 4/,
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
