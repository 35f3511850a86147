/**
 * Statistics that call a filled table empty or small (src/db/sql/statistics.ts): after VACUUM or
 * ANALYZE of an empty (or nearly empty) `jobs`, a prepared statement run a few times caches a
 * generic plan for a table that size, which scans it whole once it has filled. In `npm run bench` (tables emptied between
 * rounds) a claim among 35,000 jobs took 400 ms and the runner fell behind by half the burst.
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import { claimStatement } from '../src/db/sql/claims.js';
import { refreshOutgrownStatistics } from '../src/db/sql/statistics.js';
import pg from 'pg';
import { clientId, databaseUrl, eventually, freshDatabase, insertJobs } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';
import { explainAfterRuns, planNodes, readsJobs, rowsRead } from './support/plans.js';

const LIMIT = 16;
const N = 4000;

/** What pg_class says of `jobs`: the rows and pages the planner starts from. */
async function planned(db: Knex): Promise<{ reltuples: number; relpages: number }> {
  const res = await db.raw<{ rows: { reltuples: number; relpages: number }[] }>(
    `SELECT reltuples, relpages FROM pg_class WHERE oid = 'jobs'::regclass`,
  );
  return res.rows[0]!;
}

describe('planner statistics that describe a filled table as empty or small (src/db/sql/statistics.ts)', function () {
  this.timeout(60_000);

  describe('refreshOutgrownStatistics', () => {
    let db: Knex;
    beforeEach(async () => {
      db = await freshDatabase(1); // one connection: the PREPARE stays on it
      // Autovacuum must not refresh the statistics itself meanwhile.
      await db.raw('ALTER TABLE jobs SET (autovacuum_enabled = false)');
      await clientId(db, 'busy');
    });
    afterEach(async () => {
      await db.destroy();
    });

    // Statistics taken on an empty table say it is empty (reltuples 0) whatever its size; taken
    // on a few rows, they describe a one-page table. Either way the cached generic plan read the
    // whole table once it had filled.
    for (const [taken, rows] of [
      ['on the empty table', 0],
      ['on 20 jobs', 20],
    ] as const) {
      it(`a claim planned with statistics taken ${taken} reads only about the jobs it claims once the table has filled`, async () => {
        await insertJobs(db, 'busy', rows);
        await db.raw('ANALYZE jobs');
        expect((await planned(db)).reltuples).to.equal(rows);
        const stmt = claimStatement({ workerId: 'w', limit: LIMIT, leaseMs: 30_000 });
        // Six claims (the plan cache may keep a generic plan after five), a burst of submits,
        // the check a reaper pass makes, then the next claim.
        let analyzed: string[] = [];
        const plan = await explainAfterRuns(db, stmt.sql, stmt.bindings, 6, async () => {
          await insertJobs(db, 'busy', N);
          // The live-row count follows the insert within about a second.
          await eventually(async () => (analyzed = await refreshOutgrownStatistics(db)).length > 0);
        });
        expect(analyzed).to.deep.equal(['jobs']);
        expect((await planned(db)).reltuples).to.be.above(N / 2);
        expect(plan['Actual Rows'], 'jobs claimed').to.equal(LIMIT);
        for (const node of [...planNodes(plan)].filter(readsJobs)) {
          const what = `${node['Node Type']} ${node['Index Name'] ?? ''}`;
          expect(node['Node Type'], what).not.to.equal('Seq Scan');
          expect(rowsRead(node), what).to.be.at.most(LIMIT * 16);
        }
      });
    }

    it('analyzes a table grown tenfold past its statistics, and leaves alone one grown less or still small', async function () {
      // pg_stat_force_next_flush() is PostgreSQL 15's.
      const version = await db.raw<{ rows: { v: number }[] }>(
        `SELECT current_setting('server_version_num')::int AS v`,
      );
      if (version.rows[0]!.v < 150000) this.skip();
      // This connection's counts reach the shared statistics when it next goes idle: made to at
      // once, so that each check sees the writes before it.
      const flush = async () => {
        await db.raw('SELECT pg_stat_force_next_flush()');
        await db.raw('SELECT 1');
      };
      // Never analyzed (reltuples -1), 4,000 rows: analyzed, as autovacuum would soon.
      await insertJobs(db, 'busy', N);
      await flush();
      expect(await refreshOutgrownStatistics(db)).to.deep.equal(['jobs']);
      // Analyzed with its rows, then doubled: left to autovacuum.
      expect(await refreshOutgrownStatistics(db)).to.deep.equal([]);
      await insertJobs(db, 'busy', N);
      await flush();
      expect(await refreshOutgrownStatistics(db)).to.deep.equal([]);
      // Analyzed empty, then a few rows: a scan of them is cheap.
      await db.raw('DELETE FROM jobs');
      await flush();
      await db.raw('ANALYZE jobs');
      await insertJobs(db, 'busy', 5);
      await flush();
      expect(await refreshOutgrownStatistics(db)).to.deep.equal([]);
      // The same, past the bound: analyzed.
      await insertJobs(db, 'busy', 995);
      await flush();
      expect(await refreshOutgrownStatistics(db)).to.deep.equal(['jobs']);
      expect((await planned(db)).reltuples).to.be.above(500);
    });

    it('says nothing was analyzed when ANALYZE skipped the table (another session holds it)', async () => {
      await db.raw('ANALYZE jobs'); // empty
      await insertJobs(db, 'busy', N);
      const other = new pg.Client({ connectionString: databaseUrl(db) });
      await other.connect();
      try {
        // What VACUUM or another ANALYZE takes: ANALYZE (SKIP_LOCKED) then only warns.
        await other.query('BEGIN');
        await other.query('LOCK TABLE jobs IN SHARE UPDATE EXCLUSIVE MODE');
        await eventually(async () => {
          const res = await db.raw<{ rows: { n: string }[] }>(
            `SELECT n_live_tup AS n FROM pg_stat_user_tables WHERE relname = 'jobs'`,
          );
          return Number(res.rows[0]?.n) >= N;
        });
        expect(await refreshOutgrownStatistics(db)).to.deep.equal([]);
        expect((await planned(db)).reltuples).to.equal(0);
        await other.query('COMMIT');
        expect(await refreshOutgrownStatistics(db)).to.deep.equal(['jobs']);
      } finally {
        await other.end();
      }
    });

    it('leaves out the payload columns (transaction, result, error): nothing filters on them (migration 0014)', async () => {
      await insertJobs(db, 'busy', N, { status: 'succeeded' });
      await db.raw(`UPDATE jobs SET error = '{"code": "x"}' WHERE seq % 2 = 0`);
      await db.raw('ANALYZE jobs');
      const res = await db.raw<{ rows: { attname: string }[] }>(
        `SELECT attname FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'jobs'`,
      );
      const analyzed = res.rows.map((r) => r.attname);
      expect(analyzed).to.include.members(['status', 'client_id', 'finished_at', 'seq']);
      const payload = ['transaction', 'result', 'error'];
      expect(analyzed.filter((c) => payload.includes(c))).to.deep.equal([]);
    });
  });

  describe('the reaper pass', () => {
    let h: Harness;
    afterEach(async () => {
      await h.stop();
    });

    it('analyzes jobs once it has outgrown statistics that say empty, within a poll', async () => {
      h = await startHarness({
        heuristic: new TestHeuristic(echoAfter(0)),
        runner: { pollMs: 50 },
      });
      await h.db.raw('ALTER TABLE jobs SET (autovacuum_enabled = false)');
      await h.db.raw('ANALYZE jobs');
      expect(await planned(h.db)).to.deep.equal({ reltuples: 0, relpages: 0 });
      // Finished jobs: the table fills, and nothing is left for the runner to claim.
      await insertJobs(h.db, 'busy', N, { status: 'succeeded' });
      await eventually(
        async () => (await planned(h.db)).reltuples > N / 2,
        10_000,
        'jobs analyzed by a reaper pass',
      );
    });
  });
});
