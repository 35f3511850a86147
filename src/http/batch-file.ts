/**
 * A batch sent as a file: NDJSON (one transaction object per line) or CSV (a header row naming
 * date, description, amount and optionally currency, mcc, reference, in any case and order).
 * The body is parsed as it arrives, never held whole: split2 cuts NDJSON into lines, csv-parse
 * reads CSV records (both streams, both well kept). Each row is validated with the same schema
 * as a JSON transaction; a bad row is a 422 naming its line, and the batch stores nothing.
 */
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback, pipeline } from 'node:stream';
import { parse as csvParse } from 'csv-parse';
import type { Context } from 'koa';
import split2 from 'split2';
import { parseAmount } from '../cli/amount.js';
import type { Transaction } from '../heuristic/types.js';
import { type FieldError, HttpProblem, PROBLEM_TYPES } from './problem.js';
import { MAX_FILE_BATCH_SIZE, transactionSchema } from './schemas.js';
import { parseTransaction } from './validation.js';

export const FILE_MEDIA_TYPES = { ndjson: 'application/x-ndjson', csv: 'text/csv' } as const;
export type FileFormat = keyof typeof FILE_MEDIA_TYPES;

/**
 * Largest file body: 100,000 rows of about 1 KiB, more than any transaction needs (the longest
 * description is 500 characters, the longest reference 200).
 */
export const MAX_FILE_BODY_BYTES = 100 * 1024 * 1024;

/** At most this many rows' errors in one 422. */
const MAX_ERRORS = 100;

const COLUMNS = Object.keys(transactionSchema.properties);
const REQUIRED: readonly string[] = transactionSchema.required;

/** The body's file format, from Content-Type; undefined when it is not a file. */
export function fileFormatOf(ctx: Context): FileFormat | undefined {
  const type = ctx.is(FILE_MEDIA_TYPES.ndjson, 'application/jsonl', FILE_MEDIA_TYPES.csv);
  if (type === FILE_MEDIA_TYPES.csv) return 'csv';
  return type ? 'ndjson' : undefined;
}

/** Longest line of NDJSON, longest record of CSV: far more than any transaction needs. */
const MAX_LINE_BYTES = 64 * 1024;

/** 422 for an NDJSON line longer than MAX_LINE_BYTES (not read to its end). */
const overlong = (line: number) =>
  new HttpProblem(
    422,
    PROBLEM_TYPES.validation,
    'Invalid batch file',
    `Line ${line} of the file is longer than ${MAX_LINE_BYTES} bytes. Nothing was stored.`,
    [{ line, pointer: '', detail: `is longer than ${MAX_LINE_BYTES} bytes` }],
    { Connection: 'close' },
  );

const tooLarge = (detail: string) =>
  new HttpProblem(413, PROBLEM_TYPES.tooLarge, 'Content Too Large', detail, undefined, {
    Connection: 'close',
  });

/**
 * The file's transactions, validated, as they arrive; and the body's fingerprint (sha256 of its
 * bytes and format), available once they were all read. Iterating throws a 422 at the end when
 * any row was invalid (naming each bad row's line and field), a 413 as soon as the body passes
 * `maxRows` rows or `maxBytes` bytes.
 */
export function readFileBatch(
  ctx: Context,
  format: FileFormat,
  limits: { maxRows: number; maxBytes: number } = {
    maxRows: MAX_FILE_BATCH_SIZE,
    maxBytes: MAX_FILE_BODY_BYTES,
  },
): { transactions: AsyncIterable<Transaction>; fingerprint: () => string } {
  const encoding = ctx.get('Content-Encoding');
  if (encoding && encoding.toLowerCase() !== 'identity') {
    throw new HttpProblem(
      415,
      PROBLEM_TYPES.unsupportedMediaType,
      'Unsupported Media Type',
      `Send a file batch uncompressed (got Content-Encoding: ${encoding}).`,
    );
  }
  const declared = Number(ctx.get('Content-Length') || 0);
  if (declared > limits.maxBytes) {
    throw tooLarge(`The request body is larger than the limit of ${limits.maxBytes} bytes.`);
  }
  const hash = createHash('sha256').update(`${format}\n`);
  let bytes = 0;
  // NDJSON: newlines so far and the bytes since the last one, so that an overlong line (which
  // the line splitter would have to hold) is refused naming its number. CSV records may span
  // lines; csv-parse bounds them itself (max_record_size).
  let newlines = 0;
  let lineBytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      bytes += chunk.length;
      if (bytes > limits.maxBytes) {
        done(tooLarge(`The request body is larger than the limit of ${limits.maxBytes} bytes.`));
        return;
      }
      if (format === 'ndjson') {
        let start = 0;
        for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
          if (lineBytes + nl - start > MAX_LINE_BYTES) break;
          newlines += 1;
          lineBytes = 0;
          start = nl + 1;
        }
        const end = chunk.indexOf(10, start);
        lineBytes += (end === -1 ? chunk.length : end) - start;
        if (lineBytes > MAX_LINE_BYTES) {
          done(overlong(newlines + 1));
          return;
        }
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const req = ctx.req;
  // Not pipeline(req, ...): destroying the request would destroy the socket, and the answer
  // (413, 422) with it. What is left unread is discarded once the answer is sent.
  req.pipe(counter);
  counter.on('error', () => req.unpipe(counter));
  req.on('error', (err) => counter.destroy(err));
  req.on('close', () => {
    if (!req.complete) counter.destroy(new Error('the client closed the request'));
  });
  let digest: string | undefined;
  const fingerprint = () => (digest ??= hash.digest('hex'));
  const records = format === 'csv' ? csvRecords(counter) : ndjsonRecords(counter);
  return { transactions: validated(records, limits.maxRows), fingerprint };
}

/** A row of the file: where it starts, and its fields (or why it could not be read). */
interface FileRecord {
  line: number;
  /** The row's fields; none when the line could not be read at all. */
  fields?: Record<string, unknown>;
  /** What reading it found wrong already (an unreadable line, a CSV amount). */
  errors?: FieldError[];
}

async function* ndjsonRecords(body: Transform): AsyncGenerator<FileRecord> {
  const lines = pipeline(body, split2(), () => {});
  let line = 0;
  for await (const raw of lines as AsyncIterable<string>) {
    line += 1;
    // A byte-order mark before the first line is not part of it.
    const text = line === 1 ? raw.replace(/^\uFEFF/, '') : raw;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      yield { line, errors: [{ line, pointer: '', detail: `not valid JSON: ${String(err)}` }] };
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      yield { line, errors: [{ line, pointer: '', detail: 'each line must be a JSON object' }] };
      continue;
    }
    yield { line, fields: value as Record<string, unknown> };
  }
}

async function* csvRecords(body: Transform): AsyncGenerator<FileRecord> {
  const parser = csvParse({
    columns: (names: string[]) => checkHeader(names.map((h) => h.trim())),
    skip_empty_lines: true,
    bom: true,
    max_record_size: MAX_LINE_BYTES,
    info: true,
    raw: true,
  });
  const records = pipeline(body, parser, () => {});
  type Parsed = { record: Record<string, string>; info: { lines: number }; raw: string };
  try {
    for await (const { record, info, raw } of records as AsyncIterable<Parsed>) {
      // info.lines is where the record ends; a quoted field may span lines.
      const line = info.lines - (raw.replace(/\r?\n$/, '').match(/\n/g)?.length ?? 0);
      const fields: Record<string, unknown> = {};
      const errors: FieldError[] = [];
      for (const [name, value] of Object.entries(record)) {
        const field = name.toLowerCase();
        if (value === '') continue; // an empty optional cell: not given
        if (field !== 'amount') {
          fields[field] = value;
          continue;
        }
        const amount = parseAmount(value, '1234.56');
        if (typeof amount === 'number') fields.amount = amount;
        else {
          errors.push({
            line,
            pointer: '/amount',
            detail:
              `${JSON.stringify(value)} is not a plain number: write it like 15.49 or -3, ` +
              'without thousands separators (the CLI reads formatted amounts with ' +
              '--amount-format)',
          });
        }
      }
      yield { line, fields, errors };
    }
  } catch (err) {
    if (err instanceof HttpProblem) throw err;
    const e = err as { code?: string; lines?: number; message: string };
    if (typeof e.code !== 'string' || !e.code.startsWith('CSV_')) throw err;
    const line = e.lines ?? 1;
    throw new HttpProblem(
      422,
      PROBLEM_TYPES.validation,
      'Invalid batch file',
      `Line ${line} of the CSV file cannot be read: ${e.message}. Nothing was stored.`,
      [{ line, pointer: '', detail: e.message }],
    );
  }
}

/** The header row's columns as transaction fields, or a 422 naming what is missing or unknown. */
function checkHeader(names: string[]): string[] {
  const fields = names.map((n) => n.toLowerCase());
  const errors: FieldError[] = [];
  for (const [i, field] of fields.entries()) {
    if (!COLUMNS.includes(field)) {
      errors.push({
        line: 1,
        pointer: `/${field}`,
        detail:
          `column "${names[i]}" is not a transaction field (known: ${COLUMNS.join(', ')}); ` +
          'the CLI keeps extra columns of an export and joins them back to the results',
      });
    } else if (fields.indexOf(field) !== i) {
      errors.push({ line: 1, pointer: `/${field}`, detail: `column "${names[i]}" is repeated` });
    }
  }
  for (const field of REQUIRED) {
    if (!fields.includes(field)) {
      errors.push({ line: 1, pointer: `/${field}`, detail: `the header row must name "${field}"` });
    }
  }
  if (errors.length > 0) {
    throw new HttpProblem(
      422,
      PROBLEM_TYPES.validation,
      'Invalid batch file',
      `The CSV header (line 1) must name ${REQUIRED.join(', ')} and optionally ` +
        `${COLUMNS.filter((c) => !REQUIRED.includes(c)).join(', ')}, in any case and order; ` +
        'see `errors`. Nothing was stored.',
      errors,
    );
  }
  return names;
}

/** The valid transactions, in order; a 422 at the end if any row was not; 413 past `maxRows`. */
async function* validated(
  records: AsyncIterable<FileRecord>,
  maxRows: number,
): AsyncGenerator<Transaction> {
  const errors: FieldError[] = [];
  let badRows = 0;
  let rows = 0;
  for await (const record of records) {
    rows += 1;
    if (rows > maxRows) {
      throw tooLarge(`A file batch holds at most ${maxRows} transactions; nothing was stored.`);
    }
    const found = [...(record.errors ?? [])];
    let transaction: Transaction | undefined;
    if (record.fields) {
      try {
        transaction = parseTransaction(record.fields);
      } catch (err) {
        if (!(err instanceof HttpProblem)) throw err;
        const named = new Set(found.map((e) => 'pointer' in e && e.pointer));
        for (const e of err.errors ?? []) {
          // A CSV amount that did not read is reported as such, not as "required".
          if ('pointer' in e && named.has(e.pointer)) continue;
          found.push({ line: record.line, ...e });
        }
      }
    }
    if (found.length > 0 || !transaction) {
      badRows += 1;
      errors.push(...found.slice(0, MAX_ERRORS - errors.length));
      continue;
    }
    if (badRows === 0) yield transaction;
  }
  if (badRows > 0) {
    const first = errors[0] && 'line' in errors[0] ? errors[0].line : undefined;
    throw new HttpProblem(
      422,
      PROBLEM_TYPES.validation,
      'Invalid batch file',
      `${badRows} line(s) of the file are not valid transactions, the first at line ${first}; ` +
        `see \`errors\`${errors.length >= MAX_ERRORS ? ` (the first ${MAX_ERRORS})` : ''}. ` +
        'Nothing was stored.',
      errors,
    );
  }
  if (rows === 0) {
    throw new HttpProblem(
      422,
      PROBLEM_TYPES.validation,
      'Invalid batch file',
      'The file holds no transactions; send at least one. Nothing was stored.',
      [{ pointer: '', detail: 'the file holds no transactions' }],
    );
  }
}
