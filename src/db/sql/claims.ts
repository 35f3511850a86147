/**
 * The runner's claims: claim due jobs, renew their leases, hand them back, and reap leases whose
 * process died. What an attempt came to (complete, fail) is written by outcomes.ts, under the
 * same fence.
 *
 * Fencing: a claim increments `attempts` and sets `locked_by`; every later write for that attempt
 * matches on (id, attempts, locked_by, a lease present: see `held`), so an answer from an attempt
 * that lost its lease changes nothing. Every write that makes a job terminal appends its event
 * (events.ts) in the same statement.
 */
import type { Knex } from 'knex';
import { PENDING_CHANNEL } from '../channels.js';
import { type Appended, EVENTS, appended, logFinished } from './events.js';
import { type Claim, type JobRow, prefixed, preparedRows, rows } from './rows.js';

/**
 * SQL condition (one `?`: the worker id): the job in `alias` is running under a claim of that
 * worker. Written without `status`: `locked_by` and `locked_until` are set exactly while
 * `status = 'running'` (CHECK `jobs_check`), so this is the same fence as `status = 'running'
 * AND locked_by = ?`; but a condition on `status` let the planner read the job through
 * `jobs_running_idx` (every running job, then filter) instead of its primary key. It did so
 * whenever the statistics said running jobs were rare, which is what ANALYZE sees between
 * bursts: each completion, renewal or failure then read every running job, 10,000 of them with
 * 10,000 slow jobs in flight (test/runner-writes.plans.test.ts).
 */
export function held(alias: string): string {
  return `${alias}.locked_by = ? AND ${alias}.locked_until IS NOT NULL`;
}

/**
 * SQL condition: the job in `alias` is in its attempt named by `items` (SQL, a jsonb object keyed
 * by job id whose values carry `attempts`). With the ids also given as `alias.id = ANY (?)`, this
 * is how the fenced writes of many claims find their jobs: by primary key, one lookup per claim,
 * with no join. As a join with the claims unnested, a plan made for a group of a few hundred
 * (the first runs of a prepared statement on a connection are planned for their values), with
 * statistics that saw no job running (`locked_by` null throughout: taken while the backlog
 * waited), took the fence for one row and read the whole table, matching each row against every
 * claim; the generic plan of the join rescanned the claims once per job instead. Either way a
 * group of 300 took 30-40 ms where the primary key takes 5-7 (test/runner-writes.plans.test.ts).
 * The keys are job ids as Postgres prints them (lower case).
 */
export function ofItem(alias: string, items: string): string {
  return `${alias}.attempts = (${items} -> ${alias}.id::text ->> 'attempts')::int`;
}

/**
 * The jsonb object `ofItem` reads: each claim's job id to its attempt and, given `results` (one
 * per claim, in order), its result. Written as text, not as an object keyed by job id and then
 * stringified: V8 interns every new key and gives the object a new shape per key, so each group
 * of claims made tens of shapes and interned strings to collect (a micro-benchmark: 1.5-2.0 µs a
 * claim as an object, 0.6-1.1 written out). As in an object, a repeated id keeps its last entry
 * (jsonb keeps the last of duplicate keys).
 */
export function claimsById(claims: readonly Claim[], results?: readonly unknown[]): string {
  let json = '{';
  claims.forEach((c, i) => {
    const item = JSON.stringify({ attempts: c.attempts, result: results?.[i] });
    json += `${i === 0 ? '' : ','}${JSON.stringify(c.id.toLowerCase())}:${item}`;
  });
  return `${json}}`;
}

/**
 * `'pending'` as a value the planner does not take for a constant: `status = ${PENDING_UNMATCHED}`
 * is `status = 'pending'` to the executor, but cannot match the predicate of a partial index over
 * pending jobs, so a lookup by primary key stays one whatever the statistics say (with the plain
 * constant, statistics saying pending jobs are rare sent it through all of `jobs_pending_idx`).
 */
export const PENDING_UNMATCHED = "(SELECT 'pending')";

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
//
// Its plan must not depend on the statistics of `status`, which describe whichever moment ANALYZE
// last saw (the queue goes from empty to thousands pending in a second, and back): every step
// walks `jobs_pending_idx (client_id, run_after, seq)` in its own order, so reading a job it does
// not claim is the exception. The probe "has this client due work" asks for that order too:
// without it, statistics saying pending jobs are common made it a sequential scan from the start
// of the table, through every finished job, under its LIMIT 1. No other index can serve these
// steps (migration 0011; test/claim.plans.test.ts). The update finds the picked rows by primary
// key (`= ANY (ARRAY(…))`): as a join, a generic plan (its LIMITs unknown) hashed the picked ids
// and scanned the whole table for them. `picked` finds the candidates the same way, with
// PENDING_UNMATCHED for their status. The claimed jobs come back in turn order, the order the
// runner starts them in.
//
// Each client with due work offers its oldest jobs as candidates, but no more than the claim can
// take from it: `window` candidates shared by the T clients' turns (ceil(window / T) each), and
// never fewer than `limit` + 1 - T, so that the claim can still fill up when every other client
// has a single job due (each has at least one: that is what gives it a turn). Taken in turn
// order, the first `limit` candidates are the same as with `limit` from every client; reading
// `limit` from each of 50 clients read 800 index entries to claim 16.
//
// Every limit is read from `params`, a value the planner cannot see: planned for the values of
// each call, the claim cost more to plan than to run (1-4 ms against 0.5-1.5 ms), and the plan
// cache never kept the generic plan, whose unknown limits made it look dearer than the plans made
// for known ones. Blind to the limits, both are one plan (the one tested as generic in
// test/claim.plans.test.ts), and the cache keeps it after a connection's first five claims.
//
// The claim commits without waiting for its WAL to reach disk (synchronous_commit off for its
// own transaction only): one fsync less on every job's way to its result. Safe because nothing
// outside the database acts on a claim alone: if Postgres crashes before the claim is flushed,
// the job is pending again and runs again, as after a lost lease; and the attempt's own
// completion commits synchronously, flushing the WAL up to and past the claim first.
export function claimJobs(
  db: Knex,
  opts: { workerId: string; limit: number; leaseMs: number },
): Promise<JobRow[]> {
  const { name, sql, bindings } = claimStatement(opts);
  return preparedRows(db, name, sql, bindings);
}

/** The claim's prepared statement, name, text (knex `?` placeholders) and bindings. */
export function claimStatement(opts: { workerId: string; limit: number; leaseMs: number }) {
  // Candidates beyond `limit` let concurrent claimers (other processes) skip each other's rows.
  const window = opts.limit * 4;
  return {
    name: 'merchant_claim_jobs',
    sql: `WITH params AS (
       SELECT ?::int AS claim_limit, ?::int AS claim_window
     ), turns AS (
       SELECT c.id, row_number() OVER (ORDER BY c.last_claimed_at NULLS FIRST, c.id) AS turn,
              least(count(*) OVER (), (SELECT claim_window FROM params)) AS turns
       FROM clients c CROSS JOIN LATERAL (
         SELECT 1 FROM jobs j
         WHERE j.client_id = c.id AND j.status = 'pending' AND j.run_after <= now()
         ORDER BY j.run_after, j.seq
         LIMIT 1
       ) due_work
       ORDER BY c.last_claimed_at NULLS FIRST, c.id
       LIMIT (SELECT claim_window FROM params)
     ), candidates AS (
       SELECT q.id, q.rank, t.turn
       FROM turns t CROSS JOIN LATERAL (
         SELECT id, row_number() OVER (ORDER BY run_after, seq) AS rank FROM (
           SELECT id, run_after, seq FROM jobs AS due
           WHERE client_id = t.id AND status = 'pending' AND run_after <= now()
             AND ${notInFlight('due')}
           ORDER BY run_after, seq
           LIMIT (SELECT least(claim_limit,
                    greatest(ceil(claim_window::numeric / t.turns)::int, claim_limit + 1 - t.turns::int))
                  FROM params)
         ) oldest
       ) q
       ORDER BY q.rank, t.turn
       LIMIT (SELECT claim_window FROM params)
     ), picked AS (
       SELECT j.id, c.rank, c.turn FROM jobs j JOIN candidates c ON c.id = j.id
       WHERE j.id = ANY (ARRAY(SELECT id FROM candidates))
         AND j.status = ${PENDING_UNMATCHED} AND j.run_after <= now()
       ORDER BY c.rank, c.turn
       LIMIT (SELECT claim_limit FROM params)
       FOR UPDATE OF j SKIP LOCKED
     ), claimed AS (
       UPDATE jobs SET status = 'running', locked_by = ?,
         locked_until = now() + make_interval(secs => ? / 1000.0),
         started_at = now(), attempts = attempts + 1
       WHERE jobs.id = ANY (ARRAY(SELECT id FROM picked))
       RETURNING ${prefixed('jobs')}
     ), served AS (
       UPDATE clients SET last_claimed_at = clock_timestamp()
       FROM (SELECT id FROM clients WHERE id IN (SELECT client_id FROM claimed)
             ORDER BY id FOR NO KEY UPDATE SKIP LOCKED) s
       WHERE clients.id = s.id
     )
     SELECT claimed.* FROM claimed JOIN picked ON picked.id = claimed.id
     WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
     ORDER BY picked.rank, picked.turn`,
    bindings: [opts.limit, window, opts.workerId, opts.leaseMs],
  };
}

// Extends locked_until to now()+lease for this worker's claims that still hold; returns their ids.
//
// It never waits for a row lock. The runner's other writes of the same jobs (a group of
// completions, a hand-back) lock them in whatever order their plan visits them, by primary key
// or by their place in the table, so a renewal that waited for one of them while holding rows it
// wanted deadlocked: Postgres found it after `deadlock_timeout` (1 s), killed one of the two and
// the slots waited that long (seen in a full bench's drain once a claim fetched 64 fast jobs per
// slot ahead). So the rows it would wait for are skipped (SKIP LOCKED) and reported as held
// without their lease extended: as this statement's snapshot sees them they are still this
// worker's, and another write holds them for a moment. If that write ended the claim (a cancel),
// the next heartbeat, a third of a lease later, finds it gone.
export async function renewLeases(
  db: Knex,
  opts: { workerId: string; claims: readonly Claim[]; leaseMs: number },
): Promise<Set<string>> {
  if (opts.claims.length === 0) return new Set();
  const { sql, bindings } = renewStatement(opts);
  const res = await db.raw<{ rows: { id: string }[] }>(sql, bindings);
  return new Set(res.rows.map((r) => r.id));
}

/** renewLeases' statement (knex `?` placeholders) and bindings. */
export function renewStatement(opts: {
  workerId: string;
  claims: readonly Claim[];
  leaseMs: number;
}) {
  const ids = opts.claims.map((c) => c.id);
  const items = claimsById(opts.claims);
  // The answer is `still`: the claims that hold as this statement's snapshot sees them. Of those,
  // the rows no other write holds are locked (the fence checked again on their latest version)
  // and renewed; the others keep their lease until the next heartbeat.
  return {
    sql: `WITH still AS (
       SELECT jobs.id FROM jobs
       WHERE jobs.id = ANY (?::uuid[]) AND ${ofItem('jobs', '?::jsonb')} AND ${held('jobs')}
     ), mine AS (
       SELECT jobs.id FROM jobs
       WHERE jobs.id = ANY (ARRAY(SELECT id FROM still)) AND ${ofItem('jobs', '?::jsonb')}
         AND ${held('jobs')}
       FOR NO KEY UPDATE SKIP LOCKED
     ), renewed AS (
       UPDATE jobs SET locked_until = now() + make_interval(secs => ? / 1000.0)
       WHERE jobs.id = ANY (ARRAY(SELECT id FROM mine))
       RETURNING jobs.id
     )
     SELECT id FROM still`,
    bindings: [ids, items, opts.workerId, items, opts.workerId, opts.leaseMs],
  };
}

// Hands this worker's unfinished claims back: status=pending, run_after=now(), attempts-1 (an
// attempt interrupted by shutdown does not count), lease cleared; NOTIFYs other runners.
export async function releaseClaims(
  db: Knex,
  opts: { workerId: string; claims: readonly Claim[] },
): Promise<number> {
  if (opts.claims.length === 0) return 0;
  const { sql, bindings } = releaseStatement(opts);
  const res = await db.raw<{ rows: { released: number }[] }>(sql, bindings);
  return res.rows[0]?.released ?? 0;
}

/** releaseClaims' statement (knex `?` placeholders) and bindings. */
export function releaseStatement(opts: { workerId: string; claims: readonly Claim[] }) {
  return {
    sql: `WITH released AS (
       UPDATE jobs SET status = 'pending', attempts = jobs.attempts - 1, run_after = now(),
         locked_by = NULL, locked_until = NULL
       WHERE jobs.id = ANY (?::uuid[]) AND ${ofItem('jobs', '?::jsonb')} AND ${held('jobs')}
       RETURNING jobs.id
     )
     SELECT count(*)::int AS released, CASE WHEN count(*) > 0 THEN pg_notify(?, '') END
     FROM released`,
    bindings: [
      opts.claims.map((c) => c.id),
      claimsById(opts.claims),
      opts.workerId,
      PENDING_CHANNEL,
    ],
  };
}

// For up to `limit` running jobs whose lease expired (their process died), but those in
// `except`: status=pending again, or status=failed (with its event) when that was the last
// attempt; error says the lease expired; NOTIFYs runners when any are pending again.
export async function reapExpiredLeases(
  db: Knex,
  opts: {
    limit: number;
    /** Jobs not to reap: the caller's own live attempts, whatever their lease says. */
    except?: readonly string[];
  },
): Promise<{ requeued: number; failed: number; events: Appended }> {
  const [counts] = await rows<{ requeued: number; failed: number; events: unknown }>(
    db,
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
           AND NOT (id = ANY(?::uuid[]))
         ORDER BY locked_until LIMIT ? FOR UPDATE SKIP LOCKED
       )
       RETURNING id, client_id, batch_id, status
     ), finished AS (
       SELECT id, client_id, batch_id, status FROM reaped WHERE status = 'failed'
     ), ${logFinished('finished', 'decrement')}
     SELECT count(*) FILTER (WHERE status = 'pending')::int AS requeued,
            count(*) FILTER (WHERE status = 'failed')::int AS failed,
            CASE WHEN count(*) FILTER (WHERE status = 'pending') > 0 THEN pg_notify(?, '') END,
            ${EVENTS} AS events
     FROM reaped`,
    [[...(opts.except ?? [])], opts.limit, PENDING_CHANNEL],
  );
  return {
    requeued: counts?.requeued ?? 0,
    failed: counts?.failed ?? 0,
    events: appended(counts?.events),
  };
}
