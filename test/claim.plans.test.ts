import { expect } from 'chai';
import type { Knex } from 'knex';
import { claimJobs, claimStatement } from '../src/db/sql/claims.js';
import { clientId, freshDatabase, insertJobs } from './support/db.js';
import { type PlanNode, explainPrepared, planNodes, readsJobs, rowsRead } from './support/plans.js';

/**
 * The claim's plan must not depend on the statistics of `status`: the queue swings from empty to
 * thousands pending and back faster than ANALYZE follows, and each plan below made every claim
 * read every pending or every finished job (docs/performance-log.md, "The claim's plans").
 */

const N = 4000;
const LIMIT = 16;

/** The plan of one claim of LIMIT jobs, as the service prepares it; its nodes that read `jobs`. */
async function claimPlan(db: Knex, planCacheMode: 'force_custom_plan' | 'force_generic_plan') {
  const stmt = claimStatement({ workerId: 'w', limit: LIMIT, leaseMs: 30_000 });
  const plan = await explainPrepared(db, stmt.sql, stmt.bindings, planCacheMode);
  return { claimed: plan['Actual Rows'], jobs: [...planNodes(plan)].filter(readsJobs) };
}

/** Each node reading `jobs` goes through an index, and reads at most `most` rows. */
function expectIndexReadsAtMost(jobs: readonly PlanNode[], most: number) {
  for (const node of jobs) {
    const what = `${node['Node Type']} ${node['Index Name'] ?? ''}`;
    expect(node['Node Type'], what).not.to.equal('Seq Scan');
    expect(rowsRead(node), what).to.be.at.most(most);
  }
}

describe("the claim's plans (src/db/sql/claims.ts)", function () {
  this.timeout(60_000);
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase(1); // one connection: the transaction and PREPARE stay on it
    // Autovacuum must not refresh the statistics each case sets up.
    await db.raw('ALTER TABLE jobs SET (autovacuum_enabled = false)');
    await clientId(db, 'idle'); // a client with nothing pending: its probe must be cheap too
  });
  afterEach(async () => {
    await db.destroy();
  });

  const cases = {
    // Statistics taken on a queue of finished jobs, then a burst of submits: pending looks rare,
    // and an index over all pending jobs looked as good as the claim's own.
    'statistics taken before a burst of submits': async () => {
      await insertJobs(db, 'busy', N, { status: 'succeeded' });
      await db.raw('ANALYZE jobs');
      await insertJobs(db, 'busy', N);
    },
    // Statistics taken in the middle of a burst, the burst since finished: pending looks common,
    // and the probe for due work became a sequential scan through the finished jobs.
    'statistics taken during a burst, the queue drained since': async () => {
      await insertJobs(db, 'busy', N);
      await db.raw('ANALYZE jobs');
      await db.raw(`UPDATE jobs SET status = 'succeeded', finished_at = now()`);
      await insertJobs(db, 'busy', LIMIT * 4);
    },
  };

  for (const [name, setUp] of Object.entries(cases)) {
    for (const mode of ['force_custom_plan', 'force_generic_plan'] as const) {
      it(`${name}: claims ${LIMIT} reading only about that many jobs (${mode})`, async () => {
        await setUp();
        const { claimed, jobs } = await claimPlan(db, mode);
        expect(claimed, 'jobs claimed').to.equal(LIMIT);
        // A few windows' worth (candidates are 4x the limit), nowhere near the N pending or the
        // N finished jobs.
        expectIndexReadsAtMost(jobs, LIMIT * 16);
      });
    }
  }

  // Planning the claim cost more than running it (1-4 ms of Postgres's time against 0.5-1.5 ms, on
  // every claim, when its LIMITs were values the planner saw): the plan cache keeps a generic plan
  // only when it looks no dearer than the plans made for each call's values. The claim hides its
  // limits from the planner, so both are the same plan, tested in both modes above.
  it('is planned for the first five claims on a connection, then no more', async () => {
    await insertJobs(db, 'done', N, { status: 'succeeded' });
    await db.raw('ANALYZE jobs');
    await insertJobs(db, 'busy', 10 * LIMIT);
    for (let i = 0; i < 10; i++) {
      // The limits of a slow job's claims: one slot, or several.
      const limit = i % 2 === 0 ? 1 : LIMIT;
      expect(await claimJobs(db, { workerId: 'w', limit, leaseMs: 30_000 })).to.have.length(limit);
    }
    const { rows } = await db.raw<{ rows: { custom_plans: string; generic_plans: string }[] }>(
      `SELECT custom_plans, generic_plans FROM pg_prepared_statements
       WHERE name = 'merchant_claim_jobs'`,
    );
    expect(rows, 'the prepared claim').to.have.length(1);
    expect(Number(rows[0]?.custom_plans), 'claims planned for their own values').to.equal(5);
    expect(Number(rows[0]?.generic_plans), 'claims run on the generic plan').to.equal(5);
  });
});

describe('a claim among many clients (src/db/sql/claims.ts)', function () {
  this.timeout(60_000);
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase(1);
    await db.raw('ALTER TABLE jobs SET (autovacuum_enabled = false)');
  });
  afterEach(async () => {
    await db.destroy();
  });

  const CLIENTS = 50;

  /** 20 due jobs for each of CLIENTS clients, after statistics that saw only finished jobs. */
  async function manyClients() {
    await insertJobs(db, 'done', N, { status: 'succeeded' });
    await db.raw('ANALYZE jobs');
    for (let c = 0; c < CLIENTS; c++) await insertJobs(db, `client-${c}`, 20);
  }

  for (const mode of ['force_custom_plan', 'force_generic_plan'] as const) {
    it(`takes ${LIMIT} jobs from ${CLIENTS} clients reading about the window, not ${LIMIT} per client (${mode})`, async () => {
      await manyClients();
      const { claimed, jobs } = await claimPlan(db, mode);
      expect(claimed, 'jobs claimed').to.equal(LIMIT);
      // One probe per client for due work, and the window (4x the limit) of candidates shared
      // among them: 114, where a candidate list of LIMIT per client read 800.
      expectIndexReadsAtMost(jobs, LIMIT * 4 + CLIENTS);
    });
  }

  it('takes one job from each of the first clients in turn, as many as asked', async () => {
    await manyClients();
    const jobs = await claimJobs(db, { workerId: 'w', limit: LIMIT, leaseMs: 30_000 });
    expect(new Set(jobs.map((j) => j.client_id)).size).to.equal(LIMIT);
  });

  // Each client offers only its share of the window: that share must still fill the claim when
  // the other clients have a single job each (7 + 8 of a share of 64 / 8 would be 15).
  it('fills the claim when all clients but one have a single job due', async () => {
    for (let c = 0; c < 7; c++) await insertJobs(db, `single-${c}`, 1);
    await insertJobs(db, 'backlog', 100);
    const jobs = await claimJobs(db, { workerId: 'w', limit: LIMIT, leaseMs: 30_000 });
    expect(jobs).to.have.length(LIMIT);
    const backlog = await clientId(db, 'backlog');
    expect(jobs.filter((j) => j.client_id === backlog)).to.have.length(LIMIT - 7);
  });
});

describe('the order a claim returns its jobs in (src/db/sql/claims.ts)', () => {
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase();
  });
  afterEach(async () => {
    await db.destroy();
  });

  // The runner starts what it fetched ahead in the order the claim returns it, so the order is
  // the fair share's: clients take turns, each client's jobs oldest first. The update finds its
  // rows by primary key, which returns them in table order (here all of one client's first).
  it('is turn order: the clients alternate, each in submission order', async () => {
    const first = await clientId(db, 'first');
    const second = await clientId(db, 'second');
    await insertJobs(db, 'first', 3);
    await insertJobs(db, 'second', 3);
    const jobs = await claimJobs(db, { workerId: 'w', limit: 6, leaseMs: 30_000 });
    const clients = jobs.map((j) => j.client_id);
    expect(clients).to.have.length(6);
    expect(new Set(clients).size).to.equal(2);
    clients.forEach((c, i) => expect(c, `job ${i}`).to.equal(clients[i % 2]));
    for (const owner of [first, second]) {
      const seqs = jobs.filter((j) => j.client_id === owner).map((j) => BigInt(j.seq));
      expect(seqs, owner).to.deep.equal([...seqs].sort((a, b) => (a < b ? -1 : 1)));
    }
  });
});
