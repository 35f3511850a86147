/**
 * Row shapes and SQL helpers shared by the data-access modules. Each module under `sql/` holds
 * the statements of one aggregate; every exported function there is one statement, takes its
 * database handle, and says above it what it changes.
 */
import type { Knex } from 'knex';
import type { MatchResult, Transaction } from '../../heuristic/types.js';
import { prepared } from '../prepared.js';

/** What `error` holds on a job whose attempt failed. */
export interface JobError {
  /** `timeout` | `heuristic_error` | `non_retryable` | `lease_expired` | `result_not_stored` */
  code: string;
  message: string;
  /** The attempt that failed, from 1. */
  attempt: number;
}

export type JobStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'canceled';
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];
export const isTerminal = (status: JobStatus) => TERMINAL_STATUSES.includes(status);

/** An idempotency key and the hash of the request body it was first used with. */
export interface Idempotency {
  key: string;
  requestHash: string;
}

/**
 * Whose rows a read may see: a client id, or `null` for the service itself (runner, purge,
 * tests). Use-cases always pass the authenticated client, so another client's job is "not found".
 */
export type Owner = string | null;

export interface JobRow {
  id: string;
  client_id: string;
  /** Heuristic version and key ("version:key") for the result cache; null: not cacheable. */
  cache_key: string | null;
  /** Submission order (bigint as a decimal string). */
  seq: string;
  batch_id: string | null;
  batch_index: number | null;
  status: JobStatus;
  transaction: Transaction;
  result: MatchResult | null;
  error: JobError | null;
  attempts: number;
  max_attempts: number;
  run_after: Date;
  locked_by: string | null;
  locked_until: Date | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  /** The database's clock when `getJob` read the row: what `started_at` is compared with. */
  read_at?: Date;
}

/** A batch with the state of its jobs, counted per status. */
export interface BatchRow {
  id: string;
  client_id: string;
  size: number;
  created_at: Date;
  pending: number;
  running: number;
  succeeded: number;
  failed: number;
  canceled: number;
  /** First attempt start among its jobs. */
  started_at: Date | null;
  /** Latest finish among its jobs. */
  finished_at: Date | null;
  /** `seq` of its last pending job, for the Retry-After estimate. */
  last_pending_seq: string | null;
}

/** One transaction's outcome within a batch. */
export interface BatchItemRow {
  id: string;
  batch_index: number;
  status: JobStatus;
  reference: string | null;
  result: JobRow['result'];
  error: JobError | null;
}

/** The claim held by one attempt: what fenced writes match on. */
export interface Claim {
  id: string;
  attempts: number;
}

export const COLUMNS = `id, client_id, cache_key, seq, batch_id, batch_index, status, transaction, result, error, attempts,
  max_attempts, run_after, locked_by, locked_until, created_at, started_at, finished_at`;

/** COLUMNS qualified with a table name, for statements that join. */
export function prefixed(table: string): string {
  return COLUMNS.split(',')
    .map((c) => `${table}.${c.trim()}`)
    .join(', ');
}

/** SQL condition (with its binding) limiting `alias` rows to `owner`'s. */
export function ownedBy(alias: string, owner: Owner): [string, Knex.RawBinding[]] {
  return owner === null ? ['TRUE', []] : [`${alias}.client_id = ?`, [owner]];
}

/** `rows` through a named prepared statement (see db/prepared.ts): for the hot statements. */
export async function preparedRows<R = JobRow>(
  db: Knex,
  name: string,
  sql: string,
  bindings: readonly Knex.RawBinding[],
): Promise<R[]> {
  return (await prepared<R>(db, name, sql, bindings)).rows;
}

export async function rows<R = JobRow>(
  db: Knex,
  sql: string,
  bindings: readonly Knex.RawBinding[] = [],
): Promise<R[]> {
  const res = await db.raw<{ rows: R[] }>(sql, bindings);
  return res.rows;
}
