/**
 * `npm run bench`: the real server (spawned as `npm start` runs it) with a no-op heuristic,
 * fed N jobs over HTTP. Prints a table and a JSON line: submit throughput and latency,
 * end-to-end drain rate, pick-up latency (created_at -> started_at), server RSS, batch-submit
 * throughput, and (on a second server whose heuristic takes 100 ms) how long after a job
 * finishes its long-poll waiter gets the answer.
 *
 * Uses a throwaway embedded Postgres unless BENCH_DATABASE_URL is set (its jobs table is
 * truncated: never point it at a database you care about).
 *
 *   BENCH_JOBS=5000 BENCH_CLIENTS=64 BENCH_CONCURRENCY=16 npm run bench
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { issueKey } from '../src/auth/keys.js';
import { createKnex, migrateLatest } from '../src/db/knex.js';
import { createLogger } from '../src/log.js';
import { freePort } from '../src/net.js';

const JOBS = Number(process.env.BENCH_JOBS ?? 5000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);
const CONCURRENCY = process.env.BENCH_CONCURRENCY ?? '16';

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

async function rssMb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024);
}

async function main() {
  const log = createLogger('warn');
  let dataDir: string | undefined;
  let databaseUrl = process.env.BENCH_DATABASE_URL;
  let stopEmbedded = async () => {};
  if (!databaseUrl) {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-bench-'));
    const pg = await startEmbeddedPostgres({ dataDir, port: 0, log });
    databaseUrl = pg.url;
    stopEmbedded = () => pg.stop();
  }
  const db = createKnex(databaseUrl, 4);
  await migrateLatest(db);
  await db.raw('TRUNCATE jobs, batches, api_keys, clients');
  AUTH.authorization = `Bearer ${(await issueKey(db, 'bench')).key}`;

  const { server, base } = await startServer(databaseUrl, '0');
  const rssIdle = await rssMb(server.pid!);

  console.log(`bench: ${JOBS} jobs, ${CLIENTS} HTTP clients, RUNNER_CONCURRENCY=${CONCURRENCY}`);
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  let lastReport = started;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < JOBS) {
        const i = next++;
        const t0 = performance.now();
        const res = await fetch(`${base}/normalize_merchant`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...AUTH },
          body: JSON.stringify({ date: '2026-04-03', description: `OPENAI ${i}`, amount: i }),
        });
        await res.arrayBuffer();
        if (res.status !== 202) throw new Error(`submit ${i}: HTTP ${res.status}`);
        latencies.push(performance.now() - t0);
        if (performance.now() - lastReport > 2000) {
          lastReport = performance.now();
          console.log(`  submitted ${latencies.length}/${JOBS}`);
        }
      }
    }),
  );
  const submitSeconds = (performance.now() - started) / 1000;

  for (;;) {
    const [{ done }] = (await db('jobs')
      .whereIn('status', ['succeeded', 'failed'])
      .count('* as done')) as [{ done: number }];
    if (Number(done) >= JOBS) break;
    if (performance.now() - lastReport > 2000) {
      lastReport = performance.now();
      console.log(`  finished ${done}/${JOBS}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const rssLoaded = await rssMb(server.pid!);

  const timing = await db.raw<{
    rows: [{ drain_s: number; pickup_p50: number; pickup_p99: number; succeeded: number }];
  }>(`
    SELECT extract(epoch FROM max(finished_at) - min(created_at)) AS drain_s,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)) * 1000 AS pickup_p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)) * 1000 AS pickup_p99,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded
    FROM jobs`);
  const t = timing.rows[0];
  latencies.sort((a, b) => a - b);

  // Batch submit: BATCHES x 1000 transactions, 4 at a time.
  const BATCHES = 10;
  const batchStarted = performance.now();
  let nextBatch = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (nextBatch < BATCHES) {
        const b = nextBatch++;
        const transactions = Array.from({ length: 1000 }, (_, i) => ({
          date: '2026-04-03',
          description: `OPENAI ${b}-${i}`,
          amount: i,
        }));
        const res = await fetch(`${base}/normalize_merchant/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...AUTH },
          body: JSON.stringify({ transactions }),
        });
        await res.arrayBuffer();
        if (res.status !== 202) throw new Error(`batch ${b}: HTTP ${res.status}`);
      }
    }),
  );
  const batchJobsPerS = (BATCHES * 1000) / ((performance.now() - batchStarted) / 1000);
  console.log(`  batch submit: ${round(batchJobsPerS)} jobs/s`);
  server.kill('SIGTERM');
  await once(server, 'exit');
  await db.raw('TRUNCATE jobs, batches'); // the batch jobs are not part of the next phase

  // Long-poll: jobs that take 100 ms, each with a waiter; how long after finished_at (the
  // completing statement's time in Postgres) does the waiter have its answer?
  const slow = await startServer(databaseUrl, '100');
  const WAITERS = 500;
  const ids: string[] = [];
  for (let i = 0; i < WAITERS; i += 100) {
    const transactions = Array.from({ length: 100 }, (_, k) => ({
      date: '2026-04-03',
      description: `SPOTIFY ${i + k}`,
      amount: 1,
    }));
    const res = await fetch(`${slow.base}/normalize_merchant/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...AUTH },
      body: JSON.stringify({ transactions }),
    });
    ids.push(...((await res.json()) as { job_ids: string[] }).job_ids);
  }
  const answerLags: number[] = [];
  let answeredBeforeWaiting = 0;
  await Promise.all(
    ids.map(async (id) => {
      const askedAt = Date.now();
      const res = await fetch(`${slow.base}/jobs/${id}?wait=60`, { headers: AUTH });
      const answeredAt = Date.now();
      const job = (await res.json()) as { status: string; finished_at: string | null };
      if (job.status !== 'succeeded' || !job.finished_at) throw new Error(`job ${id} unfinished`);
      const finishedAt = Date.parse(job.finished_at);
      // A job that finished before its waiter asked says nothing about wake-up latency.
      if (finishedAt < askedAt) answeredBeforeWaiting += 1;
      else answerLags.push(answeredAt - finishedAt);
    }),
  );
  answerLags.sort((a, b) => a - b);
  slow.server.kill('SIGTERM');
  await once(slow.server, 'exit');

  await db.destroy();
  await stopEmbedded();
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });

  const result = {
    jobs: JOBS,
    clients: CLIENTS,
    runner_concurrency: Number(CONCURRENCY),
    submit_req_per_s: round(JOBS / submitSeconds),
    submit_p50_ms: round(percentile(latencies, 50), 2),
    submit_p99_ms: round(percentile(latencies, 99), 2),
    drain_jobs_per_s: round(JOBS / Number(t.drain_s)),
    pickup_p50_ms: round(Number(t.pickup_p50), 2),
    pickup_p99_ms: round(Number(t.pickup_p99), 2),
    succeeded: Number(t.succeeded),
    rss_idle_mb: rssIdle,
    rss_after_mb: rssLoaded,
    batch_submit_jobs_per_s: round(batchJobsPerS),
    longpoll_answer_p50_ms: round(percentile(answerLags, 50), 1),
    longpoll_answer_p99_ms: round(percentile(answerLags, 99), 1),
    longpoll_waiters_measured: answerLags.length,
    longpoll_answered_before_waiting: answeredBeforeWaiting,
    node: process.version,
    cpus: os.cpus().length,
  };
  console.log('\n| metric | value |\n|---|---|');
  for (const [k, v] of Object.entries(result)) console.log(`| ${k} | ${v} |`);
  console.log(`\n${JSON.stringify(result)}`);
}

const servers: ChildProcess[] = [];
/** The bench client's Authorization header, set once its key exists. */
const AUTH: Record<string, string> = {};

/** The real server as `npm start` runs it, on `databaseUrl`, with the given heuristic delay. */
async function startServer(databaseUrl: string, delay: string) {
  const port = await freePort();
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HEURISTIC_DELAY_MS: delay,
      RUNNER_CONCURRENCY: CONCURRENCY,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  servers.push(server);
  const base = `http://127.0.0.1:${port}`;
  for (let ready = false; !ready;) {
    ready = await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
  return { server, base };
}

main().catch((err: unknown) => {
  console.error(err);
  // Do not leave servers behind (they would hold this process's stdout open).
  for (const server of servers) server.kill('SIGKILL');
  process.exit(1);
});
