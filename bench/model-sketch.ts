/**
 * Profiling aid, for the drain's miss (docs/performance-log.md, "A narrower queue, sketched"):
 * Postgres's CPU per job for the drain's statements alone, without HTTP, the runner or the
 * heuristic, in two data models on the same database, rounds interleaved:
 *
 * - `service`: this service's own statements (src/db/sql): batches of 1,000 inserted as
 *   `POST /normalize_merchant/batch` inserts them, claims of 260 (the fair-share claim), and
 *   completions of 130 with their events and batch counters, one statement at a time.
 * - `narrow`: a sketch of a narrower model in a schema of its own: the job's row (its
 *   transaction, then its result) with three indexes, and a queue row apart (id, order, lease)
 *   that is deleted when the job completes. Claiming and completing change no indexed column
 *   of either table, so their updates can be HOT (heap-only: no new index entries), and the
 *   table is filled to 70 % to leave them room. The same batch, event and counter writes. Its
 *   claim is first-come first-served, without the service's per-client fair share: a floor,
 *   not a design.
 *
 * The same statements one at a time from one connection: what it compares is the work each
 * model asks of Postgres per job, not throughput.
 *
 *   DATABASE_URL=… BENCH_PG_PID=… node --import tsx bench/model-sketch.ts
 *
 * DATABASE_URL: a scratch database (migrated here; both models' tables are emptied each round);
 * BENCH_PG_PID: its postmaster (the CPU of every backend under it is counted, so nothing else
 * should run on that server); BENCH_DRAIN_JOBS (20,000) and BENCH_ROUNDS (3).
 */
import type { Knex } from 'knex';
import { ensureClient } from '../src/db/sql/clients.js';
import { createKnex, migrateLatest } from '../src/db/knex.js';
import { insertBatch } from '../src/db/sql/batches.js';
import { claimJobs } from '../src/db/sql/claims.js';
import { completeJobs } from '../src/db/sql/outcomes.js';
import type { JobRow } from '../src/db/sql/rows.js';
import { newId } from '../src/ids.js';
import { createLogger } from '../src/log.js';
import { postgresCpuMs } from './cpu.js';
import { reset, round as rounded, tx } from './harness.js';

const n = Number(process.env.BENCH_DRAIN_JOBS ?? 20_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const pgPid = Number(process.env.BENCH_PG_PID ?? 0);
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl || !pgPid) throw new Error('DATABASE_URL and BENCH_PG_PID are required');

const BATCH = 1000;
const CLAIM = 260;
const COMPLETE = 130;
/** The drain's transactions, as `npm run bench` submits them (submitBatches). */
const drainTx = (i: number) => tx(`OPENAI ${i}`, i);
const RESULT = { merchant: { name: 'OpenAI', id: 'openai' }, intermediaries: [] };

const NARROW_SCHEMA = `
  DROP SCHEMA IF EXISTS sketch CASCADE;
  CREATE SCHEMA sketch;
  CREATE TABLE sketch.batches (
    id uuid PRIMARY KEY, client_id uuid NOT NULL, size int NOT NULL, unfinished int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE sketch.jobs (
    id uuid PRIMARY KEY, client_id uuid NOT NULL, batch_id uuid, batch_index int,
    transaction jsonb NOT NULL, status text NOT NULL DEFAULT 'pending',
    attempts int NOT NULL DEFAULT 0, max_attempts int NOT NULL DEFAULT 3, result jsonb,
    error jsonb, created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz,
    finished_at timestamptz) WITH (fillfactor = 50);
  CREATE INDEX ON sketch.jobs (client_id, id);
  CREATE UNIQUE INDEX ON sketch.jobs (batch_id, batch_index) WHERE batch_id IS NOT NULL;
  CREATE TABLE sketch.queue (
    id uuid PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY,
    run_after timestamptz NOT NULL DEFAULT now(), attempts int NOT NULL DEFAULT 0,
    locked_by text, locked_until timestamptz, started_at timestamptz) WITH (fillfactor = 40);
  CREATE INDEX ON sketch.queue (seq);
  CREATE TABLE sketch.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(), type text NOT NULL, client_id uuid NOT NULL,
    job_id uuid, batch_id uuid, created_at timestamptz NOT NULL DEFAULT now());
  CREATE INDEX ON sketch.events (tx_id, id);
  CREATE INDEX ON sketch.events USING brin (created_at);`;

const narrow = {
  insert: `WITH b AS (
      INSERT INTO sketch.batches (id, client_id, size, unfinished)
      VALUES (?, ?, ?, ?) RETURNING id, client_id
    ), t AS (
      SELECT (?::uuid[])[t.ord::int] AS id, t.tx, t.ord
      FROM jsonb_array_elements(?::jsonb) WITH ORDINALITY AS t(tx, ord)
    ), j AS (
      INSERT INTO sketch.jobs (id, client_id, batch_id, batch_index, transaction)
      SELECT t.id, b.client_id, b.id, t.ord - 1, t.tx FROM t, b RETURNING id
    )
    INSERT INTO sketch.queue (id) SELECT id FROM j ORDER BY id`,
  claim: `WITH c AS (
      SELECT id FROM sketch.queue WHERE locked_until IS NULL AND run_after <= now()
      ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED
    ), q AS (
      UPDATE sketch.queue q SET locked_by = ?, locked_until = now() + interval '30 s',
        attempts = q.attempts + 1, started_at = now()
      FROM c WHERE q.id = c.id RETURNING q.id, q.attempts
    )
    SELECT j.id, j.client_id, j.batch_id, j.transaction, q.attempts
    FROM q JOIN sketch.jobs j ON j.id = q.id`,
  complete: `WITH d AS (
      DELETE FROM sketch.queue q WHERE q.id = ANY (?::uuid[]) AND q.locked_by = ?
      RETURNING q.id, q.attempts, q.started_at
    ), u AS (
      UPDATE sketch.jobs j SET status = 'succeeded', result = ?::jsonb, attempts = d.attempts,
        started_at = d.started_at, finished_at = now()
      FROM d WHERE j.id = d.id RETURNING j.id, j.client_id, j.batch_id
    ), e AS (
      INSERT INTO sketch.events (type, client_id, job_id, batch_id)
      SELECT 'job.succeeded', client_id, id, batch_id FROM u ORDER BY id
    ), c AS (
      UPDATE sketch.batches b SET unfinished = b.unfinished - u.n
      FROM (SELECT batch_id, count(*)::int AS n FROM u GROUP BY batch_id) u
      WHERE b.id = u.batch_id
    )
    SELECT count(*)::int AS done FROM u`,
};

/** Postgres CPU (ms) and wall time (s) of `work`. */
async function measured(work: () => Promise<void>) {
  const pg0 = postgresCpuMs(pgPid);
  const t0 = performance.now();
  await work();
  return { pgMs: postgresCpuMs(pgPid) - pg0, s: (performance.now() - t0) / 1000 };
}

async function serviceRound(db: Knex, clientId: string) {
  const insert = await measured(async () => {
    for (let at = 0; at < n; at += BATCH) {
      const size = Math.min(BATCH, n - at);
      await insertBatch(db, {
        id: newId(),
        clientId,
        transactions: Array.from({ length: size }, (_, i) => drainTx(at + i)),
        jobIds: Array.from({ length: size }, () => newId()),
        maxAttempts: 3,
      });
    }
  });
  let done = 0;
  const run = await measured(async () => {
    for (;;) {
      const claimed: JobRow[] = await claimJobs(db, {
        workerId: 'w',
        limit: CLAIM,
        leaseMs: 30_000,
      });
      if (claimed.length === 0) break;
      for (let at = 0; at < claimed.length; at += COMPLETE) {
        const items = claimed.slice(at, at + COMPLETE).map((job) => ({ job, result: RESULT }));
        const { rows } = await completeJobs(db, { workerId: 'w', items });
        done += rows.filter(Boolean).length;
      }
    }
  });
  if (done !== n) throw new Error(`service: ${done} of ${n} jobs completed`);
  return { insert, run };
}

async function narrowRound(db: Knex, clientId: string) {
  const insert = await measured(async () => {
    for (let at = 0; at < n; at += BATCH) {
      const size = Math.min(BATCH, n - at);
      await db.raw(narrow.insert, [
        newId(),
        clientId,
        size,
        size,
        Array.from({ length: size }, () => newId()),
        JSON.stringify(Array.from({ length: size }, (_, i) => drainTx(at + i))),
      ]);
    }
  });
  let done = 0;
  const run = await measured(async () => {
    for (;;) {
      const { rows } = await db.raw<{ rows: { id: string }[] }>(narrow.claim, [CLAIM, 'w']);
      if (rows.length === 0) break;
      for (let at = 0; at < rows.length; at += COMPLETE) {
        const ids = rows.slice(at, at + COMPLETE).map((r) => r.id);
        const res = await db.raw<{ rows: { done: number }[] }>(narrow.complete, [
          ids,
          'w',
          JSON.stringify(RESULT),
        ]);
        done += res.rows[0]?.done ?? 0;
      }
    }
  });
  if (done !== n) throw new Error(`narrow: ${done} of ${n} jobs completed`);
  return { insert, run };
}

async function empty(db: Knex) {
  await reset(db);
  await db.raw('TRUNCATE sketch.jobs, sketch.queue, sketch.batches, sketch.events');
  await db.raw('VACUUM ANALYZE');
}

const db = createKnex(databaseUrl, 2); // migrateLatest pins one connection and reads on another
try {
  await migrateLatest(db, createLogger('warn'));
  await db.raw(NARROW_SCHEMA);
  const clientId = (await ensureClient(db, 'sketch')).id;
  const perJob = (ms: number) => Math.round((ms * 1000) / n);
  for (let round = 0; round < rounds; round++) {
    for (const [model, drain] of [
      ['service', serviceRound],
      ['narrow', narrowRound],
    ] as const) {
      await empty(db);
      const { insert, run } = await drain(db, clientId);
      console.log(
        JSON.stringify({
          round,
          model,
          jobs: n,
          insert_pg_us_per_job: perJob(insert.pgMs),
          run_pg_us_per_job: perJob(run.pgMs),
          total_pg_us_per_job: perJob(insert.pgMs + run.pgMs),
          seconds: rounded(insert.s + run.s, 2),
        }),
      );
    }
  }
} finally {
  await db.destroy();
}
