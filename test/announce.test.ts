/**
 * PendingAnnouncer on its own: an idle announce sends at once; announces arriving while one is
 * in flight share a single next one; a failed send is logged and does not stop later ones. The
 * NOTIFY is a function the test holds open and settles, so no interleaving here is timed.
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import type pg from 'pg';
import { PENDING_CHANNEL } from '../src/db/channels.js';
import { createLogger } from '../src/log.js';
import { PendingAnnouncer } from '../src/runner/announce.js';
import { eventually } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { listenAsPeer } from './support/peer.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';

/** A notify whose every call waits until the test settles it. */
class HeldNotify {
  readonly calls: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  readonly notify = (): Promise<void> =>
    new Promise<void>((resolve, reject) => this.calls.push({ resolve, reject }));
}

/** Lets queued promise callbacks run. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

describe('PendingAnnouncer', () => {
  const log = createLogger('silent');

  it('sends at once when idle, and one more for all the announces made meanwhile', async () => {
    const held = new HeldNotify();
    const announcer = new PendingAnnouncer('test', held.notify, log);
    announcer.announce();
    expect(held.calls).to.have.length(1);
    for (let i = 0; i < 50; i++) announcer.announce();
    await settle();
    expect(held.calls, 'nothing more while the first is in flight').to.have.length(1);
    held.calls[0]?.resolve();
    await settle();
    expect(held.calls, 'the 50 share one').to.have.length(2);
    held.calls[1]?.resolve();
    await settle();
    expect(held.calls, 'nothing was announced after it started').to.have.length(2);
    announcer.announce();
    expect(held.calls, 'idle again: at once').to.have.length(3);
    held.calls[2]?.resolve();
  });

  it('after a failed send, the next announce sends again', async () => {
    const held = new HeldNotify();
    const announcer = new PendingAnnouncer('test', held.notify, log);
    announcer.announce();
    held.calls[0]?.reject(new Error('database unreachable'));
    await settle();
    announcer.announce();
    expect(held.calls).to.have.length(2);
    held.calls[1]?.resolve();
  });
});

/** Counts the claim statements sent through `db`'s pool. */
function countClaims(db: Knex): { count: number } {
  type Conn = { query(config: unknown, ...rest: unknown[]): unknown };
  const client = db.client as { acquireConnection(): Promise<Conn> };
  const acquire = client.acquireConnection.bind(client);
  const counter = { count: 0 };
  const watched = new WeakSet<Conn>();
  client.acquireConnection = async () => {
    const conn = await acquire();
    if (!watched.has(conn)) {
      watched.add(conn);
      const query = conn.query.bind(conn);
      conn.query = (config: unknown, ...rest: unknown[]) => {
        const name = (config as { name?: string } | null)?.name;
        if (name === 'merchant_claim_jobs') counter.count++;
        return query(config, ...rest);
      };
    }
    return conn;
  };
  return counter;
}

describe('submits are announced to other processes', () => {
  let h: Harness | undefined;
  let listener: pg.Client | undefined;
  afterEach(async () => {
    await listener?.end();
    await h?.stop();
    listener = undefined;
    h = undefined;
  });

  /**
   * LISTENs on the pending channel of `harness`'s database, as another process's runner would
   * (saying hello first, as it would): `payloads` holds what was heard, in order (closed after
   * the test).
   */
  async function listenPending(
    harness: Harness,
  ): Promise<{ client: pg.Client; payloads: string[] }> {
    const payloads: string[] = [];
    const client = await listenAsPeer(harness.db, [PENDING_CHANNEL], (_, payload) =>
      payloads.push(payload),
    );
    listener = client;
    return { client, payloads };
  }

  it('NOTIFYs the pending channel after a single submit and after a batch commits', async () => {
    // As another process's runner would: LISTENing, and nothing else tells it of new jobs.
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const { payloads } = await listenPending(h);

    await submitJob(h, 'Dropbox');
    await eventually(
      () => Promise.resolve(payloads.length >= 1),
      5000,
      'a NOTIFY after the single submit',
    );
    const before = payloads.length;
    await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('Zoom'), tx('Slack')] })
      .expect(202);
    await eventually(
      () => Promise.resolve(payloads.length > before),
      5000,
      'a NOTIFY after the batch',
    );
  });

  // The submitting process wakes its own runner when the insert returns; the announcement's
  // echo used to wake it again, and each idle submit cost a second, empty claim. Batches (of one
  // job here) are always stored pending: a single submit to an idle process starts at once,
  // with no claim and no announcement at all (the next test).
  it("a process claims once per idle submit: its own announcement's echo does not wake it", async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)) });
    const harness = h;
    const claims = countClaims(harness.service.db);
    const { client, payloads } = await listenPending(harness);

    const n = 10;
    for (let i = 0; i < n; i++) {
      const res = await harness.http
        .post('/normalize_merchant/batch')
        .send({ transactions: [tx(`Dropbox ${i}`)] })
        .expect(202);
      const [id] = (res.body as { job_ids: string[] }).job_ids as [string];
      expect((res.body as { counts: object }).counts, 'queued').to.include({ pending: 1 });
      await eventually(
        async () => (await harness.store.getJob(id, null))?.status === 'succeeded',
        5000,
        `job ${i} done`,
      );
      await eventually(() => Promise.resolve(payloads.length > i), 5000, `announcement ${i}`);
    }
    expect(
      payloads.every((p) => p !== ''),
      'a submit names its process',
    ).to.equal(true);
    // Another process's announcement, heard after all ten echoes (one connection delivers them
    // in order): it wakes this runner, which claims once more.
    await client.query(`SELECT pg_notify($1, '')`, [PENDING_CHANNEL]);
    await eventually(() => Promise.resolve(claims.count > n), 5000, 'a claim on the other NOTIFY');
    expect(claims.count).to.equal(n + 1);
  });

  // Nothing queued and a slot free: the job is stored running under this process's claim, so
  // no runner anywhere has anything to claim, and none is told.
  it('a single submit to an idle process starts at once: no claim, no announcement', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)) });
    const harness = h;
    const { client, payloads } = await listenPending(harness);
    const done = (id: string) =>
      eventually(async () => (await harness.store.getJob(id, null))?.status === 'succeeded');
    // Until the runner's first claim has found the queue drained, a submit is queued.
    await eventually(async () => {
      const res = await harness.http.post('/normalize_merchant').send(tx('warm-up')).expect(202);
      await done((res.body as { id: string }).id);
      return (res.body as { status: string }).status === 'running';
    });
    const claims = countClaims(harness.service.db);
    const heardBefore = payloads.length;
    for (let i = 0; i < 5; i++) {
      const res = await harness.http
        .post('/normalize_merchant')
        .send(tx(`Zoom ${i}`))
        .expect(202);
      const body = res.body as { id: string; status: string; attempts: number; started_at: string };
      expect(body, `submit ${i}`).to.include({ status: 'running', attempts: 1 });
      expect(body.started_at).to.be.a('string');
      await done(body.id);
    }
    expect(claims.count, 'claims').to.equal(0);
    // A NOTIFY of our own after them: every one sent before it has arrived once it has.
    await client.query(`SELECT pg_notify($1, 'marker')`, [PENDING_CHANNEL]);
    await eventually(() => Promise.resolve(payloads.length > heardBefore), 5000, 'the marker');
    expect(payloads.length - heardBefore, 'announcements besides the marker').to.equal(1);
  });
});
