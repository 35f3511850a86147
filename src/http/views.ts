import type { JobRow } from '../jobs/store.js';

/** A job as the API shows it. Timestamps are ISO 8601 UTC; `started_at` is the latest attempt's. */
export interface JobResource {
  id: string;
  status: JobRow['status'];
  transaction: JobRow['transaction'];
  result: JobRow['result'];
  error: JobRow['error'];
  attempts: number;
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
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    finished_at: row.finished_at?.toISOString() ?? null,
  };
}

export const jobLocation = (id: string) => `/jobs/${id}`;
