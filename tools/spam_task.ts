/**
 * The built-in classification task of `deno task finetune --task spam`: SpamAssassin's
 * messages (lib/data/spam_dataset.ts) as [CLS] text [SEP] rows, a two-class head on the
 * pooled output of a pretrained encoder, trained through the one loop; then the held-out
 * split scored (accuracy, precision, recall, F1 for spam) beside a bag-of-words
 * logistic regression fitted on the same split (lib/eval/bag_of_words.ts).
 *
 * @module
 */
import {
  ClassificationBatchIterator,
  ClassificationDataset,
} from "../lib/data/classification_dataset.ts";
import { loadSpamSplits, type SpamSplits } from "../lib/data/spam_dataset.ts";
import type { Tokenizer } from "../lib/data/tokenizer.ts";
import { WordPieceTokenizer } from "../lib/data/wordpiece.ts";
import { bagOfWordsBaseline } from "../lib/eval/bag_of_words.ts";
import { type BinaryMetrics, binaryMetrics } from "../lib/eval/classification.ts";
import { ConfigError } from "../lib/key_table.ts";
import { paddingLayout } from "../lib/nn/attention.ts";
import type { GPT } from "../lib/nn/gpt.ts";
import { isEncoder } from "../lib/nn/gpt_config.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import type { TrainConfig } from "../lib/train/config.ts";
import type { FinishedRun, RunData, TrainCommandOptions } from "./train.ts";

/**
 * The training command's options for the task: its data, the classification head, and
 * the held-out scoring.
 *
 * @param cacheDir where the splits are prepared
 */
export function spamTaskOptions(cacheDir: string): TrainCommandOptions {
  let splits: SpamSplits | null = null;
  return {
    data: async (config, tokenizer) => {
      splits = await loadSpamSplits(cacheDir);
      return spamData(config, tokenizer, splits);
    },
    model: {
      adjust: (m) => {
        if (m.attentionMaskType !== "padding" || !m.pooler) {
          throw new ConfigError(
            "--task spam puts a classification head on a pretrained encoder's pooled output: " +
              "start from a BERT checkpoint (--pretrained-checkpoint) or --init-from-hf BERT",
          );
        }
        m.numLabels = 2;
        // the pretraining heads are not the task's: they would take updates for nothing
        m.bertBinaryHead = false;
        m.outputTransform = false;
      },
      fresh: ["classifier."],
    },
    afterTraining: (run) => scoreSpam(run, splits!),
  };
}

function vocabOf(tokenizer: Tokenizer): WordPieceTokenizer {
  if (!(tokenizer instanceof WordPieceTokenizer)) {
    throw new ConfigError(`--task spam reads WordPiece rows; --tokenizer ${tokenizer.name} is not`);
  }
  return tokenizer;
}

function spamData(config: TrainConfig, tokenizer: Tokenizer, s: SpamSplits): RunData {
  const vocab = vocabOf(tokenizer);
  const t = config.training, T = config.model.seqLength;
  const train = new ClassificationDataset(s.train, {
    seqLength: T,
    vocab,
    seed: t.seed,
    numSamples: t.trainIters * t.globalBatchSize,
    name: "train",
  });
  const valid = new ClassificationDataset(s.valid, {
    seqLength: T,
    vocab,
    shuffle: false,
    name: "valid",
  });
  const spam = (xs: readonly { label: number }[]) => xs.filter((x) => x.label === 1).length;
  return {
    train,
    valid,
    files: [],
    summary: [
      `SpamAssassin: train ${s.train.length} messages (${spam(s.train)} spam), valid ` +
      `${s.valid.length} (${spam(s.valid)}), test ${s.test.length} (${spam(s.test)}), ` +
      `rows of ${T} tokens`,
    ],
    [Symbol.dispose]() {},
  };
}

/** The fine-tuned classifier's predictions on `examples`, in order. */
function predict(
  model: GPT,
  tokenizer: WordPieceTokenizer,
  examples: SpamSplits["test"],
  T: number,
): number[] {
  const ds = new ClassificationDataset(examples, {
    seqLength: T,
    vocab: tokenizer,
    shuffle: false,
  });
  const B = 16;
  const it = new ClassificationBatchIterator(ds, { microBatchSize: B });
  const out: number[] = [];
  while (out.length < examples.length) {
    const b = it.next();
    tidy(() => {
      const device = model.device;
      const x = Tensor.fromArray(b.tokens, [B, T], { dtype: "i32", device });
      const layout = paddingLayout([...b.validLengths], T, device);
      const z = model.classify(x, { layout }).toArray(); // (B, 2)
      for (let r = 0; r < B && out.length < examples.length; r++) {
        out.push(z[2 * r + 1] > z[2 * r] ? 1 : 0);
      }
    });
  }
  return out;
}

function row(name: string, m: BinaryMetrics): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`.padStart(10);
  return `${name.padEnd(34)}${pct(m.accuracy)}${pct(m.precision)}${pct(m.recall)}${pct(m.f1)}`;
}

/** Held-out scores of the fine-tuned model and of the bag-of-words baseline. */
async function scoreSpam(run: FinishedRun, s: SpamSplits): Promise<void> {
  const { trainer, log } = run;
  const model = await run.wholeModel();
  if (!model) {
    log("\nspam: under model parallelism the held-out split is scored from the checkpoint: --save");
    return;
  }
  if (!isEncoder(model.config)) throw new Error("spam: the trained model is not an encoder");
  model.eval();
  const tokenizer = vocabOf(trainer.tokenizer);
  const T = trainer.config.model.seqLength;
  const tuned = binaryMetrics(predict(model, tokenizer, s.test, T), s.test.map((e) => e.label));
  const baseline = bagOfWordsBaseline(s);
  log(
    `\nheld-out messages (${s.test.length}, spam the positive class):\n` +
      `${"".padEnd(34)}${
        ["accuracy", "precision", "recall", "F1"].map((h) => h.padStart(10)).join("")
      }\n${row("fine-tuned encoder", tuned)}\n${
        row(`bag-of-words logistic regression`, baseline.test)
      }`,
  );
  const save = trainer.config.checkpoints.save;
  if (save) {
    const out = `${save}/spam.json`;
    await Deno.writeTextFile(
      out,
      JSON.stringify(
        { test: s.test.length, model: tuned, baseline: { l2: baseline.l2, test: baseline.test } },
        null,
        2,
      ) +
        "\n",
    );
    log(`scores: ${out}`);
  }
}
