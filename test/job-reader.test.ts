import { expect } from 'chai';
import type { Knex } from 'knex';
import { jobReader } from '../src/db/job-reader.js';
import { getJob } from '../src/db/sql/jobs.js';
import { createStore } from '../src/db/store.js';
import { clientId, countAcquisitions, freshDatabase, insertPending } from './support/db.js';

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

  // The waiters a completion wakes read its job at once: the completing statement has the row.
  it('answers reads of jobs this process just completed without a statement, owners checked', async () => {
    const [ownerA, ownerB] = [await clientId(db, 'a'), await clientId(db, 'b')];
    const done = await insertPending(db, 'NETFLIX.COM');
    const waiting = await insertPending(db, 'SPOTIFY');
    const store = createStore(db);
    const [claim] = await store.runner.claim({ workerId: 'w', limit: 1, leaseMs: 30_000 });
    expect(claim?.id).to.equal(done.id);
    const result = { merchant: { id: 'netflix', name: 'Netflix' }, intermediaries: [] };
    await store.runner.complete({ workerId: 'w', items: [{ job: claim!, result }] });

    const counter = countAcquisitions(db);
    const [asA, asB] = [await store.getJob(done.id, ownerA), await store.getJob(done.id, ownerB)];
    expect(asA).to.include({ id: done.id, status: 'succeeded' });
    expect(asA).not.to.have.property('followers');
    expect(asB, "another client's job").to.equal(undefined);
    expect(counter.count, 'statements for the completed job').to.equal(0);
    expect(await store.getJob(waiting.id, ownerA)).to.include({ status: 'pending' });
    expect(counter.count, 'a job not completed here is read').to.equal(1);
  });

  // The completion returns only what it changed; the row it primes is the claimed row with that.
  it('primes a completed job with the row the database holds, field for field', async () => {
    const job = await insertPending(db, 'NETFLIX.COM');
    const store = createStore(db);
    // A first attempt fails and is retried: until completed, the row carries its error.
    const [first] = await store.runner.claim({ workerId: 'w', limit: 1, leaseMs: 30_000 });
    await store.runner.fail({
      workerId: 'w',
      claim: first!,
      error: { code: 'heuristic_error', message: 'first try', attempt: 1 },
      retry: true,
      retryDelayMs: 0,
    });
    const [second] = await store.runner.claim({ workerId: 'w', limit: 1, leaseMs: 30_000 });
    expect(second?.error).to.include({ code: 'heuristic_error' });
    // Keys in an order jsonb does not keep: the primed row must read back as the table has it.
    const result = { merchant: { name: 'Netflix', id: 'netflix' }, intermediaries: [] };
    const [done] = await store.runner.complete({
      workerId: 'w',
      items: [{ job: second!, result }],
    });
    const { followers, ...completed } = done!;
    expect(followers).to.equal(0);
    const { read_at: _readAt, ...stored } = (await getJob(db, job.id, null))!;
    expect(completed).to.deep.equal(stored);
    expect(JSON.stringify(completed)).to.equal(JSON.stringify(stored));
    const counter = countAcquisitions(db);
    expect(await store.getJob(job.id, null)).to.deep.equal(stored);
    expect(counter.count, 'statements for the primed read').to.equal(0);
  });
});
