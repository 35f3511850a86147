/**
 * What `submit` writes per input row: the transaction, its outcome, and (unless dropped) the
 * row's other columns as they were, so the output joins back to the export it came from.
 */
import { stringify } from 'csv-stringify/sync';
import type { BatchItem } from '../client/client.js';
import type { Extra, InputFormat, InputRow } from './input.js';

export const OUTPUT_COLUMNS = [
  'line',
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

type Fixed = Record<(typeof OUTPUT_COLUMNS)[number], string | number | null>;
export type OutputRecord = Fixed & Record<string, unknown>;

/**
 * The output name of each extra input column: its own name, or `input_<name>` where that would
 * clash with an output column ("Status" from a bank export next to our `status`).
 */
export function extraOutputNames(extraColumns: readonly string[]): Map<string, string> {
  const taken = new Set<string>(OUTPUT_COLUMNS);
  const names = new Map<string, string>();
  for (const column of extraColumns) {
    let name = column;
    while (taken.has(name.toLowerCase()) || taken.has(name)) name = `input_${name}`;
    taken.add(name.toLowerCase());
    names.set(column, name);
  }
  return names;
}

/** Serialises records as CSV (with a header on the first call) or JSON lines. */
export class RecordWriter {
  private header = true;
  private readonly columns: string[];

  constructor(
    private readonly format: InputFormat,
    private readonly extraNames: ReadonlyMap<string, string>,
  ) {
    this.columns = [...OUTPUT_COLUMNS, ...extraNames.values()];
  }

  /** Adds the row's extra fields under their output names. */
  withExtra(record: Fixed, extra: Extra): OutputRecord {
    const out: OutputRecord = { ...record };
    for (const [column, name] of this.extraNames) out[name] = extra[column] ?? null;
    return out;
  }

  serialise(records: readonly OutputRecord[]): string {
    if (records.length === 0) return '';
    if (this.format === 'jsonl') return records.map((r) => JSON.stringify(r)).join('\n') + '\n';
    const cells = records.map((r) =>
      Object.fromEntries(this.columns.map((c) => [c, csvCell(r[c])])),
    );
    const text = stringify(cells, { header: this.header, columns: this.columns });
    this.header = false;
    return text;
  }
}

function csvCell(value: unknown): string | number | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'number') return value;
  if (typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

export function resultRecord(row: InputRow, item: BatchItem | undefined): Fixed {
  const tx = row.transaction;
  return {
    line: row.line,
    reference: tx?.reference ?? null,
    date: tx?.date ?? null,
    description: tx?.description ?? null,
    amount: tx?.amount ?? null,
    currency: tx?.currency ?? null,
    mcc: tx?.mcc ?? null,
    status: item?.status ?? 'missing',
    merchant: item?.result?.merchant?.name ?? null,
    merchant_id: item?.result?.merchant?.id ?? null,
    // Ids, `;`-separated, outermost first; empty when there were none.
    intermediaries: item?.result?.intermediaries?.map((i) => i.id).join(';') ?? null,
    error: item?.error && item.status !== 'succeeded' ? item.error.message : null,
    job_id: item?.job_id ?? null,
  };
}

export function invalidRecord(row: InputRow): Fixed {
  const raw = row.errors ? row.raw : {};
  const field = (name: string) => {
    const value = raw[name];
    return typeof value === 'string' || typeof value === 'number' ? value : null;
  };
  return {
    line: row.line,
    reference: field('reference'),
    date: field('date'),
    description: field('description'),
    amount: field('amount'),
    currency: field('currency'),
    mcc: field('mcc'),
    status: 'invalid',
    merchant: null,
    merchant_id: null,
    intermediaries: null,
    error: row.errors?.join('; ') ?? null,
    job_id: null,
  };
}

export interface Counts {
  succeeded: number;
  matched: number;
  failed: number;
  canceled: number;
  invalid: number;
}

export function tally(counts: Counts, records: readonly Fixed[]) {
  for (const r of records) {
    if (r.status === 'succeeded') {
      counts.succeeded += 1;
      if (r.merchant !== null) counts.matched += 1;
    } else if (r.status === 'canceled') counts.canceled += 1;
    else if (r.status === 'invalid') counts.invalid += 1;
    else counts.failed += 1;
  }
}
