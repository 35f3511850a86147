import { expect } from 'chai';
import type { Knex } from 'knex';
import { claimJobs, renewLeases } from '../src/db/sql/claims.js';
import type { JobRow } from '../src/db/sql/rows.js';
import { claimOf } from '../src/runner/tracked.js';
import { backendsWaiting, eventually, freshDatabase, insertPending } from './support/db.js';

const WORKER = 'w';

/**
 * The heartbeat's renewal and the runner's other writes of the same jobs (grouped completions,
 * hand-backs) run at once on different connections. The renewal used to wait for a row another
 * of them held, while holding rows that one wanted next: a deadlock, found by Postgres after
 * `deadlock_timeout` (1 s), during which the slots waited (src/db/sql/claims.ts, renewLeases).
 */
describe('lease renewal beside the runner’s other writes (src/db/sql/claims.ts)', function () {
  this.timeout(20_000);
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase(4);
  });
  afterEach(async () => {
    await db.destroy();
  });

  async function claimed(n: number): Promise<JobRow[]> {
    for (let i = 0; i < n; i++) await insertPending(db, `job ${i}`);
    const jobs = await claimJobs(db, { workerId: WORKER, limit: n, leaseMs: 60_000 });
    expect(jobs).to.have.length(n);
    return jobs;
  }

  async function leaseOf(id: string): Promise<Date> {
    const res = await db.raw<{ rows: { locked_until: Date }[] }>(
      'SELECT locked_until FROM jobs WHERE id = ?',
      [id],
    );
    return res.rows[0]!.locked_until;
  }

  /** The renewal's answer; rejects if it has not come within `ms`. */
  async function renewWithin(jobs: JobRow[], ms: number): Promise<Set<string>> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the renewal did not answer within ${ms} ms: it waited for a lock`)),
        ms,
      );
    });
    try {
      return await Promise.race([
        renewLeases(db, {
          workerId: WORKER,
          claims: jobs.map(claimOf),
          leaseMs: 600_000,
        }),
        late,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  it('does not wait for a job another transaction holds, and reports it still held, its lease as it was', async () => {
    const [busy, free] = await claimed(2);
    const busyLease = await leaseOf(busy!.id);
    const freeLease = await leaseOf(free!.id);
    const trx = await db.transaction();
    try {
      // As a grouped completion's UPDATE holds its rows until it commits.
      await trx.raw('SELECT 1 FROM jobs WHERE id = ? FOR NO KEY UPDATE', [busy!.id]);
      const held = await renewWithin([busy!, free!], 5000);
      expect([...held].sort()).to.deep.equal([busy!.id, free!.id].sort());
      expect(await leaseOf(free!.id), 'the free job’s lease').to.be.above(freeLease);
      expect((await leaseOf(busy!.id)).getTime(), 'the busy job’s lease').to.equal(
        busyLease.getTime(),
      );
    } finally {
      await trx.rollback();
    }
  });

  it('does not deadlock with a write that locks the same jobs in another order', async () => {
    const [first, second] = await claimed(2);
    const trx = await db.transaction();
    try {
      // The other write takes the second job, the renewal asks for both, then the other write
      // asks for the first. Had the renewal taken the first and waited for the second, that was
      // a deadlock: one of the two failed with 40P01 after a second.
      await trx.raw('SELECT 1 FROM jobs WHERE id = ? FOR NO KEY UPDATE', [second!.id]);
      let answered = false;
      const renewal = renewWithin([first!, second!], 5000).finally(() => (answered = true));
      await eventually(
        async () => answered || (await backendsWaiting(db, { type: 'Lock' })) > 0,
        5000,
        'the renewal to answer or to wait for a lock',
      );
      await trx.raw(
        `UPDATE jobs SET status = 'succeeded', finished_at = now(), locked_by = NULL,
           locked_until = NULL WHERE id = ANY (?::uuid[])`,
        [[first!.id, second!.id]],
      );
      expect((await renewal).size).to.equal(2);
      await trx.commit();
    } catch (err) {
      await trx.rollback();
      throw err;
    }
    // Made terminal by the other write: the next renewal reports both gone.
    expect((await renewWithin([first!, second!], 5000)).size).to.equal(0);
  });

  it('reports a claim another worker holds, or that has ended, as not held', async () => {
    const [kept, stolen, ended] = await claimed(3);
    await db.raw("UPDATE jobs SET locked_by = 'other' WHERE id = ?", [stolen!.id]);
    await db.raw(
      "UPDATE jobs SET status = 'canceled', finished_at = now(), locked_by = NULL, locked_until = NULL WHERE id = ?",
      [ended!.id],
    );
    const held = await renewWithin([kept!, stolen!, ended!], 5000);
    expect([...held]).to.deep.equal([kept!.id]);
  });
});
