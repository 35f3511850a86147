/**
 * Profiling aid: drains of BENCH_DRAIN_JOBS no-op jobs, the same requests as `npm run bench`'s
 * drain phase (batches of 1,000, four in flight), each from the first submit to the last finish.
 *
 * With BENCH_BASE (and BENCH_KEY) it drives that already running server once. Otherwise it
 * spawns the service on DATABASE_URL (from BENCH_SERVICE_DIR when set, with BENCH_NODE_ARGS,
 * e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` or `--trace-gc`), runs BENCH_ROUNDS drains (3) on
 * emptied tables and prints, per round, jobs/s and the CPU time per job of the server and, given
 * BENCH_PG_PID (the postmaster of DATABASE_URL's server), of Postgres: figures that move less
 * with the machine's load than throughput does. BENCH_SUBMIT_ONLY=1 stops each round once the
 * batches are accepted (with a held runner, `HEURISTIC_DELAY_MS=600000`, that times the submit
 * path alone).
 *
 * With BENCH_PEER=graphile-worker it measures the bench's peer instead, the same way: each round
 * drains N jobs with graphile-worker in batch mode (as `npm run bench` runs it, in this process)
 * and prints jobs/s and this process's and Postgres's CPU per job, so the two drains can be
 * compared by what each job costs, not only by rate.
 *
 *   DATABASE_URL=… BENCH_PG_PID=… node --import tsx bench/profile-drain.ts
 */
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { createKnex } from '../src/db/knex.js';
import { cpuMs, postgresCpuMs } from './cpu.js';
import { bench, startService, submitBatches, waitFinished } from './harness.js';
import { graphileWorker } from './peers.js';

const n = Number(process.env.BENCH_DRAIN_JOBS ?? 20_000);
const submitOnly = Boolean(process.env.BENCH_SUBMIT_ONLY);

/**
 * One drain against `base`, as the bench's drain phase submits and waits for it: seconds to
 * accept the batches and to finish every job.
 */
async function drain(base: string, db: Knex) {
  const t0 = performance.now();
  await submitBatches(base, n, (i) => `OPENAI ${i}`);
  const submitted = performance.now();
  if (!submitOnly) await waitFinished(db, n, 'drain');
  return { submit_s: (submitted - t0) / 1000, total_s: (performance.now() - t0) / 1000 };
}

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) throw new Error('DATABASE_URL is required');
const db = createKnex(databaseUrl, 2);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const pgPid = Number(process.env.BENCH_PG_PID ?? 0);
const perJob = (ms: number) => Math.round((ms * 1000) / n);

if (process.env.BENCH_PEER === 'graphile-worker') {
  try {
    for (let round = 0; round < rounds; round++) {
      // Its start (migrate, connect) and stop are inside the measure: a few ms of CPU.
      const node0 = cpuMs(process.pid);
      const pg0 = pgPid ? postgresCpuMs(pgPid) : NaN;
      const r = await graphileWorker({ databaseUrl, jobs: n, concurrency: 16, pickups: 0 });
      console.log(
        JSON.stringify({
          peer: 'graphile-worker',
          round,
          jobs: n,
          jobs_per_s: r.drain_jobs_per_s,
          node_cpu_us_per_job: perJob(cpuMs(process.pid) - node0),
          postgres_cpu_us_per_job: pgPid ? perJob(postgresCpuMs(pgPid) - pg0) : null,
        }),
      );
    }
  } finally {
    await db.destroy();
  }
} else if (process.env.BENCH_BASE) {
  bench.auth = { authorization: `Bearer ${process.env.BENCH_KEY ?? ''}` };
  const r = await drain(process.env.BENCH_BASE, db);
  console.log(JSON.stringify({ jobs: n, ...r, jobs_per_s: Math.round(n / r.total_s) }));
  await db.destroy();
} else {
  // The service as `npm run bench` starts it (its warnings and errors shown on stderr).
  const service = await startService(databaseUrl, {
    HEURISTIC_DELAY_MS: process.env.HEURISTIC_DELAY_MS ?? '0',
    SHUTDOWN_GRACE_MS: '0',
  });
  try {
    await db.raw('TRUNCATE jobs, batches, results, flights, job_events, api_keys, clients CASCADE');
    bench.auth = { authorization: `Bearer ${(await issueKey(db, 'bench')).key}` };
    for (let round = 0; round < rounds; round++) {
      await db.raw('TRUNCATE jobs, batches, job_events');
      const server0 = cpuMs(service.pid);
      const client0 = cpuMs(process.pid);
      const pg0 = pgPid ? postgresCpuMs(pgPid) : NaN;
      const r = await drain(service.base, db);
      console.log(
        JSON.stringify({
          round,
          jobs: n,
          ...r,
          jobs_per_s: Math.round(n / r.total_s),
          server_cpu_us_per_job: perJob(cpuMs(service.pid) - server0),
          // This process: the HTTP requests that submit the batches, and the wait for the end.
          client_cpu_us_per_job: perJob(cpuMs(process.pid) - client0),
          postgres_cpu_us_per_job: pgPid ? perJob(postgresCpuMs(pgPid) - pg0) : null,
        }),
      );
    }
  } finally {
    await db.destroy();
    await service.stop();
  }
}
