/**
 * Reads a CSV (header row naming at least date, description, amount; optionally currency, mcc,
 * reference; in any case and order) or JSONL (one transaction object per line) file into
 * transactions, validated with the service's own schema, each with the line it came from.
 *
 * Real exports carry more than a transaction: account, category, balance… Those columns (JSONL:
 * fields) are not sent to the service; they are kept per row, so the output can carry them
 * through. Amounts in CSV (and string amounts in JSONL) are read with an `AmountFormat`.
 */
import { parse } from 'csv-parse/sync';
import type { Transaction } from '../heuristic/types.js';
import { HttpProblem } from '../http/problem.js';
import { transactionSchema } from '../http/schemas.js';
import { parseTransaction } from '../http/validation.js';
import { AMOUNT_FORMATS, type AmountFormat, parseAmount } from './amount.js';

export type InputFormat = 'csv' | 'jsonl';

/** A row's fields the service does not know, by their name in the file, in file order. */
export type Extra = Record<string, unknown>;

export type InputRow =
  | { line: number; transaction: Transaction; extra: Extra; errors?: undefined }
  | {
      line: number;
      transaction?: undefined;
      extra: Extra;
      errors: string[];
      raw: Record<string, unknown>;
    };

export interface Input {
  rows: InputRow[];
  /** Names of the columns (JSONL: fields) that are not transaction fields, in first-seen order. */
  extraColumns: string[];
}

export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

const COLUMNS = Object.keys(transactionSchema.properties);
const REQUIRED: readonly string[] = transactionSchema.required;

export function formatOf(file: string): InputFormat | undefined {
  if (/\.csv$/i.test(file)) return 'csv';
  if (/\.(jsonl|ndjson)$/i.test(file)) return 'jsonl';
  return undefined;
}

export function readRows(
  text: string,
  format: InputFormat,
  opts: { amountFormat?: AmountFormat } = {},
): Input {
  const amountFormat = opts.amountFormat ?? '1234.56';
  return format === 'csv' ? readCsv(text, amountFormat) : readJsonl(text, amountFormat);
}

function readCsv(text: string, amountFormat: AmountFormat): Input {
  type Parsed = { record: Record<string, string>; info: { lines: number }; raw: string };
  let records: Parsed[];
  let header: string[] = [];
  try {
    records = parse<Parsed>(text, {
      columns: (names: string[]) => (header = names.map((h) => h.trim())),
      skip_empty_lines: true,
      bom: true,
      info: true,
      raw: true,
    });
  } catch (err) {
    throw new InputError(`not valid CSV: ${(err as Error).message}`);
  }
  // Transaction columns are matched case-insensitively ("Date", "AMOUNT"); the rest pass through.
  const known = new Map<string, string>(); // header as written -> field
  for (const name of header) {
    const field = name.toLowerCase();
    if (COLUMNS.includes(field) && ![...known.values()].includes(field)) known.set(name, field);
  }
  const missing = REQUIRED.filter((f) => ![...known.values()].includes(f));
  if (header.length > 0 && missing.length > 0) {
    const optional = COLUMNS.filter((c) => !REQUIRED.includes(c)).join(', ');
    throw new InputError(
      `missing column(s) ${missing.map((c) => `"${c}"`).join(', ')}; the header row must name ` +
        `${REQUIRED.join(', ')} (in any case; optional: ${optional}). ` +
        `Found: ${header.map((h) => `"${h}"`).join(', ')}`,
    );
  }
  const extraColumns = header.filter((h) => !known.has(h));
  const rows = records.map(({ record, info, raw }) => {
    // info.lines is where the record ends; a quoted field may span lines.
    const line = info.lines - (raw.replace(/\r?\n$/, '').match(/\n/g)?.length ?? 0);
    const candidate: Record<string, unknown> = {};
    const extra: Extra = {};
    for (const [name, value] of Object.entries(record)) {
      const field = known.get(name);
      if (field === undefined) extra[name] = value;
      else if (value !== '') candidate[field] = value; // an empty optional cell: not given
    }
    return validate(line, candidate, extra, amountFormat);
  });
  return { rows, extraColumns };
}

function readJsonl(text: string, amountFormat: AmountFormat): Input {
  const rows: InputRow[] = [];
  const extraColumns = new Set<string>();
  for (const [i, source] of text.split(/\r?\n/).entries()) {
    if (source.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(source);
    } catch (err) {
      rows.push({
        line: i + 1,
        errors: [`not valid JSON: ${(err as Error).message}`],
        raw: {},
        extra: {},
      });
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      rows.push({ line: i + 1, errors: ['must be a JSON object'], raw: {}, extra: {} });
      continue;
    }
    const candidate: Record<string, unknown> = {};
    const extra: Extra = {};
    for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
      if (COLUMNS.includes(key)) candidate[key] = field;
      else {
        extra[key] = field;
        extraColumns.add(key);
      }
    }
    rows.push(validate(i + 1, candidate, extra, amountFormat));
  }
  return { rows, extraColumns: [...extraColumns] };
}

/** The row as a Transaction, or its errors in words (the amount read with `amountFormat`). */
function validate(
  line: number,
  candidate: Record<string, unknown>,
  extra: Extra,
  amountFormat: AmountFormat,
): InputRow {
  const errors: Array<{ field: string; text: string }> = [];
  const fields = { ...candidate };
  let amountError: string | undefined;
  if (typeof candidate.amount === 'string') {
    const amount = parseAmount(candidate.amount, amountFormat);
    if (typeof amount === 'number') fields.amount = amount;
    else {
      delete fields.amount;
      amountError = `amount ${amount.error}`;
      errors.push({ field: 'amount', text: amountError });
    }
  }
  try {
    const transaction = parseTransaction(fields);
    if (errors.length === 0) return { line, transaction, extra };
  } catch (err) {
    if (!(err instanceof HttpProblem)) throw err;
    for (const e of err.errors ?? []) {
      const field = 'pointer' in e ? e.pointer.slice(1) : '';
      // An unreadable amount is reported in terms of the file, not as "required".
      if (amountError !== undefined && field === 'amount') continue;
      errors.push({ field, text: 'pointer' in e ? `${field || 'row'} ${e.detail}` : e.detail });
    }
  }
  // In the order of the transaction's fields, as the service reports them.
  const order = (field: string) => (COLUMNS.includes(field) ? COLUMNS.indexOf(field) : -1);
  errors.sort((a, b) => order(a.field) - order(b.field));
  return { line, errors: errors.map((e) => e.text), raw: candidate, extra };
}

export { AMOUNT_FORMATS, type AmountFormat };
