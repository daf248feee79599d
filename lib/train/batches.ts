/**
 * defines: TrainingSamples, batchSource — the one place the trainer turns a dataset into
 * micro-batches, whatever the model reads: next-token rows (GPT datasets, blends, packed
 * fine-tuning examples), BERT's masked sentence pairs, or classification rows. Every kind
 * comes out as a {@linkcode Batch}, with the same resume rule (consumed samples, this
 * rank's place among the data-parallel ranks), so the engines and the loop stay one.
 *
 * @module
 */
import { BertBatchIterator, BertDataset } from "../data/bert_dataset.ts";
import {
  ClassificationBatchIterator,
  ClassificationDataset,
} from "../data/classification_dataset.ts";
import {
  type Batch,
  type BatchIteratorOptions,
  GptBatchIterator,
  type SampleDataset,
} from "../data/gpt_dataset.ts";
import type { BatchSource } from "../curriculum/data.ts";

/** What a trainer can train on or evaluate with. */
export type TrainingSamples = SampleDataset | BertDataset | ClassificationDataset;

/**
 * The micro-batches of `data` from a resume point.
 *
 * - GPT-style samples: inputs and next-token targets (packed rows carry their document
 *   starts and -1 targets).
 * - BERT samples: the masked tokens as inputs, the masked-LM labels as targets (-1 where
 *   nothing was masked), token types, each row's valid length, and the sentence-order
 *   label as the row label.
 * - Classification rows: the tokens, all targets -1, valid lengths, and the class as the
 *   row label.
 *
 * @param data the samples
 * @param o micro-batch size, resume point, data-parallel place
 * @returns the source of batches
 */
export function batchSource(data: TrainingSamples, o: BatchIteratorOptions): BatchSource {
  if (data instanceof BertDataset) {
    const it = new BertBatchIterator(data, o);
    return {
      next(): Batch {
        const b = it.next();
        return {
          inputs: b.tokens,
          targets: b.labels,
          batchSize: b.batchSize,
          seqLength: b.seqLength,
          tokenTypes: b.tokenTypes,
          validLengths: b.validLengths,
          rowLabels: b.isRandom,
        };
      },
      get consumedSamples() {
        return it.consumedSamples;
      },
    };
  }
  if (data instanceof ClassificationDataset) {
    const it = new ClassificationBatchIterator(data, o);
    return {
      next(): Batch {
        const b = it.next();
        return {
          inputs: b.tokens,
          targets: new Int32Array(b.tokens.length).fill(-1),
          batchSize: b.batchSize,
          seqLength: b.seqLength,
          tokenTypes: b.tokenTypes,
          validLengths: b.validLengths,
          rowLabels: b.labels,
        };
      },
      get consumedSamples() {
        return it.consumedSamples;
      },
    };
  }
  return new GptBatchIterator(data, o);
}
