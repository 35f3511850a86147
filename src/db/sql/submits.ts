/**
 * Statements that submit single jobs: the insert (one job alone, or the submits arriving
 * together in one statement), and the NOTIFY that tells runners. Batches are in batches.ts.
 */
import type { Knex } from 'knex';
import { PENDING_CHANNEL } from '../channels.js';
import { type Appended, EVENTS, NOTHING_APPENDED, appended, logFinished } from './events.js';
import { COLUMNS, type Idempotency, type JobRow, preparedRows, rows } from './rows.js';
import type { Transaction } from '../../heuristic/types.js';
import { GroupCommit, writeApartOnError } from '../../group-commit.js';

/**
 * Columns an insert of jobs sets beside each row's own (single submits and batches): see
 * `startValues`.
 */
export const START_COLUMNS =
  'status, result, started_at, finished_at, locked_by, locked_until, attempts';

/**
 * Values for START_COLUMNS: succeeded at once when `hit` (a cached result, SQL) is not null;
 * else running under `worker`'s claim (SQL, a worker id or null) for `leaseMs` (SQL), as a
 * claim would set it; else pending. Without `worker`, succeeded or pending.
 */
export function startValues(hit: string, worker = 'NULL::text', leaseMs = 'NULL::int'): string {
  const runs = `${hit} IS NULL AND ${worker} IS NOT NULL`;
  return `CASE WHEN ${hit} IS NOT NULL THEN 'succeeded'
         WHEN ${runs} THEN 'running' ELSE 'pending' END,
    ${hit},
    CASE WHEN ${hit} IS NOT NULL OR ${runs} THEN now() END,
    CASE WHEN ${hit} IS NOT NULL THEN now() END,
    CASE WHEN ${runs} THEN ${worker} END,
    CASE WHEN ${runs} THEN now() + make_interval(secs => ${leaseMs} / 1000.0) END,
    CASE WHEN ${runs} THEN 1 ELSE 0 END`;
}

// NOTIFYs runners (in every process) that jobs are pending, in a statement of its own. Not in
// the submitting transaction: a transaction that NOTIFYs holds Postgres's global notify lock
// from its pre-commit until its commit is flushed, so notifying inserts commit one at a time,
// each waiting for the previous one's WAL flush (pgbench, 32 clients: INSERT alone 8,700-11,900
// tps, INSERT + pg_notify 375-545 tps). Sent on its own, coalesced (runner/announce.ts), the
// NOTIFY is one small commit (33 bytes of WAL) per round of submits, and the inserts beside it
// commit together again (pgbench: 8,472 tps next to a stream of NOTIFYs). `origin` (the
// payload) names the announcing process, which has woken its own runner already (channels.ts).
export async function announcePending(db: Knex, origin = ''): Promise<void> {
  await preparedRows(db, 'merchant_announce_pending', `SELECT pg_notify(?, ?)`, [
    PENDING_CHANNEL,
    origin,
  ]);
}

export interface JobToInsert {
  id: string;
  /**
   * Inserted already running under this claim (unless answered from the cache): this process's
   * runner had a free slot and nothing queued (Runner.reserve), so the job skips the claim.
   */
  runBy?: { workerId: string; leaseMs: number } | undefined;
  clientId: string;
  transaction: Transaction;
  maxAttempts: number;
  idempotency?: Idempotency;
  /** Result-cache key; a cached answer stores the job already succeeded. */
  cacheKey?: string | null;
}

/**
 * What an insert answers for one job: its row (undefined: its idempotency key was taken) and the
 * events its statement appended. A statement that stores several jobs reports its events with
 * one of them, so that they are reported once.
 */
export interface Stored {
  row: JobRow | undefined;
  events: Appended;
}

// Inserts one job: pending (the caller announces it: announcePending); or, when its cache key
// has a cached answer, succeeded at once with its event appended. With an idempotency key
// already taken, inserts nothing and returns the job that holds the key (`created: false`) with
// the hash of the body it was submitted with. `insert` writes the row: by default with a
// statement of its own; the store passes `jobInserter`'s, which stores concurrent submits
// together.
export async function insertJob(
  db: Knex,
  job: JobToInsert,
  insert: (job: JobToInsert) => Promise<Stored> = (one) => insertAlone(db, one),
): Promise<{ row: JobRow; created: boolean; requestHash: string | null; events: Appended }> {
  const { idempotency } = job;
  for (let tries = 0; tries < 3; tries++) {
    const { row, events } = await insert(job);
    if (row) {
      return { row, created: true, requestHash: idempotency?.requestHash ?? null, events };
    }
    if (!idempotency) throw new Error('insert returned no row');
    const [existing] = await rows<JobRow & { request_hash: string }>(
      db,
      `SELECT ${COLUMNS}, request_hash FROM jobs WHERE client_id = ? AND idempotency_key = ?`,
      [job.clientId, idempotency.key],
    );
    if (existing) {
      const { request_hash: requestHash, ...existingRow } = existing;
      return { row: existingRow, created: false, requestHash, events: NOTHING_APPENDED };
    }
    // The job holding the key was purged between the two statements: insert again.
  }
  throw new Error('idempotent insert kept conflicting with a purge');
}

// One job with a statement of its own.
async function insertAlone(db: Knex, job: JobToInsert): Promise<Stored> {
  const [inserted] = await (job.cacheKey == null ? insertUncached(db, job) : insertCached(db, job));
  if (!inserted) return { row: undefined, events: NOTHING_APPENDED };
  const { events, ...row } = inserted;
  return { row, events: appended(events) };
}

// A job that may be answered from the result cache: looked up, stored succeeded with its event
// appended on a hit, else pending (or running: `runBy`).
function insertCached(db: Knex, job: JobToInsert) {
  return preparedRows<JobRow & { events: unknown }>(
    db,
    'merchant_insert_job',
    `WITH hit AS (
         SELECT result FROM results WHERE cache_key = ? AND expires_at > now()
       ), inserted AS (
         INSERT INTO jobs (id, client_id, transaction, max_attempts, idempotency_key, request_hash,
                           cache_key, ${START_COLUMNS})
         SELECT ?, ?, ?::jsonb, ?, ?, ?, ?::text,
                ${startValues('hit.result', 'w.worker', 'w.lease_ms')}
         FROM (SELECT ?::text AS worker, ?::int AS lease_ms) AS w LEFT JOIN hit ON true
         ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING ${COLUMNS}
       ), finished AS (
         SELECT id, client_id, batch_id, status FROM inserted WHERE status = 'succeeded'
       ), ${logFinished('finished', 'none')}
       SELECT inserted.*, ${EVENTS} AS events
       FROM inserted`,
    [job.cacheKey ?? null, ...rowValues(job), job.cacheKey ?? null, ...runValues(job)],
  );
}

// A job without a cache key (the cache is off, or the transaction is not cacheable): pending (or
// running: `runBy`), so nothing to look up and no event to append. Without the cache lookup, the
// event CTEs and the statement trigger they fire on job_events, Postgres runs 16-19 % more of
// these per second than of the statement above (pgbench, 8 clients, two rounds).
function insertUncached(db: Knex, job: JobToInsert) {
  return preparedRows<JobRow & { events?: undefined }>(
    db,
    'merchant_insert_pending_job',
    `INSERT INTO jobs (id, client_id, transaction, max_attempts, idempotency_key, request_hash,
                       ${START_COLUMNS})
     SELECT ?, ?, ?::jsonb, ?, ?, ?, ${startValues('NULL::jsonb', 'w.worker', 'w.lease_ms')}
     FROM (SELECT ?::text AS worker, ?::int AS lease_ms) AS w
     ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
     RETURNING ${COLUMNS}`,
    [...rowValues(job), ...runValues(job)],
  );
}

// The (worker, lease_ms) a one-job insert binds: its claim, or nulls (pending).
function runValues(job: JobToInsert) {
  return [job.runBy?.workerId ?? null, job.runBy?.leaseMs ?? null];
}

// The values of (id, client_id, transaction, max_attempts, idempotency_key, request_hash), as
// both one-job inserts bind them.
function rowValues(job: JobToInsert) {
  return [
    job.id,
    job.clientId,
    JSON.stringify(job.transaction),
    job.maxAttempts,
    job.idempotency?.key ?? null,
    job.idempotency?.requestHash ?? null,
  ];
}

// Inserts jobs as insertCached (`cached`) or insertUncached does, all in one statement: one
// commit, one round trip and one plan for the lot. Answers for each job in the order given.
export async function insertJobs(
  db: Knex,
  jobs: readonly JobToInsert[],
  cached: boolean,
): Promise<Stored[]> {
  const source = `unnest(?::uuid[], ?::uuid[], ?::text[], ?::int[], ?::text[], ?::text[], ?::text[],
                         ?::text[], ?::int[])
       WITH ORDINALITY AS t(id, client_id, tx, max_attempts, key, hash, cache_key, worker,
                            lease_ms, ord)`;
  const conflict = `ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL
       DO NOTHING RETURNING ${COLUMNS}`;
  const inserted = await preparedRows<JobRow & { events?: unknown }>(
    db,
    cached ? 'merchant_insert_jobs' : 'merchant_insert_pending_jobs',
    cached
      ? `WITH inserted AS (
           INSERT INTO jobs (id, client_id, transaction, max_attempts, idempotency_key,
                             request_hash, cache_key, ${START_COLUMNS})
           SELECT t.id, t.client_id, t.tx::jsonb, t.max_attempts, t.key, t.hash, t.cache_key,
                  ${startValues('hit.result', 't.worker', 't.lease_ms')}
           FROM ${source}
             LEFT JOIN LATERAL (
               SELECT result FROM results WHERE cache_key = t.cache_key AND expires_at > now()
             ) hit ON true
           ORDER BY t.ord
           ${conflict}
         ), finished AS (
           SELECT id, client_id, batch_id, status FROM inserted WHERE status = 'succeeded'
         ), ${logFinished('finished', 'none')}
         SELECT inserted.*, CASE WHEN row_number() OVER () = 1 THEN ${EVENTS} END AS events
         FROM inserted`
      : `INSERT INTO jobs (id, client_id, transaction, max_attempts, idempotency_key, request_hash,
                           ${START_COLUMNS})
         SELECT t.id, t.client_id, t.tx::jsonb, t.max_attempts, t.key, t.hash,
                ${startValues('NULL::jsonb', 't.worker', 't.lease_ms')}
         FROM ${source}
         ORDER BY t.ord
         ${conflict}`,
    [
      jobs.map((job) => job.id),
      jobs.map((job) => job.clientId),
      jobs.map((job) => JSON.stringify(job.transaction)),
      jobs.map((job) => job.maxAttempts),
      // Knex's binding type has no arrays with nulls in them; pg sends them as NULL elements.
      jobs.map((job) => job.idempotency?.key ?? null) as string[],
      jobs.map((job) => job.idempotency?.requestHash ?? null) as string[],
      jobs.map((job) => job.cacheKey ?? null) as string[],
      jobs.map((job) => job.runBy?.workerId ?? null) as string[],
      jobs.map((job) => job.runBy?.leaseMs ?? null) as number[],
    ],
  );
  const byId = new Map(inserted.map(({ events: _events, ...row }) => [row.id, row]));
  const events = appended(inserted.map((row) => row.events));
  const reporter = jobs.findIndex((job) => byId.has(job.id));
  return jobs.map((job, i) => ({
    row: byId.get(job.id),
    events: i === reporter ? events : NOTHING_APPENDED,
  }));
}

// Stores jobs as they arrive, concurrent ones together: a GroupCommit for jobs with a cache key
// and one for jobs without (the cheaper statement), each with one statement in flight while the
// submits arriving meanwhile make its next one. Idle, a submit is written at once, with those
// the same callback and the promise callbacks it set off make (group-commit.ts). A
// statement of several that fails with an error that is not transient is tried again job by
// job, so a submit fails only with its own error.
export function jobInserter(
  db: Knex,
  opts: { maxJobs?: number; onSplit?: (err: unknown, jobs: number) => void } = {},
): (job: JobToInsert) => Promise<Stored> {
  const group = (cached: boolean) =>
    new GroupCommit(
      writeApartOnError(
        (jobs: JobToInsert[]) =>
          jobs.length === 1
            ? insertAlone(db, jobs[0] as JobToInsert).then((stored) => [stored])
            : insertJobs(db, jobs, cached),
        opts.onSplit,
      ),
      opts.maxJobs ?? 500,
    );
  const [plain, cached] = [group(false), group(true)];
  return async (job) => {
    const outcome = await (job.cacheKey == null ? plain : cached).submit(job);
    if ('error' in outcome) throw outcome.error;
    return outcome.row;
  };
}
