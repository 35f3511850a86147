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
import { benchFiles } from './files.js';
import { type PeerResult, bullmq, graphileWorker, pgBoss } from './peers.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const DRAIN_JOBS = Number(process.env.BENCH_DRAIN_JOBS ?? 20_000);
const PEER_JOBS = Number(process.env.BENCH_PEER_JOBS ?? 5000);
const CONCURRENCY = 16;
const CONNECTIONS = 64;
const PICKUPS = 200;
const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6379);
const SAMPLE = path.resolve(import.meta.dirname, '../test/fixtures/transactions-2k.csv');

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const say = (line: string) => console.log(`bench: ${line}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const children: ChildProcess[] = [];
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
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    env: { ...process.env, ...env, PORT: String(port), LOG_LEVEL: 'warn' },
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

async function waitFinished(db: Knex, n: number, what: string): Promise<void> {
  let last = 0;
  for (;;) {
    const [row] = (await db('jobs')
      .whereIn('status', ['succeeded', 'failed', 'canceled'])
      .count('* as done')) as [{ done: string }];
    const done = Number(row.done);
    if (done >= n) return;
    if (performance.now() - last > 3000) {
      last = performance.now();
      say(`  ${what}: ${done}/${n} finished`);
    }
    await sleep(20);
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
    databaseUrl = pg.url;
    stopEmbedded = () => pg.stop();
  }
  const db = createKnex(databaseUrl, 4);
  await migrateLatest(db);
  await db.raw('TRUNCATE jobs, batches, results, flights, api_keys, clients');
  auth = { authorization: `Bearer ${(await issueKey(db, 'bench')).key}` };
  say(`${os.cpus().length} cores, Node ${process.version}, RUNNER_CONCURRENCY=${CONCURRENCY}`);

  // 1. Single submit over HTTP (autocannon), next to a bare Koa handler doing one INSERT.
  const noop = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '0' });
  result.rss_idle_mb = await rssMb(noop.pid);
  say(`single submit: ${CONNECTIONS} connections for ${SECONDS} s`);
  const submit = await autocannon({
    url: `${noop.base}/normalize_merchant`,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify(tx('OPENAI 5YLH7D', 1)),
    connections: CONNECTIONS,
    duration: SECONDS,
  });
  if (submit.non2xx > 0 || submit.errors > 0) {
    throw new Error(`submit: ${submit.non2xx} non-2xx, ${submit.errors} errors`);
  }
  result.submit_req_per_s = round(submit.requests.average);
  result.submit_p50_ms = submit.latency.p50;
  result.submit_p99_ms = submit.latency.p99;
  await waitFinished(db, submit.requests.total, 'submitted jobs');
  await reset(db);

  const bare = await spawnServer('bench/bare-koa.ts', { DATABASE_URL: databaseUrl }, (base) =>
    fetch(base, { method: 'HEAD' }).then(
      () => true,
      () => false,
    ),
  );
  say(`bare Koa + one INSERT: ${CONNECTIONS} connections for ${SECONDS} s`);
  const baseline = await autocannon({
    url: `${bare.base}/`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(tx('OPENAI 5YLH7D', 1)),
    connections: CONNECTIONS,
    duration: SECONDS,
  });
  result.bare_koa_insert_req_per_s = round(baseline.requests.average);
  result.bare_koa_insert_p50_ms = baseline.latency.p50;
  result.bare_koa_insert_p99_ms = baseline.latency.p99;
  await bare.stop();
  await db.raw('DROP TABLE IF EXISTS bench_bare');

  // 2. Batch submit.
  say('batch submit: 10 x 1000, 4 in flight');
  let t0 = performance.now();
  await submitBatches(noop.base, 10_000, (i) => `OPENAI ${i}`);
  result.batch_submit_jobs_per_s = round(10_000 / ((performance.now() - t0) / 1000));
  await waitFinished(db, 10_000, 'batch jobs');
  await reset(db);

  // 3. End-to-end drain: DRAIN_JOBS no-op jobs, from the first submit to the last finish.
  say(`drain: ${DRAIN_JOBS} no-op jobs`);
  t0 = performance.now();
  await submitBatches(noop.base, DRAIN_JOBS, (i) => `OPENAI ${i}`);
  await waitFinished(db, DRAIN_JOBS, 'drain');
  result.drain_jobs_per_s = round(DRAIN_JOBS / ((performance.now() - t0) / 1000));
  const underLoad = await percentiles(db, PICKUP_MS);
  result.drain_pickup_p50_ms = underLoad.p50;
  result.drain_pickup_p99_ms = underLoad.p99;
  result.rss_after_drain_mb = await rssMb(noop.pid);
  await reset(db);

  // 4. Pick-up on an idle queue: one job at a time, submit to heuristic start.
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
  await noop.stop();

  // 5. Completion -> long-poll answer: 500 jobs of 100 ms, each with a ?wait=60 waiter.
  say('long-poll: 500 jobs of 100 ms, each with a waiter');
  const slow = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '100' });
  const ids = await submitBatches(slow.base, 500, (i) => `SPOTIFY ${i}`, 1);
  const lags: number[] = [];
  await Promise.all(
    ids.map(async (id) => {
      const askedAt = Date.now();
      const res = await fetch(`${slow.base}/jobs/${id}?wait=60`, { headers: auth });
      const answeredAt = Date.now();
      const job = (await res.json()) as { finished_at: string | null };
      const finishedAt = Date.parse(job.finished_at ?? '');
      if (finishedAt >= askedAt) lags.push(answeredAt - finishedAt);
    }),
  );
  lags.sort((a, b) => a - b);
  result.longpoll_answer_p50_ms = lags[Math.floor(lags.length / 2)] ?? NaN;
  result.longpoll_answer_p99_ms = lags[Math.floor(lags.length * 0.99)] ?? NaN;
  await slow.stop();
  await reset(db);

  // 6. Slot utilization: 1 s heuristic, N = 10 x C jobs.
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
  await second.stop();
  await reset(db);

  // 7. Heuristic calls vs jobs on transactions-2k.csv, result cache and single-flight on.
  say('heuristic calls on transactions-2k.csv (cache on)');
  const cached = await startService(databaseUrl, {
    HEURISTIC_DELAY_MS: '20',
    RESULT_CACHE_TTL_MS: '3600000',
  });
  const rows = (await fs.readFile(SAMPLE, 'utf8')).trim().split('\n').slice(1);
  const descriptions = rows.map((r) => r.slice(11, r.lastIndexOf(',')).replace(/^"|"$/g, ''));
  await submitBatches(cached.base, descriptions.length, (i) => descriptions[i] ?? '', 2);
  await waitFinished(db, descriptions.length, 'transactions-2k');
  const metrics = await (await fetch(`${cached.base}/metrics`)).text();
  result.sample_jobs = descriptions.length;
  result.sample_heuristic_calls = Number(
    /^merchant_heuristic_duration_seconds_count (\d+)/m.exec(metrics)?.[1] ?? NaN,
  );
  result.sample_distinct_keys = Number(
    (await db.raw<{ rows: [{ n: string }] }>('SELECT count(DISTINCT cache_key) AS n FROM jobs'))
      .rows[0].n,
  );
  await cached.stop();
  await reset(db);

  // 8. RSS at 0 and 100k pending jobs (the heuristic never finishes in time).
  say('RSS with 100,000 pending jobs');
  const stuck = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '600000' });
  await sleep(1000);
  result.rss_0_pending_mb = await rssMb(stuck.pid);
  await submitBatches(stuck.base, 100_000, (i) => `NETFLIX ${i}`);
  await sleep(2000);
  result.rss_100k_pending_mb = await rssMb(stuck.pid);
  await stuck.stop();
  await reset(db);

  // 9. GET p99 while CPU-heavy heuristics run (200 ms of CPU per job, on worker threads).
  say('GET latency while CPU-heavy heuristics run');
  const cpu = await startService(databaseUrl, { HEURISTIC_DELAY_MS: '0', HEURISTIC_CPU_MS: '200' });
  const [probe] = await submitBatches(cpu.base, 1000, (i) => `LYFT RIDE ${i}`, 1);
  const get = await autocannon({
    url: `${cpu.base}/jobs/${probe}`,
    headers: auth,
    connections: 16,
    duration: Math.min(SECONDS, 5),
  });
  const [{ running }] = (await db('jobs').where({ status: 'running' }).count('* as running')) as [
    { running: string },
  ];
  result.get_under_cpu_load_p50_ms = get.latency.p50;
  result.get_under_cpu_load_p99_ms = get.latency.p99;
  result.get_under_cpu_load_running_jobs = Number(running);
  await cpu.stop();
  await reset(db);

  Object.assign(result, await benchFiles(databaseUrl)); // file batches, both ways (bench/files.ts)

  // 10. The peers.
  const peerOpts = { databaseUrl, jobs: PEER_JOBS, concurrency: CONCURRENCY, pickups: PICKUPS };
  const peers: Array<[string, () => Promise<PeerResult>]> = [
    ['graphile_worker', () => graphileWorker(peerOpts)],
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
    say(`${name}: ${PEER_JOBS} no-op jobs at concurrency ${CONCURRENCY}, ${PICKUPS} pick-ups`);
    const r = await runPeer();
    for (const [k, v] of Object.entries(r)) result[`${name}_${k}`] = v;
  }

  await db.destroy();
  await stopEmbedded();
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });

  result.cores = os.cpus().length;
  result.node = process.version;
  console.log('\n| metric | value |\n|---|---|');
  for (const [k, v] of Object.entries(result)) console.log(`| ${k} | ${v} |`);
  console.log(`\n${JSON.stringify(result)}`);
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
    // Do not leave servers behind (they would hold this process's stdout open).
    for (const child of children) child.kill('SIGKILL');
    process.exit(1);
  },
);
