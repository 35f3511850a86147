/**
 * The service's phases after the no-op ones (`BENCH_ONLY` names in brackets): long-poll lag
 * (longpoll), slot utilization (util), heuristic calls on the sample file (calls), RSS with a
 * backlog (rss), GET latency beside CPU-heavy heuristics (cpu), many slow jobs in flight
 * (slow10k), and one to three processes (procs). Each starts its own service, records its
 * figures and targets, and leaves the tables empty.
 */
import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import type { Knex } from 'knex';
import {
  CONCURRENCY,
  SECONDS,
  WARMUP_SECONDS,
  bench,
  heuristicCalls,
  quantiles,
  reset,
  result,
  round,
  rssMb,
  say,
  sleep,
  startService,
  submitBatches,
  target,
  waitFinished,
} from './harness.js';
import { pacedGets } from './paced-get.js';
import { waitOnJobs } from './waiters.js';

const LONGPOLL_WAITERS = Number(process.env.BENCH_LONGPOLL_WAITERS ?? 1000);
const SLOW_JOBS = Number(process.env.BENCH_SLOW_JOBS ?? 10_000);
const PROC_JOBS = Number(process.env.BENCH_PROC_JOBS ?? 10_000);
/** GETs per second of the polling clients in the CPU phase. */
const GET_RATE = Number(process.env.BENCH_GET_RATE ?? 200);
const SAMPLE = fileURLToPath(new URL('../test/fixtures/transactions-2k.csv', import.meta.url));

/** 5. Completion -> long-poll answer: LONGPOLL_WAITERS jobs of 100 ms, each with a ?wait=60. */
async function longpoll(db: Knex, databaseUrl: string): Promise<void> {
  say(`long-poll: ${LONGPOLL_WAITERS} jobs of 100 ms, each with a waiter`);
  const slow = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '100' });
  const ids = await submitBatches(slow.base, LONGPOLL_WAITERS, (i) => `SPOTIFY ${i}`, 1);
  // When every waiter is registered in the server (waiting now, or already answered): lags
  // of jobs finishing before then include the burst of 1,000 requests arriving at once.
  let registeredAt = Infinity;
  let over = false;
  const waiters = waitOnJobs(slow.base, ids, bench.auth).finally(() => (over = true));
  const watching = (async () => {
    while (!over) {
      const metrics = await (await fetch(`${slow.base}/metrics`)).text();
      const waiting = Number(/^merchant_longpoll_waiting_requests (\d+)/m.exec(metrics)?.[1]);
      if (waiting + answeredGets(metrics) >= ids.length) {
        registeredAt = Date.now();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const lags = (await waiters)
    .filter((w) => w.finishedAt >= w.askedAt)
    .map((w) => ({ finishedAt: w.finishedAt, lag: w.answeredAt - w.finishedAt }));
  await watching;
  const p = quantiles(lags.map((l) => l.lag));
  const steady = lags.filter((l) => l.finishedAt >= registeredAt).map((l) => l.lag);
  const q = quantiles(steady);
  result.longpoll_waiters = LONGPOLL_WAITERS;
  result.longpoll_answer_p50_ms = p.p50;
  result.longpoll_answer_p99_ms = p.p99;
  result.longpoll_registered_answers = steady.length;
  result.longpoll_registered_answer_p50_ms = q.p50;
  result.longpoll_registered_answer_p99_ms = q.p99;
  target(
    `long-poll lag p99, ${LONGPOLL_WAITERS} waiters registered`,
    q.p99,
    '≤ 20 ms',
    (v) => v <= 20,
    `${steady.length} jobs finished after all waiters were registered; all ${lags.length}: p99 ${p.p99} ms`,
  );
  await slow.stop();
  await reset(db);
}

/** `GET /jobs/{id}` requests answered so far, from a scrape of the server's `/metrics`. */
function answeredGets(metrics: string): number {
  const answered = metrics.matchAll(
    /^merchant_http_request_duration_seconds_count\{method="GET",route="\/jobs\/:id",[^}]*\} (\d+)/gm,
  );
  return [...answered].reduce((sum, m) => sum + Number(m[1]), 0);
}

/**
 * 6. Slot utilization: 1 s heuristic, N = 10 x C jobs: the heuristic's time (N seconds) over
 * the slots' time from the first claim to the last completion. Counted from the heuristic's
 * known duration, not from each job's started_at-finished_at: that span also holds the outcome's
 * write, during which the slot already runs its next job.
 *
 * The N jobs are timed after one untimed wave of C jobs on the same server, as the time-to-result
 * measures are timed after their warm-up: a just-started server's first claims open the pool's
 * connections and warm their new backends (15-19 ms a claim, against 2.4-4.5 ms after), a cost a
 * running service pays once, which the phase's ten seconds charged to the slots' steady state.
 */
async function utilization(db: Knex, databaseUrl: string): Promise<void> {
  const jobs = 10 * CONCURRENCY;
  say(`utilization: ${jobs} jobs of 1 s on ${CONCURRENCY} slots, after a wave of ${CONCURRENCY}`);
  const second = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '1000' });
  await submitBatches(second.base, CONCURRENCY, (i) => `WARM-UP ${i}`, 1);
  await waitFinished(db, CONCURRENCY, 'utilization warm-up');
  // The warm-up's last job: the timed ones come after it.
  const since = await db.raw<{ rows: [{ seq: string }] }>(`SELECT max(seq) AS seq FROM jobs`);
  await submitBatches(second.base, jobs, (i) => `UBER TRIP ${i}`, 1);
  await waitFinished(db, jobs, 'utilization');
  const span = await db.raw<{ rows: [{ span_s: number }] }>(
    `SELECT extract(epoch FROM max(finished_at) - min(started_at)) AS span_s FROM jobs
     WHERE seq > ?::bigint`,
    [since.rows[0].seq],
  );
  result.utilization_pct = round((100 * jobs) / (CONCURRENCY * Number(span.rows[0].span_s)));
  target('slot utilization (1 s jobs)', result.utilization_pct, '≥ 99 %', (v) => v >= 99);
  await second.stop();
  await reset(db);
}

/** 7. Heuristic calls vs jobs on transactions-2k.csv, result cache and single-flight on. */
async function heuristicCallsPhase(db: Knex, databaseUrl: string): Promise<void> {
  say('heuristic calls on transactions-2k.csv (cache on)');
  const cached = await startService(databaseUrl, {
    HEURISTIC_DELAY_MS: '20',
    RESULT_CACHE_TTL_MS: '3600000',
  });
  const rows = (await fs.readFile(SAMPLE, 'utf8')).trim().split('\n').slice(1);
  const descriptions = rows.map((r) => r.slice(11, r.lastIndexOf(',')).replace(/^"|"$/g, ''));
  await submitBatches(cached.base, descriptions.length, (i) => descriptions[i] ?? '', 2);
  await waitFinished(db, descriptions.length, 'transactions-2k');
  result.sample_jobs = descriptions.length;
  result.sample_heuristic_calls = await heuristicCalls(cached.base);
  result.sample_distinct_keys = Number(
    (await db.raw<{ rows: [{ n: string }] }>('SELECT count(DISTINCT cache_key) AS n FROM jobs'))
      .rows[0].n,
  );
  target(
    'heuristic calls = distinct keys (transactions-2k.csv)',
    result.sample_heuristic_calls,
    `= ${result.sample_distinct_keys}`,
    (v) => v === result.sample_distinct_keys,
  );
  await cached.stop();
  await reset(db);
}

/** 8. RSS at 0 and 100k pending jobs (the heuristic never finishes in time). */
async function rssPhase(db: Knex, databaseUrl: string): Promise<void> {
  say('RSS with 100,000 pending jobs');
  const stuck = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '600000' });
  await sleep(1000);
  result.rss_0_pending_mb = await rssMb(stuck.pid);
  await submitBatches(stuck.base, 100_000, (i) => `NETFLIX ${i}`);
  await sleep(2000);
  result.rss_100k_pending_mb = await rssMb(stuck.pid);
  target(
    'RSS growth, 0 → 100k pending',
    round(Number(result.rss_100k_pending_mb) - Number(result.rss_0_pending_mb)),
    '≤ +50 MB',
    (v) => v <= 50,
  );
  await stuck.stop();
  await reset(db);
}

interface Counts {
  within10ms: number;
  all: number;
}

/**
 * How many `GET /jobs/:id` the server has answered so far, in all and within 10 ms, from its
 * `merchant_http_request_duration_seconds` histogram (its own time, from the first middleware
 * to the response: not the wait for the event loop or the cores before it).
 */
async function serverGetDurations(base: string): Promise<Counts> {
  const res = await fetch(`${base}/metrics`, { headers: bench.auth });
  const buckets = (await res.text())
    .split('\n')
    .filter(
      (l) =>
        l.startsWith('merchant_http_request_duration_seconds_bucket{') &&
        l.includes('method="GET"') &&
        l.includes('route="/jobs/:id"') &&
        l.includes('status="200"'),
    );
  const bucket = (le: string) => {
    const line = buckets.find((l) => l.includes(`le="${le}"`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  return { within10ms: bucket('0.01'), all: bucket('+Inf') };
}

/** 9. GET p99 while CPU-heavy heuristics run (200 ms of CPU per job, on worker threads). */
async function cpuPhase(db: Knex, databaseUrl: string): Promise<void> {
  say('GET latency while CPU-heavy heuristics run');
  const cpu = await startService(databaseUrl, {
    HEURISTIC_DELAY_MS: '0',
    HEURISTIC_CPU_MS: '200',
  });
  // Polling clients: GETs at a steady rate, first with nothing running (the same server, the
  // same job, after WARMUP_SECONDS of them untimed), then while the heuristics burn CPU; then 16
  // connections as fast as they go, where the bench's own client competes for the cores and the
  // figure is mostly queueing. The steady GETs come from a process of their own, sent evenly
  // apart (paced-get.ts, which says why); the target is read on them, with the server's own
  // account of the same GETs (its request-duration histogram). autocannon at `overallRate`, which
  // this phase used before (bursts at the start of each second, each latency counted once per
  // millisecond it took), follows each window with the same rate, for comparison with earlier
  // runs.
  const [probe] = await submitBatches(cpu.base, 1, () => 'LYFT RIDE probe', 1);
  await waitFinished(db, 1, 'the probe job');
  const url = `${cpu.base}/jobs/${probe}`;
  const paced = async (seconds: number) =>
    quantiles(
      await pacedGets({ url, headers: bench.auth, rate: GET_RATE, connections: 4, seconds }),
    );
  const autocannonGets = async (duration: number) =>
    (
      await autocannon({
        url,
        headers: bench.auth,
        connections: 4,
        overallRate: GET_RATE,
        duration,
        workers: 1,
      })
    ).latency;
  // A server just started answers its first requests slowly (see WARMUP_SECONDS).
  await paced(WARMUP_SECONDS);
  const served = await serverGetDurations(cpu.base);
  const idle = await paced(5);
  // Also the count before the load's GETs: the submit between sends none.
  const servedIdle = await serverGetDurations(cpu.base);
  const idleAutocannon = await autocannonGets(5);
  await submitBatches(cpu.base, 1000, (i) => `LYFT RIDE ${i}`, 1);
  const servedBefore = await serverGetDurations(cpu.base);
  const get = await paced(5);
  const servedLoad = await serverGetDurations(cpu.base);
  const getAutocannon = await autocannonGets(5);
  const within10 = (after: Counts, before: Counts) =>
    round((100 * (after.within10ms - before.within10ms)) / Math.max(1, after.all - before.all), 2);
  result.get_idle_server_within_10ms_pct = within10(servedIdle, served);
  result.get_under_cpu_load_server_within_10ms_pct = within10(servedLoad, servedBefore);
  const saturated = await autocannon({
    url,
    headers: bench.auth,
    connections: 16,
    duration: Math.min(SECONDS, 5),
  });
  const [{ running }] = (await db('jobs').where({ status: 'running' }).count('* as running')) as [
    { running: string },
  ];
  result.get_idle_steady_p99_ms = idle.p99;
  result.get_idle_autocannon_p99_ms = idleAutocannon.p99;
  result.get_under_cpu_load_p50_ms = get.p50;
  result.get_under_cpu_load_p99_ms = get.p99;
  result.get_under_cpu_load_autocannon_p99_ms = getAutocannon.p99;
  result.get_under_cpu_load_saturated_p99_ms = saturated.latency.p99;
  result.get_under_cpu_load_saturated_rps = saturated.requests.average;
  result.get_under_cpu_load_running_jobs = Number(running);
  target(
    `GET p99 during CPU-heavy heuristics (${GET_RATE} GET/s)`,
    get.p99,
    '≤ 20 ms',
    (v) => v <= 20,
    `p50 ${get.p50} ms; idle: p99 ${idle.p99} ms; the same GETs from autocannon: p99 ${getAutocannon.p99} ms (idle ${idleAutocannon.p99}); 16 connections flat out: p99 ${saturated.latency.p99} ms at ${saturated.requests.average} req/s; ` +
      `the server's own time (Koa's middleware, from its histogram): within 10 ms for ${result.get_under_cpu_load_server_within_10ms_pct} % of the GETs (idle: ${result.get_idle_server_within_10ms_pct} %)`,
  );
  await cpu.stop();
  await reset(db);
}

/** 10. Many slow jobs in flight: RUNNER_CONCURRENCY=10000, 30 s I/O-bound heuristic. */
async function slowPhase(db: Knex, databaseUrl: string): Promise<void> {
  say(`${SLOW_JOBS} jobs of 30 s in flight in one process (RUNNER_CONCURRENCY=${SLOW_JOBS})`);
  const many = await startService(databaseUrl, {
    HEURISTIC_DELAY_MS: '30000',
    RUNNER_CONCURRENCY: String(SLOW_JOBS),
    SHUTDOWN_GRACE_MS: '0',
  });
  const [probe] = await submitBatches(many.base, SLOW_JOBS, (i) => `HULU ${i}`);
  const deadline = performance.now() + 20_000;
  let running = 0;
  while (performance.now() < deadline) {
    const [row] = (await db('jobs').where({ status: 'running' }).count('* as n')) as [
      { n: string },
    ];
    running = Number(row.n);
    if (running >= SLOW_JOBS) break;
    await sleep(200);
  }
  result.slow_running_jobs = running;
  // Statements per second while they all sleep: from pg_stat_statements when installed,
  // else transactions (commits + rollbacks) of the database.
  const tracked = (
    await db.raw<{ rows: [{ on: boolean }] }>(
      `SELECT to_regclass('pg_stat_statements') IS NOT NULL AS on`,
    )
  ).rows[0].on;
  const count = async () => {
    const res = await db.raw<{ rows: [{ n: string }] }>(
      tracked
        ? `SELECT sum(calls) AS n FROM pg_stat_statements s
           JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()`
        : `SELECT xact_commit + xact_rollback AS n FROM pg_stat_database
           WHERE datname = current_database()`,
    );
    return { n: Number(res.rows[0].n), how: tracked ? 'statements' : 'transactions' };
  };
  // The runner alone first (10 s: a heartbeat's renewal, the reaper's polls), then the GETs.
  const before = await count();
  const t0 = performance.now();
  await sleep(10_000);
  const after = await count();
  result[`slow_db_${after.how}_per_s`] = round(
    (after.n - before.n) / ((performance.now() - t0) / 1000),
  );
  // The jobs' own memory, before the GETs' garbage adds to the heap (the target reads the RSS
  // after them, the larger: 16 connections flat out answer 3,000-13,000 GETs a second).
  result.slow_rss_before_gets_mb = await rssMb(many.pid);
  const get = await autocannon({
    url: `${many.base}/jobs/${probe}`,
    headers: bench.auth,
    connections: 16,
    duration: Math.min(SECONDS, 5),
  });
  result.slow_rss_mb = await rssMb(many.pid);
  result.slow_get_p50_ms = get.latency.p50;
  result.slow_get_p99_ms = get.latency.p99;
  target(`${SLOW_JOBS} slow jobs in flight: RSS`, result.slow_rss_mb, '≤ 500 MB', (v) => v <= 500);
  target(`${SLOW_JOBS} slow jobs in flight: GET p99`, get.latency.p99, '≤ 20 ms', (v) => v <= 20);
  target(
    `${SLOW_JOBS} slow jobs in flight: database ${after.how}/s (10 s, no GETs)`,
    Number(result[`slow_db_${after.how}_per_s`]),
    'bounded, reported',
    () => running >= SLOW_JOBS,
    `${running} running`,
  );
  await many.stop();
  await reset(db);
}

/** 11. One, two, three processes on one Postgres: throughput, and every job run exactly once. */
async function processesPhase(db: Knex, databaseUrl: string): Promise<void> {
  for (const n of [1, 2, 3]) {
    say(`${n} process(es): ${PROC_JOBS} no-op jobs`);
    const servers = await Promise.all(
      Array.from({ length: n }, () =>
        startService(databaseUrl, { HEURISTIC_DELAY_MS: '0' }, { alongside: true }),
      ),
    );
    const t0 = performance.now();
    await Promise.all(
      servers.map((srv, k) =>
        submitBatches(srv.base, Math.ceil(PROC_JOBS / n), (i) => `OPENAI ${k}-${i}`, 2),
      ),
    );
    const total = Math.ceil(PROC_JOBS / n) * n;
    await waitFinished(db, total, `${n} processes`);
    result[`procs_${n}_jobs_per_s`] = round(total / ((performance.now() - t0) / 1000));
    const calls = (await Promise.all(servers.map((srv) => heuristicCalls(srv.base)))).reduce(
      (a, b) => a + b,
      0,
    );
    const [check] = (
      await db.raw<{ rows: [{ jobs: string; once: string }] }>(
        `SELECT count(*) AS jobs,
                count(*) FILTER (WHERE status = 'succeeded' AND attempts = 1) AS once
         FROM jobs`,
      )
    ).rows;
    const exactlyOnce = Number(check.jobs) === total && Number(check.once) === total;
    result[`procs_${n}_exactly_once`] = exactlyOnce && calls === total ? 'yes' : 'NO';
    result[`procs_${n}_heuristic_calls`] = calls;
    await Promise.all(servers.map((srv) => srv.stop()));
    await reset(db);
  }
  target(
    'several processes: same jobs run exactly once (1/2/3 processes)',
    [1, 2, 3].every((n) => result[`procs_${n}_exactly_once`] === 'yes') ? 1 : 0,
    'exactly once',
    (v) => v === 1,
    [1, 2, 3].map((n) => `${n}: ${result[`procs_${n}_jobs_per_s`]} jobs/s`).join(', '),
  );
}

/** The phases, in the order they run, by their `BENCH_ONLY` name. */
export const servicePhases: ReadonlyArray<
  readonly [phase: string, run: (db: Knex, databaseUrl: string) => Promise<void>]
> = [
  ['longpoll', longpoll],
  ['util', utilization],
  ['calls', heuristicCallsPhase],
  ['rss', rssPhase],
  ['cpu', cpuPhase],
  ['slow10k', slowPhase],
  ['procs', processesPhase],
];
