/**
 * `npm run bench`: the real server (spawned as `npm start` runs it) measured over HTTP, and the
 * peers (graphile-worker, BullMQ, pg-boss) on the same Postgres and Redis in the same run.
 * Prints progress, then a table and a JSON line.
 *
 * Uses a throwaway embedded Postgres unless BENCH_DATABASE_URL is set (its tables are
 * truncated: never point it at a database you care about). BullMQ needs Redis on
 * 127.0.0.1:BENCH_REDIS_PORT (6379); without it that peer is skipped.
 *
 *   BENCH_SECONDS=10 BENCH_DRAIN_JOBS=20000 BENCH_PEER_JOBS=5000 npm run bench
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { createKnex, migrateLatest } from '../src/db/knex.js';
import { createLogger } from '../src/log.js';
import { freePort } from '../src/net.js';
import { BIG_OPS, benchBigTable } from './bigtable.js';
import { cpuMs, postgresCpuMs } from './cpu.js';
import { benchFiles } from './files.js';
import { type PeerResult, bullmq, graphileWorker, pgBoss } from './peers.js';
import { bareRoundTrips, postThenWait, postWaiting } from './ttr.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const DRAIN_JOBS = Number(process.env.BENCH_DRAIN_JOBS ?? 20_000);
const PEER_JOBS = Number(process.env.BENCH_PEER_JOBS ?? 5000);
const CONCURRENCY = 16;
const CONNECTIONS = 64;
const PICKUPS = 200;
const TTR_JOBS = Number(process.env.BENCH_TTR_JOBS ?? 500);
const LONGPOLL_WAITERS = Number(process.env.BENCH_LONGPOLL_WAITERS ?? 1000);
const SLOW_JOBS = Number(process.env.BENCH_SLOW_JOBS ?? 10_000);
const PROC_JOBS = Number(process.env.BENCH_PROC_JOBS ?? 10_000);
const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6379);
/** GETs per second of the polling clients in the CPU phase. */
const GET_RATE = Number(process.env.BENCH_GET_RATE ?? 200);
/**
 * Comma-separated phases to run (submit,batch,drain,pickup,ttr,longpoll,util,calls,rss,cpu,slow10k,procs,files,peers); all by default.
 * `bigtable` (bench/bigtable.ts: 10 M + 1 M jobs, minutes and GBs) runs only when named here.
 */
const ONLY = process.env.BENCH_ONLY?.split(',').map((p) => p.trim());
const on = (phase: string) => !ONLY || ONLY.includes(phase);
/** Extra node flags for spawned servers, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`. */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
/**
 * Another checkout whose `src/main.ts` is the service measured (its own migrations run when it
 * starts): compares a past commit with the same harness. Default: this checkout.
 */
const SERVICE_DIR = process.env.BENCH_SERVICE_DIR;
const SAMPLE = path.resolve(import.meta.dirname, '../test/fixtures/transactions-2k.csv');

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const say = (line: string) => console.log(`bench: ${line}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const children: ChildProcess[] = [];
/** The embedded Postgres's postmaster (its CPU is measured); unset with BENCH_DATABASE_URL. */
let postmasterPid: number | undefined;

/**
 * CPU ms per request of the server `pid` and of Postgres over `run` (which returns how many
 * requests it made): steadier than req/s on a shared machine.
 */
async function cpuPerRequest(
  pid: number,
  run: () => Promise<number>,
): Promise<{ server: number; postgres: number }> {
  const pgCpu = () => (postmasterPid ? postgresCpuMs(postmasterPid) : NaN);
  const [server0, postgres0] = [cpuMs(pid), pgCpu()];
  const n = await run();
  return {
    server: round((cpuMs(pid) - server0) / n, 3),
    postgres: round((pgCpu() - postgres0) / n, 3),
  };
}
const result: Record<string, number | string> = {};
let auth: Record<string, string> = {};

interface Server {
  base: string;
  pid: number;
  stop(): Promise<void>;
}

/** Spawns `script` with `env` and waits until `ready` answers. */
async function spawnServer(
  script: string,
  env: Record<string, string>,
  ready: (base: string) => Promise<boolean>,
): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, [...NODE_ARGS, '--import', 'tsx', script], {
    env: { ...process.env, ...env, PORT: String(port), LOG_LEVEL: 'warn' },
    cwd: script === 'src/main.ts' ? SERVICE_DIR : undefined,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  const base = `http://127.0.0.1:${port}`;
  while (!(await ready(base).catch(() => false))) {
    if (child.exitCode !== null) throw new Error(`${script} exited with ${child.exitCode}`);
    await sleep(100);
  }
  return {
    base,
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

/** The service (src/main.ts) on `databaseUrl`; the result cache off unless `env` says so. */
function startService(databaseUrl: string, env: Record<string, string>): Promise<Server> {
  return spawnServer(
    'src/main.ts',
    {
      DATABASE_URL: databaseUrl,
      RUNNER_CONCURRENCY: String(CONCURRENCY),
      RESULT_CACHE_TTL_MS: '0',
      CLIENT_MAX_PENDING: '1000000',
      RUNNER_POLL_MS: '1000',
      ...env,
    },
    async (base) => (await fetch(`${base}/readyz`)).ok,
  );
}

async function rssMb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024);
}

async function post(base: string, pathname: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${base}${pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify(body),
  });
  const parsed: unknown = await res.json();
  if (res.status !== 202 && res.status !== 200) {
    throw new Error(`POST ${pathname}: ${res.status} ${JSON.stringify(parsed)}`);
  }
  return parsed;
}

const tx = (description: string, i: number) => ({ date: '2026-04-03', description, amount: i });

/** Submits `n` transactions as batches of 1000, `inFlight` at a time; returns their job ids. */
async function submitBatches(
  base: string,
  n: number,
  describe: (i: number) => string,
  inFlight = 4,
): Promise<string[]> {
  const ids: string[][] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next * 1000 < n) {
        const b = next++;
        const size = Math.min(1000, n - b * 1000);
        const transactions = Array.from({ length: size }, (_, k) => tx(describe(b * 1000 + k), k));
        const batch = (await post(base, '/normalize_merchant/batch', { transactions })) as {
          job_ids: string[];
        };
        ids[b] = batch.job_ids;
      }
    }),
  );
  return ids.flat();
}

/**
 * Waits until no job is pending or running (every caller has had all its submits answered, so
 * that means all `n` finished). Asks the partial indexes, not a count over the whole table: the
 * harness should not compete with the service for the two cores.
 */
async function waitFinished(db: Knex, n: number, what: string): Promise<void> {
  let last = performance.now();
  for (;;) {
    const res = await db.raw<{ rows: [{ open: boolean }] }>(
      `SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'pending')
           OR EXISTS (SELECT 1 FROM jobs WHERE status = 'running') AS open`,
    );
    if (!res.rows[0].open) return;
    if (performance.now() - last > 3000) {
      last = performance.now();
      say(`  ${what}: ${n} jobs, some still open`);
    }
    await sleep(10);
  }
}

async function reset(db: Knex) {
  await db.raw('TRUNCATE jobs, batches, results, flights');
}

async function percentiles(db: Knex, expr: string): Promise<{ p50: number; p99: number }> {
  const res = await db.raw<{ rows: [{ p50: number; p99: number }] }>(
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ${expr}) AS p50,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY ${expr}) AS p99
     FROM jobs WHERE started_at IS NOT NULL`,
  );
  return { p50: round(Number(res.rows[0].p50), 2), p99: round(Number(res.rows[0].p99), 2) };
}

const PICKUP_MS = 'extract(epoch FROM started_at - created_at) * 1000';

async function main() {
  let databaseUrl = process.env.BENCH_DATABASE_URL;
  let dataDir: string | undefined;
  let stopEmbedded = async () => {};
  if (!databaseUrl) {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-bench-'));
    const pg = await startEmbeddedPostgres({ dataDir, port: 0, log: createLogger('warn') });
    postmasterPid = pg.pid;
    databaseUrl = pg.url;
    stopEmbedded = () => pg.stop();
  }
  const db = createKnex(databaseUrl, 4);
  if (SERVICE_DIR) {
    say(`service from ${SERVICE_DIR}`);
    await (await startService(databaseUrl, {})).stop(); // it migrates on start
  } else {
    await migrateLatest(db);
  }
  await db.raw('TRUNCATE jobs, batches, results, flights, api_keys, clients CASCADE');
  auth = { authorization: `Bearer ${(await issueKey(db, 'bench')).key}` };
  say(`${os.cpus().length} cores, Node ${process.version}, RUNNER_CONCURRENCY=${CONCURRENCY}`);

  // 1. Single submit over HTTP (autocannon), next to a bare Koa handler doing one INSERT.
  const needNoop = ['submit', 'batch', 'drain', 'pickup', 'ttr'].some(on);
  const noop = needNoop ? await startService(databaseUrl, { HEURISTIC_DELAY_MS: '0' }) : undefined;
  if (noop) result.rss_idle_mb = await rssMb(noop.pid);
  if (noop && on('submit')) {
    say(`single submit: ${CONNECTIONS} connections for ${SECONDS} s`);
    let submit!: Awaited<ReturnType<typeof autocannon>>;
    const submitCpu = await cpuPerRequest(noop.pid, async () => {
      submit = await autocannon({
        url: `${noop.base}/normalize_merchant`,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify(tx('OPENAI 5YLH7D', 1)),
        connections: CONNECTIONS,
        duration: SECONDS,
      });
      return submit.requests.total;
    });
    if (submit.non2xx > 0 || submit.errors > 0) {
      throw new Error(`submit: ${submit.non2xx} non-2xx, ${submit.errors} errors`);
    }
    result.submit_req_per_s = round(submit.requests.average);
    result.submit_p50_ms = submit.latency.p50;
    result.submit_p99_ms = submit.latency.p99;
    result.submit_server_cpu_ms_per_req = submitCpu.server;
    result.submit_postgres_cpu_ms_per_req = submitCpu.postgres;
    await waitFinished(db, submit.requests.total, 'submitted jobs');
    await reset(db);

    const bare = await spawnServer('bench/bare-koa.ts', { DATABASE_URL: databaseUrl }, (base) =>
      fetch(base, { method: 'HEAD' }).then(
        () => true,
        () => false,
      ),
    );
    say(`bare Koa + one INSERT: ${CONNECTIONS} connections for ${SECONDS} s`);
    let baseline!: Awaited<ReturnType<typeof autocannon>>;
    const bareCpu = await cpuPerRequest(bare.pid, async () => {
      baseline = await autocannon({
        url: `${bare.base}/`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(tx('OPENAI 5YLH7D', 1)),
        connections: CONNECTIONS,
        duration: SECONDS,
      });
      return baseline.requests.total;
    });
    result.bare_koa_insert_req_per_s = round(baseline.requests.average);
    result.bare_koa_insert_p50_ms = baseline.latency.p50;
    result.bare_koa_insert_p99_ms = baseline.latency.p99;
    result.bare_koa_server_cpu_ms_per_req = bareCpu.server;
    result.bare_koa_postgres_cpu_ms_per_req = bareCpu.postgres;
    await bare.stop();
    await db.raw('DROP TABLE IF EXISTS bench_bare');
    target(
      'single submit vs bare Koa + one INSERT',
      ratio(result.submit_req_per_s, result.bare_koa_insert_req_per_s),
      '≥ 0.8x',
      (v) => v >= 0.8,
      `${result.submit_req_per_s} vs ${result.bare_koa_insert_req_per_s} req/s; CPU ms per ` +
        `request, server ${submitCpu.server} vs ${bareCpu.server}, ` +
        `Postgres ${submitCpu.postgres} vs ${bareCpu.postgres}`,
    );
  }

  // 2. Batch submit.
  if (noop && on('batch')) {
    say('batch submit: 10 x 1000, 4 in flight');
    const t0 = performance.now();
    await submitBatches(noop.base, 10_000, (i) => `OPENAI ${i}`);
    result.batch_submit_jobs_per_s = round(10_000 / ((performance.now() - t0) / 1000));
    await waitFinished(db, 10_000, 'batch jobs');
    await reset(db);
  }

  // 3. End-to-end drain: DRAIN_JOBS no-op jobs, from the first submit to the last finish.
  if (noop && on('drain')) {
    say(`drain: ${DRAIN_JOBS} no-op jobs`);
    const t0 = performance.now();
    await submitBatches(noop.base, DRAIN_JOBS, (i) => `OPENAI ${i}`);
    await waitFinished(db, DRAIN_JOBS, 'drain');
    result.drain_jobs_per_s = round(DRAIN_JOBS / ((performance.now() - t0) / 1000));
    const underLoad = await percentiles(db, PICKUP_MS);
    result.drain_pickup_p50_ms = underLoad.p50;
    result.drain_pickup_p99_ms = underLoad.p99;
    result.rss_after_drain_mb = await rssMb(noop.pid);
    await reset(db);
  }

  // 4. Pick-up on an idle queue: one job at a time, submit to heuristic start.
  if (noop && on('pickup')) {
    say(`pick-up: ${PICKUPS} jobs, one at a time`);
    for (let i = 0; i < PICKUPS; i++) {
      const job = (await post(noop.base, '/normalize_merchant', tx(`OPENAI ${i}`, i))) as {
        id: string;
      };
      await fetch(`${noop.base}/jobs/${job.id}?wait=10`, { headers: auth }).then((r) => r.json());
      await sleep(5);
    }
    const idle = await percentiles(db, PICKUP_MS);
    result.pickup_p50_ms = idle.p50;
    result.pickup_p99_ms = idle.p99;
    await reset(db);
  }

  // 4b. Time to result: POST, then GET ?wait on its id, one job at a time, measured here; then
  // the same as one POST with `Prefer: wait`, and the floor: bare Koa, POST then GET.
  if (noop && on('ttr')) {
    say(`time to result: ${TTR_JOBS} sequential POST + GET ?wait, then POST with Prefer: wait`);
    const p = quantiles(await postThenWait(noop.base, auth, TTR_JOBS));
    result.time_to_result_p50_ms = p.p50;
    result.time_to_result_p99_ms = p.p99;
    const one = quantiles(await postWaiting(noop.base, auth, TTR_JOBS));
    result.time_to_result_prefer_wait_p50_ms = one.p50;
    result.time_to_result_prefer_wait_p99_ms = one.p99;
    await reset(db);
    say(`time to result floor: ${TTR_JOBS} sequential POST + GET to bare Koa`);
    const bare = await spawnServer('bench/bare-koa.ts', { DATABASE_URL: databaseUrl }, (base) =>
      fetch(base, { method: 'HEAD' }).then(
        () => true,
        () => false,
      ),
    );
    const floor = quantiles(await bareRoundTrips(bare.base, TTR_JOBS));
    await bare.stop();
    await db.raw('DROP TABLE IF EXISTS bench_bare');
    result.ttr_floor_bare_koa_p50_ms = floor.p50;
    result.ttr_floor_bare_koa_p99_ms = floor.p99;
    target(
      'time to result p99 (no-op, POST then GET ?wait)',
      p.p99,
      '≤ 10 ms',
      (v) => v <= 10,
      `p50 ${p.p50}; floor in this run, bare Koa POST (INSERT) then GET (SELECT): ` +
        `p50 ${floor.p50} / p99 ${floor.p99} ms; one POST with Prefer: wait: ` +
        `p50 ${one.p50} / p99 ${one.p99} ms`,
    );
  }
  await noop?.stop();

  // 5. Completion -> long-poll answer: LONGPOLL_WAITERS jobs of 100 ms, each with a ?wait=60.
  if (on('longpoll')) {
    say(`long-poll: ${LONGPOLL_WAITERS} jobs of 100 ms, each with a waiter`);
    const slow = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '100' });
    const ids = await submitBatches(slow.base, LONGPOLL_WAITERS, (i) => `SPOTIFY ${i}`, 1);
    const lags: Array<{ finishedAt: number; lag: number }> = [];
    let answered = 0;
    // When every waiter is registered in the server (waiting now, or already answered): lags
    // of jobs finishing before then include the burst of 1,000 requests arriving at once.
    let registeredAt = Infinity;
    const watching = (async () => {
      while (answered < ids.length) {
        const metrics = await (await fetch(`${slow.base}/metrics`)).text();
        const waiting = Number(/^merchant_longpoll_waiting_requests (\d+)/m.exec(metrics)?.[1]);
        if (waiting + answered >= ids.length) {
          registeredAt = Date.now();
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await Promise.all(
      ids.map(async (id) => {
        const askedAt = Date.now();
        const res = await fetch(`${slow.base}/jobs/${id}?wait=60`, { headers: auth });
        const answeredAt = Date.now();
        answered++;
        const job = (await res.json()) as { finished_at: string | null };
        const finishedAt = Date.parse(job.finished_at ?? '');
        if (finishedAt >= askedAt) lags.push({ finishedAt, lag: answeredAt - finishedAt });
      }),
    );
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

  // 6. Slot utilization: 1 s heuristic, N = 10 x C jobs.
  if (on('util')) {
    say(`utilization: ${10 * CONCURRENCY} jobs of 1 s on ${CONCURRENCY} slots`);
    const second = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '1000' });
    await submitBatches(second.base, 10 * CONCURRENCY, (i) => `UBER TRIP ${i}`, 1);
    await waitFinished(db, 10 * CONCURRENCY, 'utilization');
    const span = await db.raw<{ rows: [{ busy_s: number; span_s: number }] }>(
      `SELECT sum(extract(epoch FROM finished_at - started_at)) AS busy_s,
              extract(epoch FROM max(finished_at) - min(started_at)) AS span_s FROM jobs`,
    );
    result.utilization_pct = round(
      (100 * Number(span.rows[0].busy_s)) / (CONCURRENCY * Number(span.rows[0].span_s)),
    );
    target('slot utilization (1 s jobs)', result.utilization_pct, '≥ 99 %', (v) => v >= 99);
    await second.stop();
    await reset(db);
  }

  // 7. Heuristic calls vs jobs on transactions-2k.csv, result cache and single-flight on.
  if (on('calls')) {
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

  // 8. RSS at 0 and 100k pending jobs (the heuristic never finishes in time).
  if (on('rss')) {
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

  // 9. GET p99 while CPU-heavy heuristics run (200 ms of CPU per job, on worker threads).
  if (on('cpu')) {
    say('GET latency while CPU-heavy heuristics run');
    const cpu = await startService(databaseUrl, {
      HEURISTIC_DELAY_MS: '0',
      HEURISTIC_CPU_MS: '200',
    });
    // Polling clients: GETs at a steady rate, first with nothing running (the same server, the
    // same job), then while the heuristics burn CPU; then 16 connections as fast as they go,
    // where the bench's own client competes for the cores and the figure is mostly queueing.
    const [probe] = await submitBatches(cpu.base, 1, () => 'LYFT RIDE probe', 1);
    await waitFinished(db, 1, 'the probe job');
    const url = `${cpu.base}/jobs/${probe}`;
    const steady = () =>
      autocannon({ url, headers: auth, connections: 4, overallRate: GET_RATE, duration: 5 });
    const idle = await steady();
    await submitBatches(cpu.base, 1000, (i) => `LYFT RIDE ${i}`, 1);
    const get = await steady();
    const saturated = await autocannon({
      url,
      headers: auth,
      connections: 16,
      duration: Math.min(SECONDS, 5),
    });
    const [{ running }] = (await db('jobs').where({ status: 'running' }).count('* as running')) as [
      { running: string },
    ];
    result.get_idle_steady_p99_ms = idle.latency.p99;
    result.get_under_cpu_load_p50_ms = get.latency.p50;
    result.get_under_cpu_load_p99_ms = get.latency.p99;
    result.get_under_cpu_load_saturated_p99_ms = saturated.latency.p99;
    result.get_under_cpu_load_saturated_rps = saturated.requests.average;
    result.get_under_cpu_load_running_jobs = Number(running);
    target(
      `GET p99 during CPU-heavy heuristics (${GET_RATE} GET/s)`,
      get.latency.p99,
      '≤ 20 ms',
      (v) => v <= 20,
      `idle: p99 ${idle.latency.p99} ms; 16 connections flat out: p99 ${saturated.latency.p99} ms at ${saturated.requests.average} req/s`,
    );
    await cpu.stop();
    await reset(db);
  }

  // 10. Many slow jobs in flight: RUNNER_CONCURRENCY=10000, 30 s I/O-bound heuristic.
  if (on('slow10k')) {
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
    const get = await autocannon({
      url: `${many.base}/jobs/${probe}`,
      headers: auth,
      connections: 16,
      duration: Math.min(SECONDS, 5),
    });
    result.slow_rss_mb = await rssMb(many.pid);
    result.slow_get_p50_ms = get.latency.p50;
    result.slow_get_p99_ms = get.latency.p99;
    target(
      `${SLOW_JOBS} slow jobs in flight: RSS`,
      result.slow_rss_mb,
      '≤ 500 MB',
      (v) => v <= 500,
    );
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

  // 11. One, two, three processes on one Postgres: throughput, and every job run exactly once.
  if (on('procs')) {
    for (const n of [1, 2, 3]) {
      say(`${n} process(es): ${PROC_JOBS} no-op jobs`);
      const servers = await Promise.all(
        Array.from({ length: n }, () => startService(databaseUrl, { HEURISTIC_DELAY_MS: '0' })),
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

  // File batches, both ways (bench/files.ts).
  if (on('files')) Object.assign(result, await benchFiles(databaseUrl));

  // The big table (bench/bigtable.ts), opt-in.
  if (ONLY?.includes('bigtable')) {
    Object.assign(result, await benchBigTable(databaseUrl));
    for (const op of BIG_OPS) {
      target(
        `big table: ${op} p99 vs empty table`,
        result[`big_${op}_p99_ratio`],
        '≤ 2x',
        (v) => v <= 2,
        `p99 ${result[`big_${op}_p99_ms`]} vs ${result[`big_empty_${op}_p99_ms`]} ms, p50 ${result[`big_${op}_p50_ms`]} vs ${result[`big_empty_${op}_p50_ms`]}`,
      );
    }
    target(
      'big table: the purge blocks no one (samples waiting on its backend)',
      result.big_purge_blocked_by_purge_samples,
      '= 0',
      (v) => v === 0,
      `${result.big_purge_rows} jobs in ${result.big_purge_s} s; lock waits in ${result.big_purge_lock_wait_samples} of ${result.big_purge_activity_samples} samples`,
    );
  }

  // 12. The peers. graphile-worker drains the same N as our drain, at the same concurrency,
  // enqueue + drain timed together, on the same Postgres.
  if (on('peers')) {
    const peerOpts = { databaseUrl, jobs: PEER_JOBS, concurrency: CONCURRENCY, pickups: PICKUPS };
    const peers: Array<[string, () => Promise<PeerResult>]> = [
      ['graphile_worker', () => graphileWorker({ ...peerOpts, jobs: DRAIN_JOBS })],
      ['bullmq', () => bullmq({ ...peerOpts, redisPort: REDIS_PORT })],
      // Its pick-up is its polling interval (0.5 s): 20 samples say as much as 200.
      ['pg_boss', () => pgBoss({ ...peerOpts, pickups: 20 })],
    ];
    for (const [name, runPeer] of peers) {
      if (name === 'bullmq' && !(await reachable(REDIS_PORT))) {
        say(`${name}: skipped (no Redis on 127.0.0.1:${REDIS_PORT})`);
        result[`${name}_skipped`] = 'no Redis';
        continue;
      }
      const jobs = name === 'graphile_worker' ? DRAIN_JOBS : PEER_JOBS;
      say(`${name}: ${jobs} no-op jobs at concurrency ${CONCURRENCY}, ${PICKUPS} pick-ups`);
      const r = await runPeer();
      for (const [k, v] of Object.entries(r)) result[`${name}_${k}`] = v;
    }
    if (result.drain_jobs_per_s !== undefined && result.graphile_worker_drain_jobs_per_s) {
      target(
        `drain ${DRAIN_JOBS} no-op jobs vs graphile-worker batch mode (enqueue + drain)`,
        ratio(result.drain_jobs_per_s, result.graphile_worker_drain_jobs_per_s),
        '≥ 1.0x',
        (v) => v >= 1,
        `${result.drain_jobs_per_s} vs ${result.graphile_worker_drain_jobs_per_s} jobs/s`,
      );
    }
  }

  await db.destroy();
  await stopEmbedded();
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });

  result.cores = os.cpus().length;
  result.node = process.version;
  console.log('\n| metric | value |\n|---|---|');
  for (const [k, v] of Object.entries(result)) console.log(`| ${k} | ${v} |`);
  console.log('\n| target | measured | wanted | met | detail |\n|---|---|---|---|---|');
  for (const t of targets) {
    console.log(`| ${t.what} | ${t.value} | ${t.wanted} | ${t.met ? 'yes' : 'NO'} | ${t.detail} |`);
  }
  console.log(`\n${JSON.stringify({ ...result, targets })}`);
}

interface Target {
  what: string;
  value: number;
  wanted: string;
  met: boolean;
  detail: string;
}
const targets: Target[] = [];

/** Records one of the issue's targets for the final table. */
function target(
  what: string,
  value: number | string | undefined,
  wanted: string,
  met: (v: number) => boolean,
  detail = '',
) {
  const v = Number(value);
  targets.push({ what, value: v, wanted, met: Number.isFinite(v) && met(v), detail });
}

function ratio(a: number | string | undefined, b: number | string | undefined): number {
  return round(Number(a) / Number(b), 2);
}

function quantiles(values: number[]): { p50: number; p99: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
  return { p50: round(at(0.5) ?? NaN, 2), p99: round(at(0.99) ?? NaN, 2) };
}

async function heuristicCalls(base: string): Promise<number> {
  const metrics = await (await fetch(`${base}/metrics`)).text();
  return Number(/^merchant_heuristic_duration_seconds_count (\d+)/m.exec(metrics)?.[1] ?? NaN);
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    console.error(`bench: failed; measured so far: ${JSON.stringify({ ...result, targets })}`);
    // Do not leave servers behind (they would hold this process's stdout open).
    for (const child of children) child.kill('SIGKILL');
    process.exit(1);
  },
);
