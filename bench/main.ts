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
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { issueKey } from '../src/auth/keys.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { createKnex, migrateLatest } from '../src/db/knex.js';
import { createLogger } from '../src/log.js';
import { BIG_OPS, benchBigTable } from './bigtable.js';
import { benchFiles } from './files.js';
import { OtherLoad } from './machine.js';
import { startRecorder } from './recorder.js';
import {
  CONCURRENCY,
  WARMUP_SECONDS,
  PICKUP_MS,
  SECONDS,
  SERVICE_DIR,
  bench,
  children,
  cpuPerRequest,
  percentiles,
  post,
  quantiles,
  ratio,
  reachable,
  reset,
  result,
  round,
  rssMb,
  say,
  sleep,
  spawnBareKoa,
  startService,
  submitBatches,
  unfinished,
  target,
  targets,
  tx,
  waitFinished,
  now,
} from './harness.js';
import { type PeerResult, bullmq, graphileWorker, pgBoss } from './peers.js';
import { servicePhases } from './phases.js';
import { bareRoundTrips, postThenWait, postWaiting } from './ttr.js';

const DRAIN_JOBS = Number(process.env.BENCH_DRAIN_JOBS ?? 20_000);
const PEER_JOBS = Number(process.env.BENCH_PEER_JOBS ?? 5000);
const CONNECTIONS = 64;
/**
 * The single-submit comparison runs this many rounds of the service and bare Koa, a load of
 * BENCH_SECONDS each, in alternating order (service first in odd rounds), and reports the
 * geometric mean of the rounds' ratios: on these shared cores the machine's speed drifts within
 * minutes (bare Koa alone moved 2,500-3,600 req/s between runs), and one service-then-bare pair
 * put all of a drift into the ratio. An even number, so each side goes first equally often: the
 * side measured second came out lower (round 2, bare Koa first, had the lowest ratio in 5 of 8
 * three-round runs), and three rounds put the service first twice.
 */
const SUBMIT_ROUNDS = Math.max(1, Number(process.env.BENCH_SUBMIT_ROUNDS ?? 4));

interface LoadRun {
  reqPerS: number;
  p50: number;
  p99: number;
  total: number;
  cpu: { server: number; postgres: number };
  /**
   * Of the jobs it accepted, those not yet finished when the load stopped (service only): work
   * deferred past the measured window, which a ratio taken over the window does not pay for.
   */
  backlog?: number;
}

/** One autocannon load of SECONDS against the server `pid`, with its CPU per request. */
async function measureLoad(
  pid: number,
  load: Parameters<typeof autocannon>[0],
  what: string,
): Promise<LoadRun> {
  let run!: Awaited<ReturnType<typeof autocannon>>;
  const cpu = await cpuPerRequest(pid, async () => {
    run = await autocannon({ ...load, duration: SECONDS });
    return run.requests.total;
  });
  if (run.non2xx > 0 || run.errors > 0) {
    throw new Error(`${what}: ${run.non2xx} non-2xx, ${run.errors} errors`);
  }
  return {
    reqPerS: round(run.requests.average),
    p50: run.latency.p50,
    p99: run.latency.p99,
    total: run.requests.total,
    cpu,
  };
}
const PICKUPS = 200;
/** Untimed pick-ups first: the service's first calls open its connections. */
const PICKUP_WARMUP = 20;
const TTR_JOBS = Number(process.env.BENCH_TTR_JOBS ?? 500);
const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6379);
/**
 * Comma-separated phases to run (submit,batch,drain,pickup,ttr,longpoll,util,calls,rss,cpu,slow10k,procs,files,peers); all by default.
 * `bigtable` (bench/bigtable.ts: 10 M + 1 M jobs, minutes and GBs) runs only when named here.
 */
const ONLY = process.env.BENCH_ONLY?.split(',').map((p) => p.trim());
const on = (phase: string) => !ONLY || ONLY.includes(phase);
/** The window of the busiest share other processes took of the machine. */
const OTHER_LOAD_WINDOW_S = 5;

/**
 * What the run has to undo, last first: its pool, the embedded Postgres and its data directory.
 * Run at the end, and also when the bench fails, so that a failed run (a server that does not
 * start, a phase that throws) leaves no `merchant-bench-*` directory behind.
 */
const cleanups: (() => Promise<void>)[] = [];
async function cleanUp(): Promise<void> {
  for (let undo = cleanups.pop(); undo; undo = cleanups.pop()) await undo();
}

async function main() {
  // How busy other processes kept the machine meanwhile: its figures are read in that light.
  const otherLoad = new OtherLoad(process.pid, OTHER_LOAD_WINDOW_S * 1000);
  otherLoad.start();
  let databaseUrl = process.env.BENCH_DATABASE_URL;
  if (!databaseUrl) {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-bench-'));
    cleanups.push(() => fs.rm(dataDir, { recursive: true, force: true }));
    const pg = await startEmbeddedPostgres({ dataDir, port: 0, log: createLogger('warn') });
    cleanups.push(() => pg.stop());
    bench.postmasterPid = pg.pid;
    databaseUrl = pg.url;
  }
  const db = createKnex(databaseUrl, 4);
  cleanups.push(() => db.destroy());
  if (SERVICE_DIR) {
    say(`service from ${SERVICE_DIR}`);
    await (await startService(databaseUrl, {})).stop(); // it migrates on start
  } else {
    await migrateLatest(db);
  }
  await db.raw('TRUNCATE jobs, batches, results, flights, api_keys, clients CASCADE');
  bench.auth = { authorization: `Bearer ${(await issueKey(db, 'bench')).key}` };
  say(`${os.cpus().length} cores, Node ${process.version}, RUNNER_CONCURRENCY=${CONCURRENCY}`);

  // 1. Single submit over HTTP (autocannon), next to a bare Koa handler doing one INSERT.
  const needNoop = ['submit', 'batch', 'drain', 'ttr'].some(on);
  const noop = needNoop ? await startService(databaseUrl, { HEURISTIC_DELAY_MS: '0' }) : undefined;
  if (noop) result.rss_idle_mb = await rssMb(noop.pid);
  if (noop && on('submit')) {
    otherLoad.phase('submit');
    const bare = await spawnBareKoa(databaseUrl);
    const serviceLoad = {
      url: `${noop.base}/normalize_merchant`,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bench.auth },
      body: JSON.stringify(tx('OPENAI 5YLH7D', 1)),
      connections: CONNECTIONS,
    };
    const bareLoad = {
      ...serviceLoad,
      url: `${bare.base}/`,
      headers: { 'content-type': 'application/json' },
    };
    // The two sides: how each is loaded, and how its table is emptied after a load.
    const sides = {
      service: {
        what: 'single submit',
        pid: noop.pid,
        load: serviceLoad,
        clear: async (jobs: number) => {
          await waitFinished(db, jobs, 'submitted jobs');
          await reset(db);
        },
      },
      bare: {
        what: 'bare Koa + one INSERT',
        pid: bare.pid,
        load: bareLoad,
        clear: async () => {
          await db.raw('TRUNCATE bench_bare');
        },
      },
    };
    type Side = keyof typeof sides;
    say(`single submit: ${WARMUP_SECONDS} s to warm up each server, untimed`);
    for (const side of Object.values(sides)) {
      await autocannon({ ...side.load, duration: WARMUP_SECONDS });
      await side.clear(0);
    }
    // A round's ratio counts the service's submits that were also run within the load: the
    // runner shares the process and the cores, and when it fell behind (once half of a round's
    // 35,000 submits were still pending when the load stopped), the submits it had not run yet
    // had been accepted without paying for their runs. `accepted` is the plain request ratio.
    const rounds: { service: LoadRun; bare: LoadRun; ratio: number; accepted: number }[] = [];
    for (let r = 1; r <= SUBMIT_ROUNDS; r++) {
      // Service first in odd rounds, bare Koa first in even ones (ABBA…), so that a steady
      // drift of the machine's speed does not favour the same side in every round.
      const order: Side[] = r % 2 === 1 ? ['service', 'bare'] : ['bare', 'service'];
      const runs = {} as Record<Side, LoadRun>;
      for (const name of order) {
        const side = sides[name];
        say(`${side.what}, round ${r}: ${CONNECTIONS} connections for ${SECONDS} s`);
        runs[name] = await measureLoad(side.pid, side.load, side.what);
        if (name === 'service') runs.service.backlog = await unfinished(db);
        await side.clear(runs[name].total);
      }
      const { service: s, bare: b } = runs;
      // At least a little, so that a round with nothing run still has a ratio (near 0).
      const ran = Math.max(0.001, 1 - (s.backlog ?? 0) / Math.max(1, s.total));
      rounds.push({
        ...runs,
        ratio: (s.reqPerS * ran) / b.reqPerS,
        accepted: s.reqPerS / b.reqPerS,
      });
    }
    await bare.stop();
    await db.raw('DROP TABLE IF EXISTS bench_bare');
    // The run's ratio: the geometric mean of the rounds' (each side first in half of them), with
    // every round's ratio printed; the round nearest to it gives the figures beside it.
    const runRatio = Math.exp(
      rounds.reduce((sum, r) => sum + Math.log(r.ratio), 0) / rounds.length,
    );
    const nearest = [...rounds].sort(
      (a, b) => Math.abs(Math.log(a.ratio / runRatio)) - Math.abs(Math.log(b.ratio / runRatio)),
    )[0]!;
    const { service, bare: baseline } = nearest;
    result.submit_req_per_s = service.reqPerS;
    result.submit_p50_ms = service.p50;
    result.submit_p99_ms = service.p99;
    result.submit_server_cpu_ms_per_req = service.cpu.server;
    result.submit_postgres_cpu_ms_per_req = service.cpu.postgres;
    result.bare_koa_insert_req_per_s = baseline.reqPerS;
    result.bare_koa_insert_p50_ms = baseline.p50;
    result.bare_koa_insert_p99_ms = baseline.p99;
    result.bare_koa_server_cpu_ms_per_req = baseline.cpu.server;
    result.bare_koa_postgres_cpu_ms_per_req = baseline.cpu.postgres;
    result.submit_ratio_rounds = rounds.map((r) => r.ratio.toFixed(2)).join(' / ');
    result.submit_accepted_ratio_rounds = rounds.map((r) => r.accepted.toFixed(2)).join(' / ');
    result.submit_backlog_rounds = rounds
      .map((r) => `${r.service.backlog} of ${r.service.total}`)
      .join(' / ');
    result.submit_ratio = round(runRatio, 2);
    target(
      'single submit vs bare Koa + one INSERT',
      result.submit_ratio,
      '≥ 0.8x',
      // On the unrounded ratio: 0.795 prints as 0.8 and is not met.
      () => runRatio >= 0.8,
      `submits accepted and run within the load, geometric mean of ${rounds.length} ` +
        `alternating rounds (${result.submit_ratio_rounds}; accepted only: ` +
        `${result.submit_accepted_ratio_rounds}; not yet run when the service's load stopped: ` +
        `${result.submit_backlog_rounds}); ` +
        `the nearest round: ${service.reqPerS} vs ${baseline.reqPerS} req/s; CPU ms per request, server ` +
        `${service.cpu.server} vs ${baseline.cpu.server}, Postgres ${service.cpu.postgres} vs ` +
        `${baseline.cpu.postgres}`,
    );
  }

  // 2. Batch submit.
  if (noop && on('batch')) {
    otherLoad.phase('batch');
    say('batch submit: 10 x 1000, 4 in flight');
    const t0 = performance.now();
    await submitBatches(noop.base, 10_000, (i) => `OPENAI ${i}`);
    result.batch_submit_jobs_per_s = round(10_000 / ((performance.now() - t0) / 1000));
    await waitFinished(db, 10_000, 'batch jobs');
    await reset(db);
  }

  // 3. End-to-end drain: DRAIN_JOBS no-op jobs, from the first submit to the last finish.
  if (noop && on('drain')) {
    otherLoad.phase('drain');
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

  // 4b. Time to result: POST, then GET ?wait on its id, one job at a time, measured here; then
  // the same as one POST with `Prefer: wait`, and the floor: bare Koa, POST then GET.
  if (noop && on('ttr')) {
    otherLoad.phase('ttr');
    say(`time to result: ${TTR_JOBS} sequential POST + GET ?wait, then POST with Prefer: wait`);
    const p = quantiles(await postThenWait(noop.base, TTR_JOBS));
    result.time_to_result_p50_ms = p.p50;
    result.time_to_result_p99_ms = p.p99;
    const one = quantiles(await postWaiting(noop.base, TTR_JOBS));
    result.time_to_result_prefer_wait_p50_ms = one.p50;
    result.time_to_result_prefer_wait_p99_ms = one.p99;
    await reset(db);
    say(`time to result floor: ${TTR_JOBS} sequential POST + GET to bare Koa`);
    const bare = await spawnBareKoa(databaseUrl);
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

  // 4. Pick-up on an idle queue: one job at a time, the row's creation to its claim
  // (`started_at`). A single submit to an idle process is stored already started (Runner.reserve),
  // so this reads 0 there: its time from the commit to the heuristic's call is not in the table,
  // and is part of the time to result (4b). Run once the no-op service has stopped: on the same
  // database its runner would claim this phase's jobs (startService).
  if (on('pickup')) {
    otherLoad.phase('pickup');
    say(`pick-up: ${PICKUPS} jobs, one at a time, after ${PICKUP_WARMUP} untimed`);
    // From the submit's sending to the heuristic's call arriving (bench/recorder.ts), as the
    // peers' pick-up runs from the enqueue call to the handler's start. The jobs' own
    // started_at - created_at read 0 here: an idle runner starts a job at its insert.
    const recorder = await startRecorder();
    const remote = await startService(databaseUrl, {
      HEURISTIC: 'http',
      HEURISTIC_URL: recorder.url,
      HEURISTIC_VERSION: 'bench',
    });
    const lags: number[] = [];
    for (let i = 0; i < PICKUP_WARMUP + PICKUPS; i++) {
      const description = `PICKUP ${i}`;
      const sent = now();
      const job = (await post(remote.base, '/normalize_merchant', tx(description, i))) as {
        id: string;
      };
      const lag = (await recorder.arrival(description)) - sent;
      if (i >= PICKUP_WARMUP) lags.push(lag);
      // Finished before the next is sent, so that each finds the queue idle.
      await fetch(`${remote.base}/jobs/${job.id}?wait=10`, { headers: bench.auth }).then((r) =>
        r.json(),
      );
      await sleep(5);
    }
    await remote.stop();
    await recorder.close();
    const idle = quantiles(lags);
    result.pickup_p50_ms = idle.p50;
    result.pickup_p99_ms = idle.p99;
    await reset(db);
  }

  // 5-11. The phases with their own services (bench/phases.ts).
  for (const [phase, run] of servicePhases) {
    if (!on(phase)) continue;
    otherLoad.phase(phase);
    await run(db, databaseUrl);
  }

  // File batches, both ways (bench/files.ts).
  if (on('files')) {
    otherLoad.phase('files');
    Object.assign(result, await benchFiles(databaseUrl));
  }

  // The big table (bench/bigtable.ts), opt-in.
  if (ONLY?.includes('bigtable')) {
    otherLoad.phase('bigtable');
    Object.assign(result, await benchBigTable(databaseUrl));
    for (const op of BIG_OPS) {
      target(
        `big table: ${op} p99 vs empty table`,
        result[`big_${op}_p99_ratio`],
        '≤ 2x',
        // On the unrounded ratio, as the other ratios.
        () => Number(result[`big_${op}_p99_ms`]) <= 2 * Number(result[`big_empty_${op}_p99_ms`]),
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
    otherLoad.phase('peers');
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
        () => Number(result.drain_jobs_per_s) >= Number(result.graphile_worker_drain_jobs_per_s),
        `${result.drain_jobs_per_s} vs ${result.graphile_worker_drain_jobs_per_s} jobs/s`,
      );
    }
  }

  await cleanUp();

  const { phases, ...machine } = otherLoad.stop();
  for (const [k, v] of Object.entries(machine)) result[`machine_${k}`] = v;
  for (const [k, v] of Object.entries(phases)) result[`machine_other_cpu_pct_${k}`] = v;
  result.cores = os.cpus().length;
  result.node = process.version;
  console.log('\n| metric | value |\n|---|---|');
  for (const [k, v] of Object.entries(result)) console.log(`| ${k} | ${v} |`);
  console.log('\n| target | measured | wanted | met | detail |\n|---|---|---|---|---|');
  for (const t of targets) {
    console.log(`| ${t.what} | ${t.value} | ${t.wanted} | ${t.met ? 'yes' : 'NO'} | ${t.detail} |`);
  }
  console.log(
    `\nOther processes used ${machine.other_cpu_pct} % of the machine's CPU during the run ` +
      `(${machine.other_cpu_max_pct} % in its busiest ${OTHER_LOAD_WINDOW_S} s); ` +
      `the hypervisor took ${machine.steal_pct} %. By phase: ` +
      Object.entries(phases)
        .map(([phase, pct]) => `${phase} ${pct} %`)
        .join(', '),
  );
  console.log(`\n${JSON.stringify({ ...result, targets })}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    console.error(`bench: failed; measured so far: ${JSON.stringify({ ...result, targets })}`);
    // Do not leave servers behind (they would hold this process's stdout open).
    for (const child of children) child.kill('SIGKILL');
    cleanUp().then(
      () => process.exit(1),
      (cleanupErr: unknown) => {
        console.error('bench: cleaning up after the failure failed too:', cleanupErr);
        process.exit(1);
      },
    );
  },
);
