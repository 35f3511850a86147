/**
 * Profiling aid for issue 13: the bench's single-submit phase (autocannon, 64 connections, the
 * same body) against the service spawned on DATABASE_URL, with the runner either running the
 * jobs it accepts (`BENCH_RUNNER=on`, as `npm run bench` does) or held (`held`: the heuristic
 * takes an hour, so the first 16 jobs fill the slots and nothing more is claimed), to tell the
 * HTTP path from the runner sharing its process; `bare` measures bench/bare-koa.ts the same way
 * (compare only runs interleaved with each other). When DATABASE_URL's database has
 * pg_stat_statements, prints the statements run during the load, per submit.
 *
 *   DATABASE_URL=… BENCH_RUNNER=held BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' \
 *     node --import tsx bench/profile-submit.ts
 *
 * The tables are truncated: never point it at a database you care about.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import autocannon from 'autocannon';
import { issueKey } from '../src/auth/keys.js';
import { createKnex } from '../src/db/knex.js';
import { freePort } from '../src/net.js';
import { cpuMs, postgresCpuMs, systemCpuMs } from './cpu.js';
import { benchScript, serviceCommand } from './service-build.js';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) throw new Error('DATABASE_URL is required');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const mode = process.env.BENCH_RUNNER ?? 'on';
if (!['on', 'held', 'apart', 'bare'].includes(mode)) {
  throw new Error('BENCH_RUNNER: on, held, apart or bare');
}
/** `apart`: the runner held in the process that answers, the jobs run by a second process. */
const apart = mode === 'apart';
const held = mode === 'held' || apart;
const bare = mode === 'bare';
const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
/** The postmaster of DATABASE_URL's server (optional): its CPU per submit is reported too. */
const pgPid = Number(process.env.BENCH_PG_PID ?? 0);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const db = createKnex(databaseUrl, 2);
// The service compiled, as the image runs it (service-build.ts); bare Koa through tsx.
const command = bare
  ? benchScript('bench/bare-koa.ts')
  : await serviceCommand(process.env.BENCH_SERVICE_DIR);
/** Servers spawned here: stopped however this script ends (an early failure included). */
const spawned: ChildProcess[] = [];
process.on('exit', () => {
  for (const p of spawned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});
const spawnServer = (port: number, heldRunner: boolean) => {
  const server = spawn(process.execPath, [...nodeArgs, ...command.args], {
    cwd: command.cwd,
    env: {
      ...process.env,
      PORT: String(port),
      LOG_LEVEL: 'warn',
      RUNNER_CONCURRENCY: '16',
      RESULT_CACHE_TTL_MS: '0',
      CLIENT_MAX_PENDING: '1000000',
      RUNNER_POLL_MS: '1000',
      HEURISTIC_DELAY_MS: heldRunner ? '600000' : '0',
      SHUTDOWN_GRACE_MS: '0',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  spawned.push(server);
  return server;
};
const port = await freePort();
const child = spawnServer(port, held);
const base = `http://127.0.0.1:${port}`;
const ready = (url: string) =>
  bare
    ? fetch(url, { method: 'HEAD' }).then(
        () => true,
        () => false,
      )
    : fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
const started = async (server: ChildProcess, url: string) => {
  while (!(await ready(url))) {
    if (server.exitCode !== null) throw new Error(`the service exited with ${server.exitCode}`);
    await sleep(100);
  }
};
await started(child, base);
/** With `apart`: the process that runs the jobs (it answers no request), once migrated. */
let worker: ChildProcess | undefined;
if (apart) {
  const workerPort = await freePort();
  worker = spawnServer(workerPort, false);
  await started(worker, `http://127.0.0.1:${workerPort}`);
}
await db.raw('TRUNCATE jobs, batches, results, flights, api_keys, clients CASCADE');
const { key } = await issueKey(db, 'bench');

const statements = await db
  .raw(`SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'`)
  .then((r: { rows: unknown[] }) => r.rows.length > 0);
const commits = async () =>
  Number(
    (
      await db.raw<{ rows: [{ n: string }] }>(
        'SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()',
      )
    ).rows[0].n,
  );
const cpu = () => ({
  server: cpuMs(child.pid ?? 0),
  worker: worker ? cpuMs(worker.pid ?? 0) : NaN,
  server_system: systemCpuMs(child.pid ?? 0),
  postgres: pgPid ? postgresCpuMs(pgPid) : NaN,
  client: process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000,
});

if (statements) await db.raw('SELECT pg_stat_statements_reset()');
const commitsBefore = await commits();
const cpuBefore = cpu();
const result = await autocannon({
  url: `${base}/normalize_merchant`,
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
  body: JSON.stringify({ date: '2026-04-03', description: 'OPENAI 5YLH7D', amount: 1 }),
  connections: 64,
  duration: seconds,
});
const submits = result.requests.total;
const cpuAfter = cpu();
const commitsDuring = (await commits()) - commitsBefore;
const backlog = apart
  ? Number(
      (
        await db.raw<{ rows: [{ n: string }] }>(
          `SELECT count(*) AS n FROM jobs WHERE status = 'pending'`,
        )
      ).rows[0].n,
    )
  : undefined;
const perSubmit = (k: 'server' | 'worker' | 'server_system' | 'postgres' | 'client') =>
  Math.round(((cpuAfter[k] - cpuBefore[k]) / submits) * 1000) / 1000;
const summary = {
  runner: mode,
  req_per_s: Math.round(result.requests.average),
  p50_ms: result.latency.p50,
  p99_ms: result.latency.p99,
  submits,
  non2xx: result.non2xx,
  errors: result.errors,
  commits_per_submit: Math.round((commitsDuring / submits) * 100) / 100,
  ...(apart && { pending_when_load_stopped: backlog }),
  cpu_ms_per_submit: {
    server: perSubmit('server'),
    ...(apart && { worker: perSubmit('worker') }),
    server_system: perSubmit('server_system'),
    postgres: perSubmit('postgres'),
    client: perSubmit('client'),
  },
};
console.log(JSON.stringify(summary));

if (statements) {
  const { rows } = await db.raw<{
    rows: { query: string; calls: string; total_ms: number; mean_ms: number }[];
  }>(
    `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls,
            total_exec_time AS total_ms, mean_exec_time AS mean_ms
     FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
     ORDER BY calls DESC LIMIT 25`,
  );
  for (const r of rows) {
    const perSubmit = (Number(r.calls) / submits).toFixed(3);
    console.log(
      `${perSubmit.padStart(7)} /submit ${String(r.calls).padStart(7)} calls ` +
        `${r.total_ms.toFixed(0).padStart(6)} ms total ${r.mean_ms.toFixed(3).padStart(7)} ms mean  ` +
        r.query.slice(0, 140),
    );
  }
}

for (const p of [child, worker]) {
  if (!p) continue;
  p.kill('SIGTERM');
  await once(p, 'exit');
}
if (bare) await db.raw('DROP TABLE IF EXISTS bench_bare');
await db.destroy();
