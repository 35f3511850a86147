import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Knex } from 'knex';
import type { Appended } from '../src/db/sql/events.js';
import { createStore } from '../src/db/store.js';
import {
  backendsWaiting,
  clientId,
  countAcquisitions,
  eventually,
  freshDatabase,
} from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { Gate, TestHeuristic, tx } from './support/heuristics.js';

/**
 * Single submits arriving together are stored with one statement (src/db/sql/submits.ts,
 * jobInserter): each still gets its own row, its own idempotency answer, its own error.
 */
/** Lets the event loop turn once: the write of a submit made before has started by then. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('single submits stored together (group insert)', () => {
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase();
  });
  afterEach(async () => {
    await db.destroy();
  });

  const job = (clientId: string, description: string, key?: string, cacheKey?: string) => ({
    id: randomUUID(),
    clientId,
    transaction: tx(description),
    maxAttempts: 3,
    ...(key && { idempotency: { key, requestHash: `hash of ${description}` } }),
    ...(cacheKey && { cacheKey }),
  });

  it('stores concurrent submits of several clients with one statement, each its own row, in submit order', async () => {
    const [a, b] = [await clientId(db, 'a'), await clientId(db, 'b')];
    const store = createStore(db);
    const counter = countAcquisitions(db);
    const jobs = Array.from({ length: 20 }, (_, i) => job(i % 2 ? b : a, `Shop ${i}`));
    const stored = await Promise.all(jobs.map((one) => store.insertJob(one)));
    // Submitted together (one callback), they share one statement: the first is not written alone.
    expect(counter.count, 'statements').to.equal(1);
    expect(stored.map((s) => s.created)).to.deep.equal(jobs.map(() => true));
    expect(
      stored.map((s) => [s.row.id, s.row.client_id, s.row.transaction.description]),
    ).to.deep.equal(jobs.map((one) => [one.id, one.clientId, one.transaction.description]));
    expect(stored.every((s) => s.row.status === 'pending' && s.row.max_attempts === 3)).to.equal(
      true,
    );
    // seq is the claim's first-come order within a client: it follows the submits.
    const seqs = stored.map((s) => Number(s.row.seq));
    expect(seqs).to.deep.equal([...seqs].sort((x, y) => x - y));
    const { rows } = await db.raw<{ rows: { n: number }[] }>('SELECT count(*)::int AS n FROM jobs');
    expect(rows[0]?.n).to.equal(20);
  });

  it('answers an idempotency key taken before or within the same statement with the job holding it', async () => {
    const a = await clientId(db, 'a');
    const store = createStore(db);
    const earlier = await store.insertJob(job(a, 'Earlier', 'k-earlier'));
    const counter = countAcquisitions(db);
    const opener = store.insertJob(job(a, 'Opener', 'k-opener')); // alone: the others queue behind it
    await nextTurn();
    const [first, ...rest] = await Promise.all([
      opener,
      store.insertJob(job(a, 'Twin one', 'k-twin')),
      store.insertJob(job(a, 'Twin two', 'k-twin')),
      store.insertJob(job(a, 'Again', 'k-earlier')),
      store.insertJob(job(a, 'Keyless')),
    ]);
    expect(first.created).to.equal(true);
    const [twinOne, twinTwo, again, keyless] = rest;
    expect(twinOne).to.include({ created: true, requestHash: 'hash of Twin one' });
    expect(twinTwo).to.include({ created: false, requestHash: 'hash of Twin one' });
    expect(twinTwo?.row.id).to.equal(twinOne?.row.id);
    expect(again).to.include({ created: false, requestHash: 'hash of Earlier' });
    expect(again?.row.id).to.equal(earlier.row.id);
    expect(keyless?.created).to.equal(true);
    // Two inserts (the opener, then the four together) and a read of each job holding a key.
    expect(counter.count, 'statements').to.equal(4);
    const { rows } = await db.raw<{ rows: { n: number }[] }>('SELECT count(*)::int AS n FROM jobs');
    expect(rows[0]?.n).to.equal(4);
  });

  it('stores cacheable submits together: hits succeeded at once, their events reported once', async () => {
    const a = await clientId(db, 'a');
    await db.raw(
      `INSERT INTO results (cache_key, result, expires_at) VALUES
         ('key-netflix', '{"merchant": {"id": "netflix", "name": "Netflix"}}', now() + interval '1 hour'),
         ('key-stale', '{"merchant": null}', now() - interval '1 second')`,
    );
    const reports: Appended[] = [];
    const splits: unknown[] = [];
    const store = createStore(db, {
      onAppended: (events) => reports.push(events),
      onSubmitGroupSplit: (err) => splits.push(err),
    });
    const counter = countAcquisitions(db);
    const jobs = [
      job(a, 'Opener', undefined, 'key-opener'),
      job(a, 'Netflix one', undefined, 'key-netflix'),
      job(a, 'Stale', undefined, 'key-stale'),
      job(a, 'Netflix two', undefined, 'key-netflix'),
      job(a, 'Uncached'), // no cache key: the other group's statement
    ];
    const opener = store.insertJob(jobs[0]!);
    await nextTurn();
    const stored = await Promise.all([opener, ...jobs.slice(1).map((one) => store.insertJob(one))]);
    expect(splits, 'grouped statements that failed').to.deep.equal([]);
    // The opener alone, then the three cacheable ones together; the uncached one on its own.
    expect(counter.count, 'statements').to.equal(3);
    expect(stored.map((s) => [s.row.id, s.row.status, s.row.cache_key])).to.deep.equal([
      [jobs[0]!.id, 'pending', 'key-opener'],
      [jobs[1]!.id, 'succeeded', 'key-netflix'],
      [jobs[2]!.id, 'pending', 'key-stale'],
      [jobs[3]!.id, 'succeeded', 'key-netflix'],
      [jobs[4]!.id, 'pending', null],
    ]);
    expect(stored[1]!.row.result).to.deep.equal({ merchant: { id: 'netflix', name: 'Netflix' } });
    expect(reports, 'one report for the statement that appended events').to.have.length(1);
    expect(reports[0]!.counts).to.deep.equal({ 'job.succeeded': 2 });
    expect(reports[0]!.rows?.map((e) => e.job_id).sort()).to.deep.equal(
      [jobs[1]!.id, jobs[3]!.id].sort(),
    );
    const { rows } = await db.raw<{ rows: { job_id: string }[] }>(
      'SELECT job_id FROM job_events ORDER BY id',
    );
    expect(rows).to.have.length(2);
  });

  it('fails only the submit the database refuses, and stores the others of its statement', async () => {
    const a = await clientId(db, 'a');
    const splits: { err: unknown; jobs: number }[] = [];
    const store = createStore(db, {
      onSubmitGroupSplit: (err, jobs) => splits.push({ err, jobs }),
    });
    const unknownClient = randomUUID(); // no such client: the foreign key refuses its job
    const opener = store.insertJob(job(a, 'Opener'));
    await nextTurn();
    const results = await Promise.allSettled([
      opener,
      store.insertJob(job(a, 'Good one')),
      store.insertJob(job(unknownClient, 'Orphan')),
      store.insertJob(job(a, 'Good two')),
    ]);
    expect(results.map((r) => r.status)).to.deep.equal([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    const refused = results[2] as PromiseRejectedResult;
    expect(String(refused.reason)).to.match(/jobs_client_id_fkey/);
    // The three arriving behind the opener shared a statement, which failed: reported once.
    expect(splits.map((s) => s.jobs)).to.deep.equal([3]);
    expect(String(splits[0]?.err)).to.match(/jobs_client_id_fkey/);
    const { rows } = await db.raw<{ rows: { description: string }[] }>(
      `SELECT transaction->>'description' AS description FROM jobs ORDER BY seq`,
    );
    expect(rows.map((r) => r.description)).to.deep.equal(['Opener', 'Good one', 'Good two']);
  });
});

describe('a grouped insert of submits the database refuses, through the service', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('writes the group one by one, answers the good submits 202, and counts the split', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(new Gate().behaviour) });
    // "Slow" holds the inserter for a second, so the three sent once it is seen sleeping queue
    // and share the next statement (they reach the inserter within milliseconds: auth and
    // admission are answered from memory after Slow's request); "Bad" is refused by the
    // database, alone or grouped.
    await h.db.raw(`CREATE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.transaction->>'description' = 'Slow' THEN PERFORM pg_sleep(1); END IF;
        IF NEW.transaction->>'description' = 'Bad' THEN
          RAISE EXCEPTION 'insert refused by the test' USING ERRCODE = '23514';
        END IF;
        RETURN NEW;
      END $$`);
    await h.db.raw(`CREATE TRIGGER test_refuse_insert BEFORE INSERT ON jobs
                    FOR EACH ROW EXECUTE FUNCTION test_refuse_insert()`);
    const post = (description: string) =>
      h!.http
        .post('/normalize_merchant')
        .send(tx(description))
        .then((res) => res);
    const slow = post('Slow');
    await eventually(async () => (await backendsWaiting(h!.db, { event: 'PgSleep' })) > 0);
    const [bad, good1, good2] = await Promise.all([post('Bad'), post('Good 1'), post('Good 2')]);
    expect((await slow).status).to.equal(202);
    expect([good1.status, good2.status]).to.deep.equal([202, 202]);
    // A row the database refuses is the service's failure, not the client's: a 500 problem,
    // without the database's message or a stack.
    expect(bad.status).to.equal(500);
    expect(bad.headers['content-type']).to.match(/^application\/problem\+json/);
    expect(JSON.stringify(bad.body)).to.not.match(/refused by the test|at .+\.ts:\d+/);
    const metrics = (await h.http.get('/metrics').expect(200)).text;
    expect(metrics).to.include('merchant_group_commit_splits_total{statement="submits"} 1');
  });
});
