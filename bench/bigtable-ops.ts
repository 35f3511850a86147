/**
 * The operations bench/bigtable.ts measures, and how: the service spawned with its runner held
 * up, one submit, one GET, one claim (timed here, then handed back), and the plans of the
 * statements behind them (auto_explain: EXPLAIN ANALYZE, BUFFERS of the service's own calls).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Knex } from 'knex';
import knexFactory from 'knex';
import type pg from 'pg';
import { knexConfig } from '../src/db/knex.js';
import { claimJobs, releaseClaims } from '../src/db/sql/claims.js';
import { countPending, countPendingBefore, getJob } from '../src/db/sql/jobs.js';
import { aheadThatMatters } from '../src/jobs/eta.js';
import { AttemptStats } from '../src/runner/stats.js';
import { freePort } from '../src/net.js';
import { type Layout, jobId } from './bigtable-load.js';
import { serviceCommand } from './service-build.js';

export const CLIENTS = 50;
export const DAY = 86_400_000;
export const WORKER = 'bench-bigtable';
export const BIG_OPS = ['submit', 'get_finished', 'get_new', 'claim_1', 'claim_16'] as const;
export type Op = (typeof BIG_OPS)[number];
export type Samples = Record<Op, number[]>;

export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;
export const say = (line: string) => console.log(`bench: bigtable: ${line}`);
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? NaN);
}

/** A small seeded generator (mulberry32): the same "random" jobs in every run. */
export function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Ctx {
  base: string;
  db: Knex;
  keys: string[];
  layout: Layout;
  rand: () => number;
}

/** The service, runner held up; nothing purged (retention 10 years), result cache off. */
export async function startService(
  databaseUrl: string,
  maxPending: number,
): Promise<{ base: string; child: ChildProcess }> {
  const port = await freePort();
  const { args, cwd } = await serviceCommand();
  const child = spawn(process.execPath, args, {
    cwd,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      LOG_LEVEL: 'warn',
      HEURISTIC_DELAY_MS: '600000',
      RUNNER_CONCURRENCY: '1',
      RESULT_CACHE_TTL_MS: '0',
      // Above the loaded backlog, or every submit would be refused (503).
      MAX_PENDING_JOBS: String(maxPending),
      JOB_RETENTION_DAYS: '3650',
      PURGE_INTERVAL_MS: String(DAY),
      SHUTDOWN_GRACE_MS: '0',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  while (
    !(await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}`);
    await sleep(100);
  }
  return { base, child };
}

export async function stopService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export async function submit(ctx: Ctx, i: number): Promise<string> {
  const res = await fetch(`${ctx.base}/normalize_merchant`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ctx.keys[0]}` },
    body: JSON.stringify({
      date: '2026-04-03',
      description: `NETFLIX.COM BIG ${i}`,
      amount: 15.49,
    }),
  });
  const body = (await res.json()) as { id: string };
  if (res.status !== 202) throw new Error(`submit: ${res.status} ${JSON.stringify(body)}`);
  return body.id;
}

export async function read(ctx: Ctx, id: string, client: number): Promise<void> {
  const res = await fetch(`${ctx.base}/jobs/${id}`, {
    headers: { authorization: `Bearer ${ctx.keys[client]}` },
  });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`GET /jobs/${id}: ${res.status}`);
}

/** A finished job outside the oldest tenth (never purged here): its id and client. */
export function someFinished(ctx: Ctx): [string, number] {
  const { finished } = ctx.layout;
  const n = Math.floor(finished / 10 + ctx.rand() * (finished - finished / 10));
  return [jobId(ctx.layout, 'f', n), n % CLIENTS];
}

export async function claimOnce(db: Knex, limit: number): Promise<number> {
  const t0 = performance.now();
  const claimed = await claimJobs(db, { workerId: WORKER, limit, leaseMs: 60_000 });
  const ms = performance.now() - t0;
  if (claimed.length === 0) throw new Error('claim: nothing pending was claimed');
  const claims = claimed.map((j) => ({ id: j.id, attempts: j.attempts }));
  await releaseClaims(db, { workerId: WORKER, claims });
  return ms;
}

/**
 * Prints the plans (EXPLAIN ANALYZE, BUFFERS, via auto_explain) of the statements behind the
 * latencies, run by the service's own functions against the big table. The sixth run of each:
 * the service's statements are prepared, and Postgres may plan them generically from then on.
 */
export async function explain(
  databaseUrl: string,
  ctx: Ctx,
  opts: { newId: string; maxPending: number },
): Promise<void> {
  let last = '';
  const config = knexConfig(databaseUrl, 1);
  const db = knexFactory({
    ...config,
    pool: {
      min: 1,
      max: 1,
      afterCreate: (conn: pg.Client, done: (err: Error | null, c: pg.Client) => void) => {
        conn.on('notice', (msg) => (last = msg.message ?? ''));
        done(null, conn);
      },
    },
  });
  try {
    await db.raw(`LOAD 'auto_explain'`);
    for (const set of [
      'auto_explain.log_min_duration = 0',
      'auto_explain.log_analyze = on',
      'auto_explain.log_buffers = on',
      'auto_explain.log_level = notice',
      'client_min_messages = notice',
    ]) {
      await db.raw(`SET ${set}`);
    }
    const [fid, client] = someFinished(ctx);
    const owner = (
      await db.raw<{ rows: [{ id: string }] }>(`SELECT id FROM clients WHERE name = ?`, [
        `big-${String(client).padStart(2, '0')}`,
      ])
    ).rows[0].id;
    const seq = (
      await db.raw<{ rows: [{ seq: string }] }>(`SELECT seq FROM jobs WHERE id = ?`, [opts.newId])
    ).rows[0].seq;
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['GET /jobs/{id}: getJob', () => getJob(db, fid, owner)],
      [
        'GET of a pending job, Retry-After: countPendingBefore',
        // As the services here count: one slot, no attempt finished (the mean assumed until one has).
        () => countPendingBefore(db, seq, aheadThatMatters(1, new AttemptStats().meanMs)),
      ],
      [
        'submit admission: countPending (global cap)',
        () => countPending(db, { cap: opts.maxPending + 1 }),
      ],
      ['claim: claimJobs limit 1', () => claimOnce(db, 1)],
      ['claim: claimJobs limit 16', () => claimOnce(db, 16)],
    ];
    for (const [what, run] of cases) {
      for (let i = 0; i < 6; i++) {
        last = '';
        await run();
      }
      // releaseClaims' plan comes after the claim's: run the claim alone for its plan.
      if (what.startsWith('claim')) {
        last = '';
        const limit = what.endsWith('16') ? 16 : 1;
        const claimed = await claimJobs(db, { workerId: WORKER, limit, leaseMs: 60_000 });
        const plan = last;
        await releaseClaims(db, { workerId: WORKER, claims: claimed });
        last = plan;
      }
      say(`plan of ${what}:\n${last}`);
    }
  } finally {
    await db.destroy();
  }
}
