import { expect } from 'chai';
import type { Knex } from 'knex';
import { releaseStatement, renewStatement } from '../src/db/sql/claims.js';
import { completeStatement, failStatement } from '../src/db/sql/outcomes.js';
import type { Claim } from '../src/db/sql/rows.js';
import { freshDatabase, insertJobs } from './support/db.js';
import { type PlanNode, explainPrepared, planNodes, readsJobs, rowsRead } from './support/plans.js';

/**
 * The runner's fenced writes (complete, renew, fail, hand back) touch the jobs of its own claims
 * and must find them by primary key, whatever the statistics of `status` say. With statistics
 * taken while few jobs ran (the usual picture between bursts), a fence written as `status =
 * 'running' AND locked_by = ?` made every one of these statements read every running job
 * through `jobs_running_idx`: with 10,000 slow jobs in flight, each completion read 10,000 rows
 * and each heartbeat compared 10,000 claims with 10,000 rows (src/db/sql/claims.ts, `held`).
 */

const N = 4000;
const CLAIMS = 16;
const WORKER = 'w';

/**
 * A database of its own: one connection, so the transaction and the PREPARE stay on it, and
 * autovacuum off on `jobs`, so it does not refresh the statistics each case sets up.
 */
async function planDatabase(): Promise<Knex> {
  const db = await freshDatabase(1);
  await db.raw('ALTER TABLE jobs SET (autovacuum_enabled = false)');
  return db;
}

/** No node of the plan reads `jobs` sequentially or reads more than `max` of its rows. */
function expectOwnJobsOnly(nodes: readonly PlanNode[], max: number): void {
  for (const node of nodes.filter(readsJobs)) {
    const what = `${node['Node Type']} ${node['Index Name'] ?? ''}`;
    expect(node['Node Type'], what).not.to.equal('Seq Scan');
    expect(rowsRead(node), what).to.be.at.most(max);
  }
}

const statements = {
  complete: (claims: Claim[]) =>
    completeStatement({
      workerId: WORKER,
      items: claims.map((job) => ({ job, result: { merchant: null } })),
      cacheTtlMs: 0,
    }),
  renew: (claims: Claim[]) => renewStatement({ workerId: WORKER, claims, leaseMs: 30_000 }),
  'hand back': (claims: Claim[]) => releaseStatement({ workerId: WORKER, claims }),
  fail: (claims: Claim[]) =>
    failStatement({
      workerId: WORKER,
      claim: claims[0]!,
      error: { code: 'heuristic_error', message: 'boom', attempt: 1 },
      retry: true,
      retryDelayMs: 1000,
    }),
};

describe("the runner's fenced writes: plans (src/db/sql/claims.ts)", function () {
  this.timeout(60_000);
  let db: Knex;
  beforeEach(async () => {
    db = await planDatabase();
  });
  afterEach(async () => {
    await db.destroy();
  });

  /** N jobs, all running under WORKER's claims; `analyze` says when the statistics are taken. */
  async function runningJobs(analyze: 'before they were claimed' | 'while they run') {
    await insertJobs(db, 'busy', N, { status: 'succeeded' });
    if (analyze === 'before they were claimed') await db.raw('ANALYZE jobs');
    await db.raw(
      `UPDATE jobs SET status = 'running', result = NULL, finished_at = NULL, attempts = 1,
         locked_by = ?, locked_until = now() + interval '1 hour', started_at = now()`,
      [WORKER],
    );
    if (analyze === 'while they run') await db.raw('ANALYZE jobs');
    const res = await db.raw<{ rows: Claim[] }>(
      `SELECT id, attempts FROM jobs ORDER BY seq DESC LIMIT ?`,
      [CLAIMS],
    );
    return res.rows;
  }

  for (const analyze of ['before they were claimed', 'while they run'] as const) {
    for (const [name, statement] of Object.entries(statements)) {
      for (const mode of ['force_custom_plan', 'force_generic_plan'] as const) {
        it(`${name}, statistics taken ${analyze}: reads only its own jobs (${mode})`, async () => {
          const claims = await runningJobs(analyze);
          const { sql, bindings } = statement(claims);
          const plan = await explainPrepared(db, sql, bindings, mode);
          const nodes = [...planNodes(plan)];
          // It did its work: each claim's job written (the failure writes its one job).
          const written = nodes.find(
            (n) => n['Node Type'] === 'ModifyTable' && n['Relation Name'] === 'jobs',
          );
          expect(written?.['Actual Rows'], 'jobs written').to.equal(name === 'fail' ? 1 : CLAIMS);
          expectOwnJobsOnly(nodes, CLAIMS * 2);
        });
      }
    }
  }
});

/**
 * A drain claims a few hundred jobs at a time, and completes them in groups as large. Planned for
 * one such group (a custom plan, as the first executions of a prepared statement on each
 * connection are), with statistics that saw no job running (taken while the backlog waited: every
 * `locked_by` null), the fence `locked_by = ?` looked like one row: the completion read the whole
 * table and matched each row it kept against every item (a nested loop over the unnested input),
 * 20-47 ms for 271 jobs where the primary key took 4-9 ms; 21 of 448 completions of three 20,000-job
 * drains, a quarter of their time (docs/performance-log.md, "Completions planned for a table with no
 * running job").
 */
describe("the runner's fenced writes of a drain-sized group: plans (src/db/sql/claims.ts)", function () {
  this.timeout(60_000);
  const TABLE = 20_000;
  const GROUP = 300;
  let db: Knex;
  beforeEach(async () => {
    db = await planDatabase();
  });
  afterEach(async () => {
    await db.destroy();
  });

  for (const [name, statement] of Object.entries(statements).filter(([n]) => n !== 'fail')) {
    for (const mode of ['force_custom_plan', 'force_generic_plan'] as const) {
      it(`${name} of ${GROUP} jobs among ${TABLE}, statistics taken while none ran: reads only its own jobs (${mode})`, async () => {
        await insertJobs(db, 'busy', TABLE);
        await db.raw('ANALYZE jobs');
        const res = await db.raw<{ rows: Claim[] }>(
          `UPDATE jobs SET status = 'running', attempts = 1, locked_by = ?,
             locked_until = now() + interval '1 hour', started_at = now()
           WHERE id IN (SELECT id FROM jobs ORDER BY seq LIMIT ?)
           RETURNING id, attempts`,
          [WORKER, GROUP],
        );
        const { sql, bindings } = statement(res.rows);
        const plan = await explainPrepared(db, sql, bindings, mode);
        const nodes = [...planNodes(plan)];
        const written = nodes.find(
          (n) => n['Node Type'] === 'ModifyTable' && n['Relation Name'] === 'jobs',
        );
        expect(written?.['Actual Rows'], 'jobs written').to.equal(GROUP);
        expectOwnJobsOnly(nodes, GROUP * 2);
        // Nor is the group read once per job (a nested loop rescanning the claims): no node reads
        // more than a few times the group's rows.
        for (const node of nodes) {
          const what = `${node['Node Type']} ${node['Relation Name'] ?? ''} x${node['Actual Loops']}`;
          expect(rowsRead(node), what).to.be.at.most(GROUP * 3);
        }
      });
    }
  }
});

/**
 * A completion also finishes the jobs waiting on its jobs' cache keys (`followers`), found among
 * the pending jobs. With statistics that said pending jobs were rare, its generic plan read every
 * pending job through `jobs_pending_idx` and joined them with the completed keys: with 16,000
 * jobs waiting in a drain, 5.3 of a 5.9 ms completion of one job, also when none had a cache key
 * (the cache off).
 */
describe("the completion's plans, with other jobs waiting (src/db/sql/outcomes.ts)", function () {
  this.timeout(60_000);
  let db: Knex;
  beforeEach(async () => {
    db = await planDatabase();
  });
  afterEach(async () => {
    await db.destroy();
  });

  /**
   * N pending jobs and CLAIMS running under WORKER's claims; with `keyed`, every cache key is
   * shared by two pending jobs, and each running job has the key of one of them.
   */
  async function waitingAndRunning(
    analyze: 'before the burst' | 'during the burst',
    keyed: boolean,
  ): Promise<Claim[]> {
    await insertJobs(db, 'busy', N, { status: 'succeeded' });
    if (analyze === 'before the burst') await db.raw('ANALYZE jobs');
    await insertJobs(db, 'busy', N);
    if (keyed) {
      await db.raw(`UPDATE jobs SET cache_key = 'v1:' || (seq % ?) WHERE status = 'pending'`, [
        N / 2,
      ]);
    }
    const res = await db.raw<{ rows: Claim[] }>(
      `UPDATE jobs SET status = 'running', attempts = 1, locked_by = ?,
         locked_until = now() + interval '1 hour', started_at = now()
       WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' ORDER BY seq LIMIT ?)
       RETURNING id, attempts`,
      [WORKER, CLAIMS],
    );
    if (analyze === 'during the burst') await db.raw('ANALYZE jobs');
    return res.rows;
  }

  for (const analyze of ['before the burst', 'during the burst'] as const) {
    for (const keyed of [false, true]) {
      for (const mode of ['force_custom_plan', 'force_generic_plan'] as const) {
        const what = keyed ? 'each with a waiting follower' : 'no cache keys';
        it(`statistics taken ${analyze}, ${what}: reads only the jobs it finishes (${mode})`, async () => {
          const claims = await waitingAndRunning(analyze, keyed);
          const { sql, bindings } = statements.complete(claims);
          const plan = await explainPrepared(db, sql, bindings, mode);
          const nodes = [...planNodes(plan)];
          const written = nodes
            .filter((n) => n['Node Type'] === 'ModifyTable' && n['Relation Name'] === 'jobs')
            .map((n) => n['Actual Rows']);
          // The claimed jobs, then their followers (one per key), or none.
          expect(written, 'jobs written').to.deep.equal([CLAIMS, keyed ? CLAIMS : 0]);
          expectOwnJobsOnly(nodes, CLAIMS * 2);
        });
      }
    }
  }
});
