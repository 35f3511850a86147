import type { BatchItemRow, BatchRow, JobRow } from '../db/sql/rows.js';
import { batchDone } from '../jobs/usecases.js';

/** A job as the API shows it. Timestamps are ISO 8601 UTC; `started_at` is the latest attempt's. */
export interface JobResource {
  id: string;
  status: JobRow['status'];
  transaction: JobRow['transaction'];
  result: JobRow['result'];
  error: JobRow['error'];
  attempts: number;
  batch: { id: string; index: number } | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export function jobResource(row: JobRow): JobResource {
  return {
    id: row.id,
    status: row.status,
    transaction: row.transaction,
    result: row.result,
    error: row.error,
    attempts: row.attempts,
    batch:
      row.batch_id !== null && row.batch_index !== null
        ? { id: row.batch_id, index: row.batch_index }
        : null,
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    finished_at: row.finished_at?.toISOString() ?? null,
  };
}

export const jobLocation = (id: string) => `/jobs/${id}`;
export const batchLocation = (id: string) => `/batches/${id}`;

export interface BatchResource {
  id: string;
  size: number;
  counts: Record<JobRow['status'], number>;
  finished: number;
  done: boolean;
  progress: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  results: string;
  job_ids?: string[];
}

const finishedOf = (row: BatchRow) => row.succeeded + row.failed + row.canceled;

export function batchResource(row: BatchRow): BatchResource {
  const finished = finishedOf(row);
  const done = batchDone(row);
  return {
    id: row.id,
    size: row.size,
    counts: {
      pending: row.pending,
      running: row.running,
      succeeded: row.succeeded,
      failed: row.failed,
      canceled: row.canceled,
    },
    finished,
    done,
    progress: Math.floor((finished / row.size) * 10_000) / 10_000,
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    finished_at: done ? (row.finished_at?.toISOString() ?? null) : null,
    results: `${batchLocation(row.id)}/results`,
  };
}

export function batchItem(row: BatchItemRow) {
  return {
    index: row.batch_index,
    job_id: row.id,
    reference: row.reference,
    status: row.status,
    result: row.result,
    error: row.error,
  };
}

/**
 * The largest position of each cursor kind: what its column holds (`seq` and event ids are
 * bigints, `batch_index` an integer). A larger number never came from us, and Postgres would refuse it.
 */
const CURSOR_MAX = { seq: 2n ** 63n - 1n, index: 2n ** 31n - 1n, event: 2n ** 63n - 1n } as const;

/** Opaque page cursors: the position after which the next page starts. */
export const cursors = {
  encode: (kind: 'seq' | 'index' | 'event', position: string | number) =>
    Buffer.from(`${kind}:${position}`).toString('base64url'),
  /** The position, or `undefined` when the cursor is not one of ours of this kind. */
  decode(kind: 'seq' | 'index' | 'event', cursor: string): string | undefined {
    const text = Buffer.from(cursor, 'base64url').toString();
    const [k, position] = text.split(':');
    return k === kind &&
      position !== undefined &&
      /^\d{1,19}$/.test(position) &&
      BigInt(position) <= CURSOR_MAX[kind]
      ? position
      : undefined;
  },
};
