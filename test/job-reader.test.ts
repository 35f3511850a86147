import { expect } from 'chai';
import type { Knex } from 'knex';
import { jobReader } from '../src/db/job-reader.js';
import { clientId, freshDatabase, insertPending } from './support/db.js';

/** Counts the connections `db`'s pool hands out: one per statement the reader sends. */
function countAcquisitions(db: Knex): { count: number } {
  const client = db.client as { acquireConnection: () => Promise<unknown> };
  const acquire = client.acquireConnection.bind(client);
  const counter = { count: 0 };
  client.acquireConnection = () => {
    counter.count++;
    return acquire();
  };
  return counter;
}

describe('jobReader (reads of single jobs, coalesced)', () => {
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase();
  });
  afterEach(async () => {
    await db.destroy();
  });

  it('answers the reads of one turn with one statement, each its own job, owners checked', async () => {
    const [ownerA, ownerB] = [await clientId(db, 'a'), await clientId(db, 'b')];
    const a = await Promise.all(Array.from({ length: 10 }, (_, i) => insertPending(db, `A ${i}`)));
    const b = await Promise.all(
      Array.from({ length: 10 }, (_, i) => insertPending(db, `B ${i}`, 3, 'b')),
    );
    const read = jobReader(db);
    const counter = countAcquisitions(db);
    const unknown = '01a20728-0000-7000-8000-000000000000';
    const [asA, asB, asAnyone, again, missing] = await Promise.all([
      Promise.all(a.map((job) => read(job.id, ownerA))),
      Promise.all(a.map((job) => read(job.id, ownerB))), // another client's: not found
      Promise.all(b.map((job) => read(job.id, null))),
      read(a[0]!.id, ownerA), // the same id twice in one turn
      read(unknown, null),
    ]);
    expect(counter.count).to.equal(1);
    expect(asA.map((row) => row?.id)).to.deep.equal(a.map((job) => job.id));
    expect(asA.every((row) => row?.read_at !== undefined)).to.equal(true);
    expect(asB).to.deep.equal(a.map(() => undefined));
    expect(asAnyone.map((row) => row?.transaction.description)).to.deep.equal(
      b.map((job) => job.transaction.description),
    );
    expect(again?.id).to.equal(a[0]!.id);
    expect(missing).to.equal(undefined);
  });

  it('reads a lone job with the one-row statement, and fails only the bad read of a turn', async () => {
    const job = await insertPending(db, 'Lone');
    const read = jobReader(db);
    expect((await read(job.id, null))?.id).to.equal(job.id);
    const [good, bad] = await Promise.allSettled([read(job.id, null), read('not-a-uuid', null)]);
    expect(good.status === 'fulfilled' && good.value?.id).to.equal(job.id);
    expect(bad.status).to.equal('rejected');
  });
});
