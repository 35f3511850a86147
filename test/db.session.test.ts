import { expect } from 'chai';
import type { Knex } from 'knex';
import { claimJobs } from '../src/db/sql/claims.js';
import { freshDatabase, insertPending } from './support/db.js';

/** EXPLAIN ANALYZE of `sql` as JSON: its top-level object (with `JIT` when it was compiled). */
async function explained(db: Knex, sql: string): Promise<Record<string, unknown>> {
  const res = await db.raw<{ rows: { 'QUERY PLAN': Record<string, unknown>[] }[] }>(
    `EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`,
  );
  return res.rows[0]!['QUERY PLAN'][0]!;
}

describe('service database sessions (src/db/knex.ts)', () => {
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase(1); // one connection: the SETs below stay on it
  });
  afterEach(async () => {
    await db.destroy();
  });

  // JIT's threshold is the planner's cost estimate. Stale statistics or a generic plan's unknown
  // LIMITs inflated the claim's estimate past it, and a claim of 16 jobs spent 575 ms compiling.
  it('never JIT-compile, whatever the cost estimate', async () => {
    await insertPending(db, 'NETFLIX.COM');
    const { rows } = await db.raw<{ rows: { jit: string }[] }>('SHOW jit');
    expect(rows[0]?.jit).to.equal('off');

    // Where the server can compile (built with LLVM), a statement over every threshold is not.
    await db.raw('SET jit_above_cost = 0; SET jit_inline_above_cost = 0');
    const available = await db.raw<{ rows: { available: boolean }[] }>(
      'SELECT pg_jit_available() AS available',
    );
    const plan = await explained(db, `SELECT count(*) FROM jobs WHERE status = 'pending'`);
    if (available.rows[0]?.available) expect(plan).not.to.have.property('JIT');
    expect(plan).to.have.property('Execution Time');
  });

  // A claim lost in a crash only makes its job pending again, so it need not wait for an fsync
  // (src/db/sql/claims.ts); every other statement must, or a 202 could be lost.
  it('a claim commits without waiting for its WAL flush, and only the claim', async () => {
    const setting = async (conn: Knex) =>
      (await conn.raw<{ rows: { synchronous_commit: string }[] }>('SHOW synchronous_commit'))
        .rows[0]?.synchronous_commit;
    await insertPending(db, 'NETFLIX.COM');
    await insertPending(db, 'SPOTIFY');
    const during = await db.transaction(async (trx) => {
      expect(await claimJobs(trx, { workerId: 'w', limit: 1, leaseMs: 30_000 })).to.have.length(1);
      return setting(trx);
    });
    expect(during).to.equal('off');
    expect(await claimJobs(db, { workerId: 'w', limit: 1, leaseMs: 30_000 })).to.have.length(1);
    expect(await setting(db)).to.equal('on'); // the same, only, connection
  });
});
