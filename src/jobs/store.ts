/**
 * Every SQL statement about jobs. Each function is one statement, takes its database handle,
 * and says above it what it changes. Routes and the runner never build queries themselves.
 *
 * Fencing: a claim increments `attempts` and sets `locked_by`; every later write for that attempt
 * matches on (id, status = 'running', locked_by, attempts), so an answer from an attempt that
 * lost its lease changes nothing.
 */
import type { Knex } from 'knex';
import { prepared } from '../db/prepared.js';
import type { Merchant, Transaction } from '../heuristic/types.js';
import { newId } from '../ids.js';
import type { JobError } from './errors.js';

export type JobStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'canceled';
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];

/** Channel on which a NOTIFY announces that jobs became claimable. */
export const PENDING_CHANNEL = 'merchant_jobs_pending';

/**
 * Channel on which a NOTIFY announces that a job became terminal (succeeded, failed, canceled).
 * Payload: the job id, then a space and its batch id when it belongs to a batch. Long-poll
 * waiters and runners (to abort a canceled attempt) listen on it.
 */
export const FINISHED_CHANNEL = 'merchant_jobs_finished';

/** SQL expression: the FINISHED_CHANNEL payload for the row in scope. */
const FINISHED_PAYLOAD = `id::text || coalesce(' ' || batch_id::text, '')`;

/** An idempotency key and the hash of the request body it was first used with. */
export interface Idempotency {
  key: string;
  requestHash: string;
}

/**
 * Whose rows a read may see: a client id, or `null` for the service itself (runner, purge,
 * tests). Routes always pass the authenticated client, so another client's job is "not found".
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
  result: { merchant: Merchant | null } | null;
  error: JobError | null;
  attempts: number;
  max_attempts: number;
  run_after: Date;
  locked_by: string | null;
  locked_until: Date | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
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

const COLUMNS = `id, client_id, cache_key, seq, batch_id, batch_index, status, transaction, result, error, attempts,
  max_attempts, run_after, locked_by, locked_until, created_at, started_at, finished_at`;

/** Columns a submit sets from the result cache: succeeded at once on a hit, else pending. */
const CACHED_COLUMNS = 'status, result, started_at, finished_at';
function cachedValues(hit: string): string {
  return `CASE WHEN ${hit} IS NULL THEN 'pending' ELSE 'succeeded' END, ${hit},
    CASE WHEN ${hit} IS NULL THEN NULL ELSE now() END,
    CASE WHEN ${hit} IS NULL THEN NULL ELSE now() END`;
}

/** COLUMNS qualified with a table name, for statements that join. */
function prefixed(table: string): string {
  return COLUMNS.split(',')
    .map((c) => `${table}.${c.trim()}`)
    .join(', ');
}

/** `rows` through a named prepared statement (see db/prepared.ts): for the hot statements. */
async function preparedRows(
  db: Knex,
  name: string,
  sql: string,
  bindings: readonly Knex.RawBinding[],
): Promise<JobRow[]> {
  return (await prepared<JobRow>(db, name, sql, bindings)).rows;
}

async function rows(
  db: Knex,
  sql: string,
  bindings: readonly Knex.RawBinding[],
): Promise<JobRow[]> {
  const res = await db.raw<{ rows: JobRow[] }>(sql, bindings);
  return res.rows;
}

// Inserts one pending job and NOTIFYs waiting runners (delivered when the insert commits). With
// an idempotency key already taken, inserts nothing and returns the job that holds the key
// (`created: false`) with the hash of the body it was submitted with.
export async function insertJob(
  db: Knex,
  job: {
    id: string;
    clientId: string;
    transaction: Transaction;
    maxAttempts: number;
    idempotency?: Idempotency;
    /** Result-cache key; a cached answer stores the job already succeeded. */
    cacheKey?: string | null;
  },
): Promise<{ row: JobRow; created: boolean; requestHash: string | null }> {
  const { idempotency } = job;
  for (let tries = 0; tries < 3; tries++) {
    const [row] = await preparedRows(
      db,
      'merchant_insert_job',
      `WITH hit AS (
         SELECT result FROM results WHERE cache_key = ? AND expires_at > now()
       ), inserted AS (
         INSERT INTO jobs (id, client_id, transaction, max_attempts, idempotency_key, request_hash,
                           cache_key, ${CACHED_COLUMNS})
         SELECT ?, ?, ?::jsonb, ?, ?, ?, ?::text, ${cachedValues('hit.result')}
         FROM (SELECT 1) AS one LEFT JOIN hit ON true
         ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING ${COLUMNS}
       )
       SELECT inserted.*, CASE WHEN status = 'pending' THEN pg_notify(?, '') END AS notified
       FROM inserted`,
      [
        job.cacheKey ?? null,
        job.id,
        job.clientId,
        JSON.stringify(job.transaction),
        job.maxAttempts,
        idempotency?.key ?? null,
        idempotency?.requestHash ?? null,
        job.cacheKey ?? null,
        PENDING_CHANNEL,
      ],
    );
    if (row) return { row, created: true, requestHash: idempotency?.requestHash ?? null };
    if (!idempotency) throw new Error('insert returned no row');
    const [existing] = await db
      .raw<{ rows: (JobRow & { request_hash: string })[] }>(
        `SELECT ${COLUMNS}, request_hash FROM jobs WHERE client_id = ? AND idempotency_key = ?`,
        [job.clientId, idempotency.key],
      )
      .then((r) => r.rows);
    if (existing) {
      const { request_hash: requestHash, ...existingRow } = existing;
      return { row: existingRow, created: false, requestHash };
    }
    // The job holding the key was purged between the two statements: insert again.
  }
  throw new Error('idempotent insert kept conflicting with a purge');
}

// Inserts a batch and one pending job per transaction (batch_index = position, a new UUIDv7
// id each), in one statement, and NOTIFYs runners. With an idempotency key already taken,
// inserts nothing and returns the batch that holds the key (`created: false`) with its body hash.
export async function insertBatch(
  db: Knex,
  batch: {
    id: string;
    clientId: string;
    transactions: readonly Transaction[];
    maxAttempts: number;
    idempotency?: Idempotency;
    /** Result-cache key per transaction (null: not cacheable); hits are stored succeeded. */
    cacheKeys?: readonly (string | null)[];
  },
): Promise<{
  id: string;
  jobIds: string[];
  created: boolean;
  requestHash: string | null;
  /** The new batch as getBatch would read it right after the insert; only when `created`. */
  row?: BatchRow;
}> {
  const { idempotency } = batch;
  for (let tries = 0; tries < 3; tries++) {
    const res = await prepared<{
      id: string;
      created_at: Date;
      job_ids: string[];
      last_pending_seq: string | null;
      cached: number;
      finished_at: Date | null;
    }>(
      db,
      'merchant_insert_batch',
      `WITH b AS (
         INSERT INTO batches (id, client_id, size, idempotency_key, request_hash)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING id, client_id, created_at
       ), j AS (
         INSERT INTO jobs (id, client_id, batch_id, batch_index, transaction, max_attempts,
                           cache_key, ${CACHED_COLUMNS})
         SELECT (?::uuid[])[t.ord::int], b.client_id, b.id, t.ord - 1, t.tx, ?, k.key,
                ${cachedValues('r.result')}
         FROM b, jsonb_array_elements(?::jsonb) WITH ORDINALITY AS t(tx, ord)
         JOIN jsonb_array_elements_text(?::jsonb) WITH ORDINALITY AS k(key, ord) ON k.ord = t.ord
         LEFT JOIN results r ON r.cache_key = k.key AND r.expires_at > now()
         ORDER BY t.ord
         RETURNING id, batch_index, seq, status, finished_at
       )
       SELECT b.id, b.created_at, array_agg(j.id ORDER BY j.batch_index) AS job_ids,
              max(j.seq) FILTER (WHERE j.status = 'pending') AS last_pending_seq,
              count(*) FILTER (WHERE j.status = 'succeeded')::int AS cached,
              max(j.finished_at) AS finished_at,
              CASE WHEN bool_or(j.status = 'pending') THEN pg_notify(?, '') END
       FROM b, j GROUP BY b.id, b.created_at`,
      [
        batch.id,
        batch.clientId,
        batch.transactions.length,
        idempotency?.key ?? null,
        idempotency?.requestHash ?? null,
        batch.transactions.map(() => newId()),
        batch.maxAttempts,
        JSON.stringify(batch.transactions),
        JSON.stringify(batch.transactions.map((_, i) => batch.cacheKeys?.[i] ?? null)),
        PENDING_CHANNEL,
      ],
    );
    const [created] = res.rows;
    if (created) {
      return {
        id: created.id,
        jobIds: created.job_ids,
        created: true,
        requestHash: idempotency?.requestHash ?? null,
        row: {
          id: created.id,
          client_id: batch.clientId,
          size: batch.transactions.length,
          created_at: created.created_at,
          pending: batch.transactions.length - created.cached,
          running: 0,
          succeeded: created.cached,
          failed: 0,
          canceled: 0,
          started_at: created.finished_at,
          finished_at: created.finished_at,
          last_pending_seq: created.last_pending_seq,
        },
      };
    }
    if (!idempotency) throw new Error('batch insert returned no row');
    const existing = await db.raw<{
      rows: { id: string; request_hash: string; job_ids: string[] | null }[];
    }>(
      `SELECT b.id, b.request_hash,
         (SELECT array_agg(j.id ORDER BY j.batch_index) FROM jobs j WHERE j.batch_id = b.id)
           AS job_ids
       FROM batches b WHERE b.client_id = ? AND b.idempotency_key = ?`,
      [batch.clientId, idempotency.key],
    );
    const [found] = existing.rows;
    if (found) {
      return {
        id: found.id,
        jobIds: found.job_ids ?? [],
        created: false,
        requestHash: found.request_hash,
      };
    }
  }
  throw new Error('idempotent batch insert kept conflicting with a purge');
}

/** SQL condition (with its binding) limiting `alias` rows to `owner`'s. */
function ownedBy(alias: string, owner: Owner): [string, Knex.RawBinding[]] {
  return owner === null ? ['TRUE', []] : [`${alias}.client_id = ?`, [owner]];
}

// Reads one job of `owner`; changes nothing.
export async function getJob(db: Knex, id: string, owner: Owner): Promise<JobRow | undefined> {
  const [own, ownBindings] = ownedBy('jobs', owner);
  const name = owner === null ? 'merchant_get_job_any' : 'merchant_get_job';
  const [row] = await preparedRows(
    db,
    name,
    `SELECT ${COLUMNS} FROM jobs WHERE id = ? AND ${own}`,
    [id, ...ownBindings],
  );
  return row;
}

// Reads one batch of `owner` and counts its jobs per status; changes nothing.
export async function getBatch(db: Knex, id: string, owner: Owner): Promise<BatchRow | undefined> {
  const [own, ownBindings] = ownedBy('b', owner);
  const res = await db.raw<{ rows: BatchRow[] }>(
    `SELECT b.id, b.client_id, b.size, b.created_at,
       count(*) FILTER (WHERE j.status = 'pending')::int   AS pending,
       count(*) FILTER (WHERE j.status = 'running')::int   AS running,
       count(*) FILTER (WHERE j.status = 'succeeded')::int AS succeeded,
       count(*) FILTER (WHERE j.status = 'failed')::int    AS failed,
       count(*) FILTER (WHERE j.status = 'canceled')::int  AS canceled,
       min(j.started_at) AS started_at,
       max(j.finished_at) AS finished_at,
       max(j.seq) FILTER (WHERE j.status = 'pending') AS last_pending_seq
     FROM batches b LEFT JOIN jobs j ON j.batch_id = b.id
     WHERE b.id = ? AND ${own}
     GROUP BY b.id`,
    [id, ...ownBindings],
  );
  return res.rows[0];
}

// Reads up to `limit` items of one of `owner`'s batches with batch_index > `afterIndex`, in
// submission order.
export async function getBatchItems(
  db: Knex,
  opts: { batchId: string; owner: Owner; afterIndex: number; limit: number },
): Promise<BatchItemRow[]> {
  const [own, ownBindings] = ownedBy('jobs', opts.owner);
  const res = await db.raw<{ rows: BatchItemRow[] }>(
    `SELECT id, batch_index, status, transaction->>'reference' AS reference, result, error
     FROM jobs WHERE batch_id = ? AND batch_index > ? AND ${own}
     ORDER BY batch_index LIMIT ?`,
    [opts.batchId, opts.afterIndex, ...ownBindings, opts.limit],
  );
  return res.rows;
}

// Reads up to `limit` of `owner`'s jobs newest first (seq below `beforeSeq` when given),
// optionally only in `statuses` and only of one batch; changes nothing.
export function listJobs(
  db: Knex,
  opts: {
    owner: Owner;
    statuses?: readonly JobStatus[];
    batchId?: string;
    beforeSeq?: string;
    limit: number;
  },
): Promise<JobRow[]> {
  const [own, ownBindings] = ownedBy('jobs', opts.owner);
  const where: string[] = [own];
  const bindings: Knex.RawBinding[] = [...ownBindings];
  if (opts.statuses) {
    where.push('status = ANY(?::text[])');
    bindings.push([...opts.statuses]);
  }
  if (opts.batchId) {
    where.push('batch_id = ?');
    bindings.push(opts.batchId);
  }
  if (opts.beforeSeq) {
    where.push('seq < ?::bigint');
    bindings.push(opts.beforeSeq);
  }
  const filter = `WHERE ${where.join(' AND ')}`;
  return rows(db, `SELECT ${COLUMNS} FROM jobs ${filter} ORDER BY seq DESC LIMIT ?`, [
    ...bindings,
    opts.limit,
  ]);
}

// Counts pending jobs submitted before `seq`, stopping at `cap` (a bounded index scan).
export async function countPendingBefore(db: Knex, seq: string, cap: number): Promise<number> {
  const res = await db.raw<{ rows: { n: number }[] }>(
    `SELECT count(*)::int AS n FROM (
       SELECT 1 FROM jobs WHERE status = 'pending' AND seq < ?::bigint LIMIT ?
     ) ahead`,
    [seq, cap],
  );
  return res.rows[0]?.n ?? 0;
}

// Counts the distinct workers holding running jobs: how many runners share the queue.
export async function countActiveWorkers(db: Knex): Promise<number> {
  const res = await db.raw<{ rows: { n: number }[] }>(
    `SELECT count(DISTINCT locked_by)::int AS n FROM jobs WHERE status = 'running'`,
  );
  return res.rows[0]?.n ?? 0;
}

// Sets status=canceled and finished_at=now() on a pending or running job of `owner` (clearing
// any lease, so the running attempt's fenced writes change nothing) and NOTIFYs
// FINISHED_CHANNEL, which tells the runner holding it to abort. Returns nothing when the job is
// missing, someone else's, or terminal.
export async function cancelJob(
  db: Knex,
  id: string,
  owner: Owner,
): Promise<{ row: JobRow; previousStatus: JobStatus } | undefined> {
  const [own, ownBindings] = ownedBy('jobs', owner);
  const res = await db.raw<{ rows: (JobRow & { previous_status: JobStatus })[] }>(
    `WITH target AS (
       SELECT id, status FROM jobs
       WHERE id = ? AND status IN ('pending', 'running') AND ${own}
       FOR UPDATE
     ), canceled AS (
       UPDATE jobs SET status = 'canceled', finished_at = now(),
         locked_by = NULL, locked_until = NULL
       FROM target WHERE jobs.id = target.id
       RETURNING ${prefixed('jobs')}, target.status AS previous_status
     )
     SELECT canceled.*, pg_notify(?, ${FINISHED_PAYLOAD}) AS notified FROM canceled`,
    [id, ...ownBindings, FINISHED_CHANNEL],
  );
  const [found] = res.rows;
  if (!found) return undefined;
  const { previous_status: previousStatus, ...row } = found;
  return { row, previousStatus };
}

/**
 * SQL condition: the job in `alias` is not waiting on a flight, i.e. no other job is computing
 * its cache key right now (its leader's completion will complete it).
 */
function notInFlight(alias: string): string {
  return `(${alias}.cache_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM flights f JOIN jobs leader ON leader.id = f.job_id
    WHERE f.cache_key = ${alias}.cache_key
      AND leader.status = 'running' AND leader.attempts = f.attempts))`;
}

// Sets status=running, locked_by, locked_until=now()+lease, started_at=now(), attempts+1 for up to
// `limit` due pending jobs (not those waiting on another job computing their cache key),
// skipping rows other claimers hold, and last_claimed_at=now() on the
// clients served. Fair share: clients take turns, longest unserved first, each contributing its
// oldest due job per turn; so one client's backlog of any size delays another client's first
// job by at most one turn per client with due work.
export function claimJobs(
  db: Knex,
  opts: { workerId: string; limit: number; leaseMs: number },
): Promise<JobRow[]> {
  // Candidates beyond `limit` let concurrent claimers (other processes) skip each other's rows.
  const window = opts.limit * 4;
  return preparedRows(
    db,
    'merchant_claim_jobs',
    `WITH turns AS (
       SELECT c.id, row_number() OVER (ORDER BY c.last_claimed_at NULLS FIRST, c.id) AS turn
       FROM clients c
       WHERE EXISTS (SELECT 1 FROM jobs j
                     WHERE j.client_id = c.id AND j.status = 'pending' AND j.run_after <= now())
       ORDER BY c.last_claimed_at NULLS FIRST, c.id
       LIMIT ?
     ), candidates AS (
       SELECT q.id, q.rank, t.turn
       FROM turns t CROSS JOIN LATERAL (
         SELECT id, row_number() OVER (ORDER BY run_after, seq) AS rank FROM (
           SELECT id, run_after, seq FROM jobs AS due
           WHERE client_id = t.id AND status = 'pending' AND run_after <= now()
             AND ${notInFlight('due')}
           ORDER BY run_after, seq
           LIMIT ?
         ) oldest
       ) q
       ORDER BY q.rank, t.turn
       LIMIT ?
     ), picked AS (
       SELECT j.id FROM jobs j JOIN candidates c ON c.id = j.id
       WHERE j.status = 'pending' AND j.run_after <= now()
       ORDER BY c.rank, c.turn
       LIMIT ?
       FOR UPDATE OF j SKIP LOCKED
     ), claimed AS (
       UPDATE jobs SET status = 'running', locked_by = ?,
         locked_until = now() + make_interval(secs => ? / 1000.0),
         started_at = now(), attempts = attempts + 1
       FROM picked WHERE jobs.id = picked.id
       RETURNING ${prefixed('jobs')}
     ), served AS (
       UPDATE clients SET last_claimed_at = clock_timestamp()
       FROM (SELECT id FROM clients WHERE id IN (SELECT client_id FROM claimed)
             ORDER BY id FOR NO KEY UPDATE SKIP LOCKED) s
       WHERE clients.id = s.id
     )
     SELECT * FROM claimed`,
    [window, opts.limit, window, opts.limit, opts.workerId, opts.leaseMs],
  );
}

// Counts pending jobs (of one client, or all), stopping at `cap` (a bounded index scan).
export async function countPending(
  db: Knex,
  opts: { clientId?: string; cap: number },
): Promise<number> {
  const [own, ownBindings] = ownedBy('jobs', opts.clientId ?? null);
  const res = await db.raw<{ rows: { n: number }[] }>(
    `SELECT count(*)::int AS n FROM (
       SELECT 1 FROM jobs WHERE status = 'pending' AND ${own} LIMIT ?
     ) counted`,
    [...ownBindings, opts.cap],
  );
  return res.rows[0]?.n ?? 0;
}

// Extends locked_until to now()+lease for this worker's claims that still hold; returns their ids.
export async function renewLeases(
  db: Knex,
  opts: { workerId: string; claims: readonly Claim[]; leaseMs: number },
): Promise<Set<string>> {
  if (opts.claims.length === 0) return new Set();
  const res = await db.raw<{ rows: { id: string }[] }>(
    `UPDATE jobs SET locked_until = now() + make_interval(secs => ? / 1000.0)
     FROM unnest(?::uuid[], ?::int[]) AS c(id, attempts)
     WHERE jobs.id = c.id AND jobs.attempts = c.attempts
       AND jobs.status = 'running' AND jobs.locked_by = ?
     RETURNING jobs.id`,
    [opts.leaseMs, opts.claims.map((c) => c.id), opts.claims.map((c) => c.attempts), opts.workerId],
  );
  return new Set(res.rows.map((r) => r.id));
}

// For each item whose claim still holds: status=succeeded, result, finished_at=now(), lease
// cleared, NOTIFY FINISHED_CHANNEL; with a cache key (and `cacheTtlMs` > 0) the answer is stored
// in `results`, every pending job waiting on the same key is completed too (`followers`, each
// NOTIFYed) and the flight ends. One statement for any number of items (group commit). Returns
// one entry per item, in order: the completed row, or undefined when its claim was lost.
export async function completeJobs(
  db: Knex,
  opts: {
    workerId: string;
    items: readonly { claim: Claim; merchant: Merchant | null }[];
    cacheTtlMs?: number;
  },
): Promise<((JobRow & { followers: number }) | undefined)[]> {
  if (opts.items.length === 0) return [];
  const ttl = opts.cacheTtlMs ?? 0;
  const res = await prepared<JobRow & { followers: number }>(
    db,
    'merchant_complete_jobs',
    `WITH input AS (
       SELECT * FROM unnest(?::uuid[], ?::int[], ?::jsonb[]) AS i(id, attempts, result)
     ), done AS (
       UPDATE jobs SET status = 'succeeded', result = input.result, error = NULL,
         finished_at = now(), locked_by = NULL, locked_until = NULL
       FROM input
       WHERE jobs.id = input.id AND jobs.attempts = input.attempts
         AND jobs.status = 'running' AND jobs.locked_by = ?
       RETURNING ${prefixed('jobs')}
     ), keyed AS (
       SELECT DISTINCT ON (cache_key) cache_key, result, id AS leader_id FROM done
       WHERE cache_key IS NOT NULL ORDER BY cache_key, id
     ), cached AS (
       INSERT INTO results (cache_key, result, expires_at)
       SELECT cache_key, result, now() + make_interval(secs => ? / 1000.0) FROM keyed WHERE ? > 0
       ON CONFLICT (cache_key) DO UPDATE
         SET result = excluded.result, created_at = now(), expires_at = excluded.expires_at
     ), followers AS (
       UPDATE jobs SET status = 'succeeded', result = keyed.result, error = NULL,
         started_at = now(), finished_at = now()
       FROM keyed
       WHERE jobs.cache_key = keyed.cache_key AND jobs.status = 'pending'
       RETURNING jobs.id, jobs.batch_id, keyed.leader_id
     ), followers_notified AS (
       SELECT leader_id, pg_notify(?, ${FINISHED_PAYLOAD}) FROM followers
     ), landed AS (
       DELETE FROM flights USING done
       WHERE flights.cache_key = done.cache_key AND flights.job_id = done.id
     )
     SELECT done.*, pg_notify(?, ${FINISHED_PAYLOAD}) AS notified,
            (SELECT count(*) FROM followers_notified f WHERE f.leader_id = done.id)::int
              AS followers
     FROM done`,
    [
      opts.items.map((i) => i.claim.id),
      opts.items.map((i) => i.claim.attempts),
      opts.items.map((i) => JSON.stringify({ merchant: i.merchant })),
      opts.workerId,
      ttl,
      ttl,
      FINISHED_CHANNEL,
      FINISHED_CHANNEL,
    ],
  );
  const byId = new Map(res.rows.map((r) => [r.id, r]));
  return opts.items.map((i) => byId.get(i.claim.id));
}

/** completeJobs for one job. */
export async function completeJob(
  db: Knex,
  opts: { workerId: string; claim: Claim; merchant: Merchant | null; cacheTtlMs?: number },
): Promise<(JobRow & { followers: number }) | undefined> {
  const [row] = await completeJobs(db, {
    workerId: opts.workerId,
    items: [{ claim: opts.claim, merchant: opts.merchant }],
    cacheTtlMs: opts.cacheTtlMs,
  });
  return row;
}

export type Flight =
  { role: 'cached'; merchant: Merchant | null } | { role: 'leader' } | { role: 'follower' };

// Before an attempt of a job with a cache key: returns the cached answer if there is one;
// else makes this attempt the key's flight (leader) unless another job's running attempt
// already is (follower: it should hand the job back; the leader's completion completes it).
export async function beginFlight(
  db: Knex,
  opts: { cacheKey: string; claim: Claim },
): Promise<Flight> {
  const res = await db.raw<{
    rows: { cached: { merchant: Merchant | null } | null; leader: boolean }[];
  }>(
    `WITH hit AS (
       SELECT result FROM results WHERE cache_key = ? AND expires_at > now()
     ), flight AS (
       INSERT INTO flights (cache_key, job_id, attempts)
       SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM hit)
       ON CONFLICT (cache_key) DO UPDATE SET job_id = excluded.job_id, attempts = excluded.attempts
         WHERE (flights.job_id, flights.attempts) = (excluded.job_id, excluded.attempts)
            OR NOT EXISTS (
              SELECT 1 FROM jobs leader WHERE leader.id = flights.job_id
                AND leader.status = 'running' AND leader.attempts = flights.attempts)
       RETURNING job_id
     )
     SELECT (SELECT result FROM hit) AS cached, EXISTS (SELECT 1 FROM flight) AS leader`,
    [opts.cacheKey, opts.cacheKey, opts.claim.id, opts.claim.attempts],
  );
  const row = res.rows[0];
  if (row?.cached) return { role: 'cached', merchant: row.cached.merchant };
  if (!row?.leader) return { role: 'follower' };
  // The previous leader may have committed its answer (and ended its flight) while this
  // statement waited for the flight row: a new statement sees it. Rare: once per key and TTL.
  const again = await db.raw<{ rows: { result: { merchant: Merchant | null } }[] }>(
    `SELECT result FROM results WHERE cache_key = ? AND expires_at > now()`,
    [opts.cacheKey],
  );
  const late = again.rows[0];
  return late ? { role: 'cached', merchant: late.result.merchant } : { role: 'leader' };
}

// Records a failed attempt if the claim still holds: back to pending with run_after=now()+retryDelay
// when `retry` and attempts remain, else status=failed with finished_at=now() (NOTIFYing
// FINISHED_CHANNEL). NOTIFYs runners when it is due again, or when jobs with its cache key may
// have waited on this attempt (they are claimable now).
export async function failAttempt(
  db: Knex,
  opts: { workerId: string; claim: Claim; error: JobError; retry: boolean; retryDelayMs: number },
): Promise<JobRow | undefined> {
  const [row] = await rows(
    db,
    `WITH failed AS (
       UPDATE jobs SET
         status = CASE WHEN ? AND attempts < max_attempts THEN 'pending' ELSE 'failed' END,
         error = ?::jsonb,
         run_after = now() + make_interval(secs => ? / 1000.0),
         finished_at = CASE WHEN ? AND attempts < max_attempts THEN NULL ELSE now() END,
         locked_by = NULL, locked_until = NULL
       WHERE id = ? AND attempts = ? AND status = 'running' AND locked_by = ?
       RETURNING ${COLUMNS}
     )
     SELECT failed.*, CASE WHEN (status = 'pending' AND run_after <= now())
                                OR cache_key IS NOT NULL
                           THEN pg_notify(?, '') END AS notified,
            CASE WHEN status = 'failed' THEN pg_notify(?, ${FINISHED_PAYLOAD}) END AS finished
     FROM failed`,
    [
      opts.retry,
      JSON.stringify(opts.error),
      opts.retryDelayMs,
      opts.retry,
      opts.claim.id,
      opts.claim.attempts,
      opts.workerId,
      PENDING_CHANNEL,
      FINISHED_CHANNEL,
    ],
  );
  return row;
}

// Hands this worker's unfinished claims back: status=pending, run_after=now(), attempts-1 (an
// attempt interrupted by shutdown does not count), lease cleared; NOTIFYs other runners.
export async function releaseClaims(
  db: Knex,
  opts: { workerId: string; claims: readonly Claim[] },
): Promise<number> {
  if (opts.claims.length === 0) return 0;
  const res = await db.raw<{ rows: { released: number }[] }>(
    `WITH released AS (
       UPDATE jobs SET status = 'pending', attempts = jobs.attempts - 1, run_after = now(),
         locked_by = NULL, locked_until = NULL
       FROM unnest(?::uuid[], ?::int[]) AS c(id, attempts)
       WHERE jobs.id = c.id AND jobs.attempts = c.attempts
         AND jobs.status = 'running' AND jobs.locked_by = ?
       RETURNING jobs.id
     )
     SELECT count(*)::int AS released, CASE WHEN count(*) > 0 THEN pg_notify(?, '') END
     FROM released`,
    [
      opts.claims.map((c) => c.id),
      opts.claims.map((c) => c.attempts),
      opts.workerId,
      PENDING_CHANNEL,
    ],
  );
  return res.rows[0]?.released ?? 0;
}

// For up to `limit` running jobs whose lease expired (their process died): status=pending again,
// or status=failed when that was the last attempt; error says the lease expired; NOTIFYs runners
// (and FINISHED_CHANNEL for the failed ones).
export async function reapExpiredLeases(
  db: Knex,
  opts: { limit: number },
): Promise<{ requeued: number; failed: number }> {
  const res = await db.raw<{ rows: { requeued: number; failed: number }[] }>(
    `WITH reaped AS (
       UPDATE jobs SET
         status = CASE WHEN attempts < max_attempts THEN 'pending' ELSE 'failed' END,
         finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END,
         run_after = now(),
         error = jsonb_build_object(
           'code', 'lease_expired',
           'message', 'the worker running this attempt stopped renewing its lease (it crashed or hung)',
           'attempt', attempts),
         locked_by = NULL, locked_until = NULL
       WHERE id IN (
         SELECT id FROM jobs WHERE status = 'running' AND locked_until < now()
         ORDER BY locked_until LIMIT ? FOR UPDATE SKIP LOCKED
       )
       RETURNING id, batch_id, status
     ), finished AS (
       SELECT pg_notify(?, ${FINISHED_PAYLOAD}) FROM reaped WHERE status = 'failed'
     )
     SELECT count(*) FILTER (WHERE status = 'pending')::int AS requeued,
            count(*) FILTER (WHERE status = 'failed')::int AS failed,
            CASE WHEN count(*) FILTER (WHERE status = 'pending') > 0 THEN pg_notify(?, '') END,
            (SELECT count(*) FROM finished) AS notified
     FROM reaped`,
    [opts.limit, FINISHED_CHANNEL, PENDING_CHANNEL],
  );
  const counts = res.rows[0];
  return { requeued: counts?.requeued ?? 0, failed: counts?.failed ?? 0 };
}

// Deletes up to `limit` finished (succeeded, failed, canceled) jobs outside batches with
// finished_at before `before`.
export async function purgeFinishedJobs(
  db: Knex,
  opts: { before: Date; limit: number },
): Promise<number> {
  const res = await db.raw<{ rowCount: number }>(
    `DELETE FROM jobs WHERE id IN (
       SELECT id FROM jobs
       WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_at < ?
         AND batch_id IS NULL
       LIMIT ?
     )`,
    [opts.before, opts.limit],
  );
  return res.rowCount;
}

// Deletes up to `limit` batches (and, by cascade, their jobs) whose jobs all finished before
// `before`: a batch is kept whole until its last job ages out.
export async function purgeFinishedBatches(
  db: Knex,
  opts: { before: Date; limit: number },
): Promise<number> {
  const res = await db.raw<{ rowCount: number }>(
    `DELETE FROM batches WHERE id IN (
       SELECT b.id FROM batches b
       WHERE b.created_at < ?
         AND NOT EXISTS (
           SELECT 1 FROM jobs j WHERE j.batch_id = b.id
             AND (j.status NOT IN ('succeeded', 'failed', 'canceled') OR j.finished_at >= ?)
         )
       LIMIT ?
     )`,
    [opts.before, opts.before, opts.limit],
  );
  return res.rowCount;
}

// Deletes up to `limit` expired cache entries, and flights whose attempt is over (a flight is
// normally removed by its completion; a failed or crashed leader leaves one behind).
export async function purgeExpiredResults(db: Knex, opts: { limit: number }): Promise<number> {
  const res = await db.raw<{ rows: { n: number }[] }>(
    `WITH expired AS (
       DELETE FROM results WHERE cache_key IN (
         SELECT cache_key FROM results WHERE expires_at < now() LIMIT ?)
       RETURNING 1
     ), landed AS (
       DELETE FROM flights f WHERE NOT EXISTS (
         SELECT 1 FROM jobs leader WHERE leader.id = f.job_id
           AND leader.status = 'running' AND leader.attempts = f.attempts)
     )
     SELECT count(*)::int AS n FROM expired`,
    [opts.limit],
  );
  return res.rows[0]?.n ?? 0;
}
