/**
 * Reads a CSV (header row: date, description, amount, and optionally currency, mcc, reference)
 * or JSONL (one transaction object per line) file into transactions, validated with the
 * service's own schema, each with the line it came from.
 */
import { parse } from 'csv-parse/sync';
import type { Transaction } from '../heuristic/types.js';
import { HttpProblem } from '../http/problem.js';
import { transactionSchema } from '../http/schemas.js';
import { parseTransaction } from '../http/validation.js';

export type InputFormat = 'csv' | 'jsonl';

export type InputRow =
  | { line: number; transaction: Transaction; errors?: undefined }
  | { line: number; transaction?: undefined; errors: string[]; raw: Record<string, unknown> };

export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

const COLUMNS = Object.keys(transactionSchema.properties);

export function formatOf(file: string): InputFormat | undefined {
  if (/\.csv$/i.test(file)) return 'csv';
  if (/\.(jsonl|ndjson)$/i.test(file)) return 'jsonl';
  return undefined;
}

export function readRows(text: string, format: InputFormat): InputRow[] {
  return format === 'csv' ? readCsv(text) : readJsonl(text);
}

function readCsv(text: string): InputRow[] {
  type Parsed = { record: Record<string, string>; info: { lines: number }; raw: string };
  let records: Parsed[];
  try {
    records = parse<Parsed>(text, {
      columns: (header: string[]) => header.map((h) => h.trim().toLowerCase()),
      skip_empty_lines: true,
      bom: true,
      info: true,
      raw: true,
    });
  } catch (err) {
    throw new InputError(`not valid CSV: ${(err as Error).message}`);
  }
  const header = Object.keys(records[0]?.record ?? {});
  const unknown = header.filter((c) => !COLUMNS.includes(c));
  if (unknown.length > 0) {
    throw new InputError(
      `unknown column(s) ${unknown.map((c) => `"${c}"`).join(', ')}; known: ${COLUMNS.join(', ')}`,
    );
  }
  return records.map(({ record, info, raw }) => {
    // info.lines is where the record ends; a quoted field may span lines.
    const line = info.lines - (raw.replace(/\r?\n$/, '').match(/\n/g)?.length ?? 0);
    const candidate: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(record)) {
      if (value === '') continue; // an empty optional column means "not given"
      candidate[key] =
        key === 'amount' && /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
    }
    return validate(line, candidate);
  });
}

function readJsonl(text: string): InputRow[] {
  const rows: InputRow[] = [];
  for (const [i, source] of text.split(/\r?\n/).entries()) {
    if (source.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(source);
    } catch (err) {
      rows.push({ line: i + 1, errors: [`not valid JSON: ${(err as Error).message}`], raw: {} });
      continue;
    }
    rows.push(validate(i + 1, value));
  }
  return rows;
}

function validate(line: number, candidate: unknown): InputRow {
  try {
    return { line, transaction: parseTransaction(candidate) };
  } catch (err) {
    if (!(err instanceof HttpProblem)) throw err;
    const errors = (err.errors ?? []).map((e) =>
      'pointer' in e ? `${e.pointer.slice(1) || 'row'} ${e.detail}` : e.detail,
    );
    const raw =
      candidate !== null && typeof candidate === 'object'
        ? (candidate as Record<string, unknown>)
        : {};
    return { line, errors, raw };
  }
}
