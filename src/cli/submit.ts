/**
 * `submit FILE`: sends a file's transactions as batches, waits for them with long-poll, and
 * writes one result per input row, in input order.
 *
 * Resuming: the run keeps a state file next to the output (`OUT.state.json`) with a run id and
 * the batch ids submitted so far. Each batch is sent with the Idempotency-Key `RUNID:INDEX`, so
 * rerunning the same command after an interruption submits nothing twice: batches in the state
 * file are not sent again, and a batch sent just before the interruption (not yet in the state
 * file) is answered by the server with the batch it already has.
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { type BatchItem, MerchantClient } from '../client/client.js';
import type { AmountFormat } from './amount.js';
import { type InputFormat, InputError, type InputRow, formatOf, readRows } from './input.js';
import {
  type Counts,
  type OutputRecord,
  RecordWriter,
  extraOutputNames,
  invalidRecord,
  resultRecord,
  tally,
} from './output.js';
import { Progress, type ProgressMode } from './progress.js';

export interface SubmitOptions {
  file: string;
  url: string;
  apiKey: string | undefined;
  /** Output path. @defaultValue FILE with `.results.csv` / `.results.jsonl` */
  out?: string;
  /** Output format. @defaultValue from `out`'s extension, else the input's format */
  format?: InputFormat;
  batchSize: number;
  /** Long-poll seconds per request. */
  wait: number;
  /** Retries per request for network errors, 429 and 503. */
  retries: number;
  /** Ignore a state file from an earlier run and start over. */
  fresh: boolean;
  /** Submit the valid rows and report invalid ones in the output, instead of refusing. */
  skipInvalid: boolean;
  /** How the file writes amounts. @defaultValue `1234.56` (plain numbers) */
  amountFormat?: AmountFormat;
  /** Leave the columns the service does not know out of the output (they are kept otherwise). */
  dropExtraColumns?: boolean;
  progress: ProgressMode;
  stderr: NodeJS.WritableStream;
}

/** Exit codes, documented in the README. */
export const EXIT = { ok: 0, someFailed: 1, usage: 2, unavailable: 3, gone: 4 } as const;

interface RunState {
  version: 1;
  input: string;
  inputSha256: string;
  batchSize: number;
  runId: string;
  /** Batch ids by batch index. */
  batches: string[];
}

export async function submitFile(opts: SubmitOptions): Promise<number> {
  const say = (text: string) => opts.stderr.write(`${text}\n`);
  const inputFormat = formatOf(opts.file);
  if (!inputFormat) {
    say(`error: ${opts.file}: cannot tell the format; name it .csv or .jsonl`);
    return EXIT.usage;
  }
  const text = await readFile(opts.file, 'utf8').catch((err: Error) => {
    throw new InputError(`cannot read ${opts.file}: ${err.message}`);
  });
  const { rows, extraColumns } = readRows(text, inputFormat, { amountFormat: opts.amountFormat });
  const invalid = rows.filter((r) => r.errors);
  if (invalid.length > 0 && !opts.skipInvalid) {
    for (const row of invalid.slice(0, 50)) {
      say(`${opts.file}:${row.line}: ${row.errors?.join('; ')}`);
    }
    if (invalid.length > 50) say(`... and ${invalid.length - 50} more invalid rows`);
    say(
      `error: ${invalid.length} invalid row(s); nothing was submitted. Fix them, or pass ` +
        '--skip-invalid to submit the rest and list these in the output.',
    );
    return EXIT.usage;
  }
  const valid = rows.filter((r): r is Extract<InputRow, { transaction: object }> => !r.errors);
  if (valid.length === 0) {
    say(`error: ${opts.file}: no transactions to submit`);
    return EXIT.usage;
  }

  const out = opts.out ?? opts.file.replace(/\.[^./]+$/, '') + `.results.${inputFormat}`;
  const outFormat = opts.format ?? formatOf(out) ?? inputFormat;
  if (extraColumns.length > 0) {
    const names = extraColumns.map((c) => `"${c}"`).join(', ');
    say(
      opts.dropExtraColumns
        ? `note: column(s) ${names} are not sent and, with --drop-extra-columns, not written`
        : `note: column(s) ${names} are not sent to the service; they are copied to the output ` +
            '(--drop-extra-columns leaves them out)',
    );
  }
  const writer = new RecordWriter(
    outFormat,
    opts.dropExtraColumns ? new Map() : extraOutputNames(extraColumns),
  );
  const statePath = `${out}.state.json`;
  const inputSha256 = createHash('sha256').update(text).digest('hex');
  const state = await loadState(statePath, { inputSha256, batchSize: opts.batchSize, opts, say });
  if (typeof state === 'number') return state;

  const chunks: InputRow[][] = [];
  for (let i = 0; i < valid.length; i += opts.batchSize) {
    chunks.push(valid.slice(i, i + opts.batchSize));
  }
  const progress = new Progress(valid.length, opts.progress, opts.stderr);
  const client = new MerchantClient({
    baseUrl: opts.url,
    apiKey: opts.apiKey,
    maxRetries: opts.retries,
    onRetry: ({ attempt, delayMs, reason }) =>
      progress.note(`retrying in ${Math.ceil(delayMs / 1000)} s (attempt ${attempt}): ${reason}`),
  });

  // 1. Submit every batch not submitted yet. `finished` counts each batch's finished jobs, so
  // progress starts from what is already done (after a resume, or answered from the cache).
  const finished = chunks.map(() => 0);
  const already = state.batches.filter(Boolean).length;
  if (already > 0) {
    for (const [index, batchId] of state.batches.entries()) {
      finished[index] = (await client.getBatch(batchId)).value?.finished ?? 0;
    }
    const done = finished.reduce((a, b) => a + b, 0);
    progress.note(
      `resuming run ${state.runId}: ${already} of ${chunks.length} batch(es) already ` +
        `submitted, ${done} of ${valid.length} transaction(s) already finished`,
    );
  }
  for (const [index, chunk] of chunks.entries()) {
    if (state.batches[index]) continue;
    const { batch, replayed } = await client.submitBatch(
      chunk.map((r) => r.transaction as NonNullable<InputRow['transaction']>),
      { idempotencyKey: `${state.runId}:${index}` },
    );
    state.batches[index] = batch.id;
    finished[index] = batch.finished;
    await saveState(statePath, state);
    progress.note(
      `batch ${index + 1}/${chunks.length}: ${batch.size} transactions ${replayed ? 'were already submitted' : 'submitted'} as ${batch.id}`,
    );
  }

  // 2. Wait for each batch in order, writing its results as soon as it is done.
  const partial = `${out}.partial`;
  const sink = await open(partial, 'w');
  const counts: Counts = { succeeded: 0, matched: 0, failed: 0, canceled: 0, invalid: 0 };
  try {
    let nextRow = 0; // index into `rows`: everything before it is written
    const write = async (records: OutputRecord[]) => {
      if (records.length > 0) await sink.write(writer.serialise(records));
    };
    progress.update(finished.reduce((a, b) => a + b, 0));
    for (const [index, batchId] of state.batches.entries()) {
      let etag: string | undefined;
      for (;;) {
        const read = await client.getBatch(batchId, { wait: opts.wait, etag });
        if (read.notModified) continue;
        if (!read.value) {
          progress.finish();
          say(
            `error: batch ${batchId} no longer exists on the server (purged after its ` +
              `retention period?). Rerun with --fresh to submit again.`,
          );
          return EXIT.unavailable;
        }
        etag = read.etag;
        finished[index] = read.value.finished;
        progress.update(finished.reduce((a, b) => a + b, 0));
        if (read.value.done) break;
      }
      const items = new Map<number, BatchItem>();
      for await (const item of client.batchResults(batchId)) items.set(item.index, item);
      const chunk = chunks[index] ?? [];
      const lastLine = chunk.at(-1)?.line ?? 0;
      const records: OutputRecord[] = [];
      let position = 0;
      while (nextRow < rows.length && (rows[nextRow]?.line ?? 0) <= lastLine) {
        const row = rows[nextRow++] as InputRow;
        const record = row.errors ? invalidRecord(row) : resultRecord(row, items.get(position++));
        records.push(writer.withExtra(record, row.extra));
      }
      tally(counts, records);
      await write(records);
    }
    const rest = rows.slice(nextRow).map((r) => writer.withExtra(invalidRecord(r), r.extra));
    tally(counts, rest);
    await write(rest);
  } finally {
    await sink.close();
  }
  progress.finish();
  await rename(partial, out);
  await rm(statePath, { force: true });
  say(
    `${rows.length} row(s): ${counts.succeeded} succeeded (${counts.matched} matched a merchant), ` +
      `${counts.failed} failed, ${counts.canceled} canceled, ${counts.invalid} invalid -> ${out}`,
  );
  return counts.failed + counts.canceled + counts.invalid > 0 ? EXIT.someFailed : EXIT.ok;
}

async function loadState(
  path: string,
  ctx: {
    inputSha256: string;
    batchSize: number;
    opts: SubmitOptions;
    say: (text: string) => void;
  },
): Promise<RunState | number> {
  if (existsSync(path) && !ctx.opts.fresh) {
    const state = JSON.parse(await readFile(path, 'utf8')) as RunState;
    if (state.inputSha256 === ctx.inputSha256 && state.batchSize === ctx.batchSize) return state;
    ctx.say(
      `error: ${path} belongs to a run over a different input or batch size. Pass --fresh to ` +
        'start over (the earlier run is left as it is on the server), or use another --out.',
    );
    return EXIT.usage;
  }
  const state: RunState = {
    version: 1,
    input: ctx.opts.file,
    inputSha256: ctx.inputSha256,
    batchSize: ctx.batchSize,
    runId: randomUUID(),
    batches: [],
  };
  await saveState(path, state);
  return state;
}

/** Written whole to a temporary file and renamed, so a crash never leaves half a state file. */
async function saveState(path: string, state: RunState): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(state, null, 2));
  await rename(`${path}.tmp`, path);
}
