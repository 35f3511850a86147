/**
 * A batch's results as one file (GET /batches/{id}/results with `Accept: application/x-ndjson`
 * or `text/csv`): every item in submission order, written as it is read a page at a time, so a
 * 100,000-item batch costs the memory of one page. CSV is written by csv-stringify.
 */
import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify';
import type { Transaction } from '../heuristic/types.js';
import type { BatchItemRow } from '../db/sql/rows.js';
import { type FileFormat, FILE_MEDIA_TYPES } from './batch-file.js';
import { batchItem } from './views.js';

export type ResultItem = BatchItemRow & { transaction: Transaction };

/** The columns of a results CSV: the transaction, its outcome, and where it was in the batch. */
export const RESULT_COLUMNS = [
  'index',
  'reference',
  'date',
  'description',
  'amount',
  'currency',
  'mcc',
  'status',
  'merchant',
  'merchant_id',
  'intermediaries',
  'error',
  'job_id',
] as const;

/** One CSV row, as the CLI writes its output (intermediaries: ids, `;`-separated). */
function csvRow(item: ResultItem): Record<(typeof RESULT_COLUMNS)[number], unknown> {
  const tx = item.transaction;
  return {
    index: item.batch_index,
    reference: tx.reference ?? null,
    date: tx.date,
    description: tx.description,
    amount: tx.amount,
    currency: tx.currency ?? null,
    mcc: tx.mcc ?? null,
    status: item.status,
    merchant: item.result?.merchant?.name ?? null,
    merchant_id: item.result?.merchant?.id ?? null,
    intermediaries: item.result?.intermediaries?.map((i) => i.id).join(';') ?? null,
    error: item.error && item.status !== 'succeeded' ? item.error.message : null,
    job_id: item.id,
  };
}

/** The media type a results file is served as. */
export const resultsMediaType = (format: FileFormat) =>
  format === 'csv'
    ? `${FILE_MEDIA_TYPES.csv}; charset=utf-8; header=present`
    : FILE_MEDIA_TYPES.ndjson;

/**
 * `items` as a stream in `format`: NDJSON lines (each the item of a JSON page), or CSV with a
 * header row and RESULT_COLUMNS.
 */
export function resultsFile(items: AsyncIterable<ResultItem>, format: FileFormat): Readable {
  if (format === 'ndjson') {
    return Readable.from(ndjsonLines(items));
  }
  const csv = stringify({ header: true, columns: [...RESULT_COLUMNS] });
  const source = Readable.from(mapRows(items), { objectMode: true });
  source.on('error', (err) => csv.destroy(err));
  return source.pipe(csv);
}

async function* ndjsonLines(items: AsyncIterable<ResultItem>): AsyncGenerator<string> {
  let chunk = '';
  for await (const item of items) {
    chunk += `${JSON.stringify(batchItem(item))}\n`;
    if (chunk.length >= 65536) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

async function* mapRows(items: AsyncIterable<ResultItem>) {
  for await (const item of items) yield csvRow(item);
}
