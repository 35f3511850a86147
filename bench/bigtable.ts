/**
 * The big table (issue 13): submit, GET and claim latency with BENCH_BIG_FINISHED (10 M)
 * finished and BENCH_BIG_PENDING (1 M) pending jobs in `jobs`, against the same measurements on
 * a near-empty table; then the service's retention purge of one day's rows, with the same
 * latencies taken while it runs and Postgres's lock waits sampled. Opt-in (minutes of load,
 * GBs of disk): bench/main.ts runs it only when BENCH_ONLY names `bigtable`.
 *
 *   BENCH_ONLY=bigtable BENCH_BIG_FINISHED=10000000 BENCH_BIG_PENDING=1000000 npm run bench
 *
 * Method. Every latency is one request or statement at a time (BENCH_BIG_SAMPLES each, 20 ms
 * apart: a steady client, so that work the service does once a second shows in its share), so
 * that it measures the table rather than the two cores. The "empty" table is the same layout
 * with 1,000 finished and 1,000 pending jobs (something to read and to claim), in a database of
 * its own in the same Postgres, with a service of its own; the two are measured in alternating
 * blocks, so that both see the same load from whatever else runs on the machine. Each service
 * is spawned as `npm start` runs it, with its runner held up (RUNNER_CONCURRENCY=1, a 10-minute
 * heuristic): it takes one or two jobs and sits on them, so the backlog stays as loaded.
 * The claim is timed here, by calling the service's own `claimJobs` on a connection of this
 * process and handing the jobs back with `releaseClaims` (untimed): a claim inside the service
 * cannot be timed from outside without the heuristic's time in it, and this is the statement a
 * runner with free slots sends. Limit 1 is a slot coming free; 16 an idle runner.
 * The purge is the service's `Maintenance` (src/runner/maintenance.ts) run in this process on
 * a connection of its own, with a retention of 29 days: the oldest of the 30 loaded days is due.
 */
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { createKnex, migrateLatest } from '../src/db/knex.js';
import { type RunnerStore, createStore } from '../src/db/store.js';
import { createLogger } from '../src/log.js';
import { Maintenance } from '../src/runner/maintenance.js';
import { type Layout, SPAN_MS, fmt, loadJobs } from './bigtable-load.js';
import {
  BIG_OPS,
  CLIENTS,
  type Ctx,
  DAY,
  type Op,
  type Samples,
  claimOnce,
  explain,
  quantile,
  read,
  round,
  say,
  seeded,
  sleep,
  someFinished,
  startService,
  stopService,
  submit,
  timed,
} from './bigtable-ops.js';

export { BIG_OPS };

const FINISHED = Number(process.env.BENCH_BIG_FINISHED ?? 10_000_000);
const PENDING = Number(process.env.BENCH_BIG_PENDING ?? 1_000_000);
const CHUNK = Number(process.env.BENCH_BIG_CHUNK ?? 1_000_000);
const SAMPLES = Number(process.env.BENCH_BIG_SAMPLES ?? 300);
/** Also load a job_events row per finished job (the purge deletes those too). */
const EVENTS = process.env.BENCH_BIG_EVENTS !== '0';
/** The service's MAX_PENDING_JOBS: above the loaded backlog, or every submit would get 503. */
const MAX_PENDING = Math.max(1_000_000, 2 * PENDING);
/** Pause before each sample: samples span seconds, as a steady client's requests would. */
const PACE_MS = Number(process.env.BENCH_BIG_PACE_MS ?? 20);
const ROUNDS = 6;
const EMPTY_DB = 'merchant_bench_bigtable_empty';

const newSamples = (): Samples => ({
  submit: [],
  get_finished: [],
  get_new: [],
  claim_1: [],
  claim_16: [],
});

/** One sample of `op`, after a pause of PACE_MS (so that samples span seconds, not a burst). */
async function sample(ctx: Ctx, op: Op, fresh: string[], i: number): Promise<number> {
  await sleep(PACE_MS);
  if (op === 'submit') return timed(async () => fresh.push(await submit(ctx, i)));
  if (op === 'get_finished') {
    const [id, client] = someFinished(ctx);
    return timed(() => read(ctx, id, client));
  }
  if (op === 'get_new') return timed(() => read(ctx, fresh[i % fresh.length] ?? '', 0));
  return claimOnce(ctx.db, op === 'claim_1' ? 1 : 16);
}

/**
 * SAMPLES of each op on both tables, interleaved: in each of ROUNDS rounds, a block of each op
 * on one table then the other (the order swapped every round), so that both see the same
 * neighbours on the shared cores. GET new reads the jobs its round submitted.
 */
async function measureBoth(empty: Ctx, big: Ctx): Promise<[Samples, Samples]> {
  const before = newSamples();
  const after = newSamples();
  const pairs: Array<[Ctx, Samples]> = [
    [empty, before],
    [big, after],
  ];
  // Warm-up, untimed: each client's key verified once, connections open.
  for (const [ctx] of pairs) {
    for (let c = 0; c < CLIENTS; c++) await read(ctx, ...someFinished(ctx));
  }
  const per = Math.ceil(SAMPLES / ROUNDS);
  for (let r = 0; r < ROUNDS; r++) {
    const fresh = new Map<Ctx, string[]>(pairs.map(([ctx]) => [ctx, []]));
    for (const op of BIG_OPS) {
      for (const [ctx, s] of r % 2 === 0 ? pairs : [...pairs].reverse()) {
        for (let i = 0; i < per; i++) s[op].push(await sample(ctx, op, fresh.get(ctx) ?? [], i));
      }
    }
  }
  return [before, after];
}

/** A database of its own for the near-empty table, beside the big one in the same server. */
async function emptyDatabase(databaseUrl: string, db: Knex): Promise<string> {
  await db.raw(`DROP DATABASE IF EXISTS ${EMPTY_DB}`);
  await db.raw(`CREATE DATABASE ${EMPTY_DB}`);
  const url = new URL(databaseUrl);
  url.pathname = `/${EMPTY_DB}`;
  return url.toString();
}

async function issueKeys(db: Knex): Promise<string[]> {
  const keys: string[] = [];
  for (let c = 0; c < CLIENTS; c++) {
    keys.push((await issueKey(db, `big-${String(c).padStart(2, '0')}`)).key);
  }
  return keys;
}

async function setUp(db: Knex, layout: Layout, progress: (line: string) => void): Promise<void> {
  await db.raw('TRUNCATE jobs, job_events, batches, results, flights');
  await db.raw(`UPDATE clients SET last_claimed_at = NULL`);
  await loadJobs(db, layout, { chunk: CHUNK, events: EVENTS, progress });
  await db.raw('VACUUM (ANALYZE) jobs');
  await db.raw('VACUUM (ANALYZE) job_events');
  await db.raw('ANALYZE clients');
  // Not measured: the load's dirty pages written out now rather than during the latencies.
  await db.raw('CHECKPOINT').catch(() => undefined);
}

async function sizes(db: Knex): Promise<Record<string, number>> {
  const mb = async (sql: string) =>
    round(Number((await db.raw<{ rows: [{ b: string }] }>(sql)).rows[0].b) / 2 ** 20, 0);
  return {
    big_jobs_total_mb: await mb(`SELECT pg_total_relation_size('jobs') AS b`),
    big_jobs_heap_mb: await mb(`SELECT pg_relation_size('jobs') AS b`),
    big_jobs_indexes_mb: await mb(`SELECT pg_indexes_size('jobs') AS b`),
    big_events_total_mb: await mb(`SELECT pg_total_relation_size('job_events') AS b`),
  };
}

/** Each index of `jobs` with its size, for the progress output. */
async function indexSizes(db: Knex): Promise<string> {
  const res = await db.raw<{ rows: Array<{ name: string; mb: string }> }>(
    `SELECT indexrelid::regclass::text AS name, round(pg_relation_size(indexrelid) / 1048576.0) AS mb
     FROM pg_index WHERE indrelid = 'jobs'::regclass ORDER BY 2 DESC`,
  );
  return res.rows.map((r) => `${r.name} ${r.mb} MB`).join(', ');
}

interface PurgeFigures {
  rows: number;
  events: number;
  ms: number;
  statements: number[];
  samples: Samples;
  activity: {
    samples: number;
    lockWaits: number;
    blockedByPurge: number;
    waits: Map<string, number>;
  };
}

/**
 * The service's retention purge (Maintenance.start runs one at once) with a retention of 29
 * days, on a connection of its own; meanwhile submit, GET and claim one after another, and
 * pg_stat_activity sampled every 100 ms: who waits on what, and whether anyone waits on the
 * purge's backend (pg_blocking_pids). The purge is over when its last step, the events' drain,
 * deletes less than a batch.
 */
async function purgeUnderLoad(databaseUrl: string, ctx: Ctx): Promise<PurgeFigures> {
  const purgeDb = createKnex(databaseUrl, 1);
  const watchDb = createKnex(databaseUrl, 1);
  const purgePid = (
    await purgeDb.raw<{ rows: [{ pid: number }] }>('SELECT pg_backend_pid() AS pid')
  ).rows[0].pid;
  const store = createStore(purgeDb).runner;
  const f: PurgeFigures = {
    rows: 0,
    events: 0,
    ms: 0,
    statements: [],
    samples: { submit: [], get_finished: [], get_new: [], claim_1: [], claim_16: [] },
    activity: { samples: 0, lockWaits: 0, blockedByPurge: 0, waits: new Map() },
  };
  let finish!: () => void;
  let fail!: (err: unknown) => void;
  const done = new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject)));
  const watched = <A extends { limit: number }>(
    step: (opts: A) => Promise<number>,
    count: (n: number) => void,
    last = false,
  ) => {
    return async (opts: A) => {
      const t0 = performance.now();
      try {
        const n = await step(opts);
        f.statements.push(performance.now() - t0);
        count(n);
        if (last && n < opts.limit) finish();
        return n;
      } catch (err) {
        fail(err);
        throw err;
      }
    };
  };
  const wrapped: RunnerStore = {
    ...store,
    purgeJobs: watched(store.purgeJobs, (n) => (f.rows += n)),
    purgeEvents: watched(store.purgeEvents, (n) => (f.events += n), true),
  };
  const maintenance = new Maintenance({
    store: wrapped,
    log: createLogger('warn'),
    reapEveryMs: DAY,
    retentionMs: SPAN_MS - DAY,
    purgeEveryMs: DAY,
    afterReap: () => undefined,
    spare: () => [],
  });
  let purging = true;
  const t0 = performance.now();
  maintenance.start();
  const over = done.finally(() => {
    f.ms = performance.now() - t0;
    purging = false;
  });
  const watching = (async () => {
    while (purging) {
      const res = await watchDb.raw<{
        rows: Array<{ wait: string | null; blockers: number[] }>;
      }>(
        `SELECT wait_event_type || ':' || wait_event AS wait, pg_blocking_pids(pid) AS blockers
         FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'`,
      );
      f.activity.samples++;
      const rows = res.rows;
      if (rows.some((r) => r.wait?.startsWith('Lock:'))) f.activity.lockWaits++;
      if (rows.some((r) => r.blockers.includes(purgePid))) f.activity.blockedByPurge++;
      for (const r of rows) {
        if (r.wait) f.activity.waits.set(r.wait, (f.activity.waits.get(r.wait) ?? 0) + 1);
      }
      await sleep(100);
    }
  })();
  let i = 0;
  const fresh: string[] = [];
  while (purging) {
    const s = f.samples;
    for (const op of ['submit', 'get_finished', 'claim_1'] as const) {
      s[op].push(await sample(ctx, op, fresh, 100_000 + i++));
    }
  }
  await over;
  maintenance.stop();
  await watching;
  await purgeDb.destroy();
  await watchDb.destroy();
  return f;
}

function report(out: Record<string, number | string>, prefix: string, s: Samples): void {
  for (const op of BIG_OPS) {
    if (s[op].length === 0) continue;
    out[`${prefix}${op}_p50_ms`] = quantile(s[op], 0.5);
    out[`${prefix}${op}_p99_ms`] = quantile(s[op], 0.99);
    out[`${prefix}${op}_max_ms`] = quantile(s[op], 1);
  }
}

/** The phase: load both tables, the latencies on both, the purge. Returns `big_…` figures. */
export async function benchBigTable(databaseUrl: string): Promise<Record<string, number | string>> {
  const out: Record<string, number | string> = {};
  const db = createKnex(databaseUrl, 2);
  const rand = seeded(13);

  // 1. The near-empty table, in a database of its own, migrated as the service does.
  const emptyUrl = await emptyDatabase(databaseUrl, db);
  const emptyDb = createKnex(emptyUrl, 2);
  await migrateLatest(emptyDb);
  const emptyKeys = await issueKeys(emptyDb);
  const empty: Layout = { t0: Date.now(), finished: 1000, pending: 1000, clients: CLIENTS };
  await setUp(emptyDb, empty, () => undefined);

  // 2. The big table.
  const keys = await issueKeys(db);
  const big: Layout = { t0: Date.now(), finished: FINISHED, pending: PENDING, clients: CLIENTS };
  say(
    `loading ${fmt(FINISHED)} finished and ${fmt(PENDING)} pending jobs${EVENTS ? ' with events' : ''}`,
  );
  const t0 = performance.now();
  await setUp(db, big, (line) => say(line));
  out.big_finished = FINISHED;
  out.big_pending = PENDING;
  out.big_load_s = round((performance.now() - t0) / 1000, 0);
  Object.assign(out, await sizes(db));
  say(`loaded and vacuumed in ${out.big_load_s} s; jobs ${out.big_jobs_total_mb} MB`);
  say(`indexes of jobs: ${await indexSizes(db)}`);

  // 3. The same latencies on both, interleaved.
  const emptyService = await startService(emptyUrl, MAX_PENDING);
  const service = await startService(databaseUrl, MAX_PENDING);
  const emptyCtx: Ctx = {
    base: emptyService.base,
    db: emptyDb,
    keys: emptyKeys,
    layout: empty,
    rand,
  };
  const ctx: Ctx = { base: service.base, db, keys, layout: big, rand };
  say(`${SAMPLES} samples of each latency on each table (1,000 + 1,000 jobs vs the big one)`);
  const [before, after] = await measureBoth(emptyCtx, ctx);
  await stopService(emptyService.child);
  await emptyDb.destroy();
  await db.raw(`DROP DATABASE ${EMPTY_DB}`);
  report(out, 'big_empty_', before);
  report(out, 'big_', after);
  for (const op of BIG_OPS) {
    for (const q of ['p50', 'p99']) {
      out[`big_${op}_${q}_ratio`] = round(
        Number(out[`big_${op}_${q}_ms`]) / Number(out[`big_empty_${op}_${q}_ms`]),
      );
    }
  }
  if (process.env.BENCH_BIG_EXPLAIN !== '0') {
    await explain(databaseUrl, ctx, { newId: await submit(ctx, -1), maxPending: MAX_PENDING });
  }

  // 4. The purge, with the latencies taken meanwhile.
  const due = await db.raw<{ rows: [{ n: string }] }>(
    `SELECT count(*) AS n FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled')
       AND finished_at < now() - make_interval(secs => ? / 1000.0) AND batch_id IS NULL`,
    [SPAN_MS - DAY],
  );
  say(`purge: ${fmt(Number(due.rows[0].n))} jobs due (retention 29 days); latencies meanwhile`);
  const purge = await purgeUnderLoad(databaseUrl, ctx);
  out.big_purge_rows = purge.rows;
  out.big_purge_events = purge.events;
  out.big_purge_s = round(purge.ms / 1000, 1);
  out.big_purge_rows_per_s = round(purge.rows / (purge.ms / 1000), 0);
  out.big_purge_statements = purge.statements.length;
  out.big_purge_statement_p50_ms = quantile(purge.statements, 0.5);
  out.big_purge_statement_max_ms = quantile(purge.statements, 1);
  report(out, 'big_purge_', purge.samples);
  out.big_purge_activity_samples = purge.activity.samples;
  out.big_purge_lock_wait_samples = purge.activity.lockWaits;
  out.big_purge_blocked_by_purge_samples = purge.activity.blockedByPurge;
  out.big_purge_wait_events =
    [...purge.activity.waits].map(([w, n]) => `${w} ${n}`).join(', ') || 'none';
  say(`purge: ${fmt(purge.rows)} jobs, ${fmt(purge.events)} events in ${out.big_purge_s} s`);

  await stopService(service.child);
  await db.raw('TRUNCATE jobs, job_events, batches, results, flights');
  await db.destroy();
  return out;
}
