/**
 * How appended events travel (src/jobs/events.ts): the writing process hands a statement's rows
 * on at once and announces the transaction after its commit, one notification in flight, the
 * rest coalesced; other processes read what they are told, the writer skips its own; and no
 * statement NOTIFYs inside its own transaction any more (that serialized every commit).
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import { EVENTS_CHANNEL, PENDING_CHANNEL } from '../src/db/channels.js';
import type { Appended, EventRow } from '../src/db/sql/events.js';
import { EventFeed, type EventFeedOptions } from '../src/jobs/events.js';
import { createLogger } from '../src/log.js';
import { databaseUrl, eventually, freshDatabase } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';
import { otherRunner } from './support/other-runner.js';
import { listenAsPeer } from './support/peer.js';

/** A notify whose every call waits until the test settles it; payloads kept. */
class HeldNotify {
  readonly calls: Array<{ payload: string; resolve: () => void; reject: (e: unknown) => void }> =
    [];
  readonly notify = (payload: string): Promise<void> =>
    new Promise<void>((resolve, reject) => this.calls.push({ payload, resolve, reject }));
}

/** Lets queued promise callbacks run. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** Appends one job.canceled event in a transaction of its own; returns that transaction's id. */
async function appendEvent(db: Knex): Promise<string> {
  return db.transaction(async (trx) => {
    const [client] = await trx('clients').insert({ name: `c-${Math.random()}` }, ['id']);
    const { rows } = await trx.raw<{ rows: { tx: string }[] }>(
      `INSERT INTO job_events (type, client_id, job_id)
       VALUES ('job.canceled', ?, gen_random_uuid()) RETURNING tx_id::text AS tx`,
      [(client as { id: string }).id],
    );
    return rows[0]!.tx;
  });
}

const appendedIn = (txId: string, rows?: EventRow[]): Appended => ({
  counts: { 'job.canceled': 1 },
  txId,
  ...(rows && { rows }),
});

describe('EventFeed', () => {
  const log = createLogger('silent');
  let db: Knex;
  before(async () => {
    db = await freshDatabase(2);
  });
  after(() => db.destroy());

  it("hands a statement's own rows on at once, without reading them back", () => {
    const feed = new EventFeed(db, log);
    const heard: EventRow[][] = [];
    feed.subscribe((events) => heard.push([...events]));
    const row: EventRow = {
      id: '7',
      tx_id: '99',
      type: 'job.succeeded',
      client_id: '00000000-0000-4000-8000-000000000001',
      job_id: '00000000-0000-4000-8000-000000000002',
      batch_id: null,
      created_at: new Date(),
    };
    feed.appended(appendedIn('99', [row]));
    // Synchronously: a read would have answered later.
    expect(heard).to.deep.equal([[row]]);
  });

  it('reads the events back by transaction when the statement did not carry them', async () => {
    const feed = new EventFeed(db, log);
    const heard: EventRow[] = [];
    feed.subscribe((events) => heard.push(...events));
    const txId = await appendEvent(db);
    feed.appended(appendedIn(txId));
    await feed.idle();
    expect(heard.map((e) => [e.tx_id, e.type])).to.deep.equal([[txId, 'job.canceled']]);
  });

  it('announces at once when idle; transactions committed meanwhile share the next one', async () => {
    const held = new HeldNotify();
    const feed = new EventFeed(db, log, held.notify);
    feed.appended(appendedIn('1', []));
    expect(held.calls.map((c) => c.payload.split(':')[1])).to.deep.equal(['1']);
    for (const tx of ['2', '3', '4']) feed.appended(appendedIn(tx, []));
    await settle();
    expect(held.calls, 'nothing more while the first is in flight').to.have.length(1);
    held.calls[0]!.resolve();
    await settle();
    expect(held.calls.map((c) => c.payload.split(':')[1])).to.deep.equal(['1', '2,3,4']);
    expect(held.calls[1]!.payload.split(':')[0], 'the same origin').to.equal(
      held.calls[0]!.payload.split(':')[0],
    );
    held.calls[1]!.resolve();
    await feed.idle();
  });

  it('splits a long backlog into payloads Postgres accepts (under 8,000 bytes), each id once', async () => {
    const held = new HeldNotify();
    const feed = new EventFeed(db, log, held.notify);
    feed.appended(appendedIn('1', []));
    const backlog = Array.from({ length: 1000 }, (_, i) => String(10n ** 19n + BigInt(i)));
    for (const tx of backlog) feed.appended(appendedIn(tx, []));
    for (let i = 0; i < held.calls.length; i++) {
      held.calls[i]!.resolve();
      await settle();
    }
    const sent = held.calls.slice(1).flatMap((c) => c.payload.split(':')[1]!.split(','));
    expect(sent).to.deep.equal(backlog);
    for (const c of held.calls) expect(Buffer.byteLength(c.payload)).to.be.below(8000);
  });

  it('after a failed announcement, the next transaction is announced', async () => {
    const held = new HeldNotify();
    const feed = new EventFeed(db, log, held.notify);
    feed.appended(appendedIn('1', []));
    held.calls[0]!.reject(new Error('database unreachable'));
    await settle();
    feed.appended(appendedIn('2', []));
    expect(held.calls.map((c) => c.payload.split(':')[1])).to.deep.equal(['1', '2']);
    held.calls[1]!.resolve();
    await feed.idle();
  });

  it("skips its own announcements, reads another process's and the bare ids migration 0006's trigger sent", async () => {
    const held = new HeldNotify();
    const writer = new EventFeed(db, log, held.notify);
    const reader = new EventFeed(db, log);
    const heardByWriter: string[] = [];
    const heardByReader: string[] = [];
    writer.subscribe((events) => heardByWriter.push(...events.map((e) => e.tx_id)));
    reader.subscribe((events) => heardByReader.push(...events.map((e) => e.tx_id)));
    const first = await appendEvent(db);
    const second = await appendEvent(db);
    writer.appended(appendedIn(first, []));
    held.calls[0]!.resolve();
    const payload = held.calls[0]!.payload;

    writer.notified(payload);
    reader.notified(payload);
    reader.notified(second); // the old trigger's payload
    reader.notified('someone:not-a-tx-id,also not');
    await Promise.all([writer.idle(), reader.idle()]);
    expect(heardByWriter, 'its own: not read again').to.deep.equal([]);
    expect(heardByReader.sort()).to.deep.equal([first, second].sort());
  });

  describe('announces only while another process listens', () => {
    const presenceMs = 60_000;
    /** A feed whose notifications are settled at once; `sent` holds each payload after its origin. */
    const recordingFeed = (options: EventFeedOptions) => {
      const sent: string[] = [];
      const feed = new EventFeed(
        db,
        log,
        (payload) => {
          sent.push(payload.slice(payload.indexOf(':') + 1));
          return Promise.resolve();
        },
        options,
      );
      return { sent, feed };
    };
    /** Such a feed on a clock the test moves. */
    const onClock = () => {
      const clock = { t: 1_000_000 };
      return { clock, ...recordingFeed({ presenceMs, now: () => clock.t }) };
    };

    it('announces for 2 s after its hello, then nothing once nobody has been heard from', async () => {
      const { clock, sent, feed } = onClock();
      feed.start();
      expect(sent, 'its hello').to.deep.equal(['hello']);
      feed.appended(appendedIn('1', []));
      await feed.idle();
      expect(sent).to.deep.equal(['hello', '1']);
      clock.t += 2_000;
      expect(feed.othersListening()).to.equal(false);
      feed.appended(appendedIn('2', []));
      await feed.idle();
      expect(sent, 'nobody answered: not announced').to.deep.equal(['hello', '1']);
      feed.stop();
    });

    it("another process's announcement, hello, presence or old trigger's id makes it announce for presenceMs", async () => {
      for (const payload of ['abc:7', 'abc:hello', 'abc:here', '7']) {
        const { clock, sent, feed } = onClock();
        clock.t += 2_000;
        expect(feed.othersListening(), payload).to.equal(false);
        feed.notified(payload);
        expect(feed.othersListening(), payload).to.equal(true);
        clock.t += presenceMs - 1;
        feed.appended(appendedIn('8', []));
        await feed.idle();
        expect(
          sent.filter((p) => p !== 'here'),
          payload,
        ).to.deep.equal(['8']);
        clock.t += 1;
        expect(feed.othersListening(), `${payload}: presence lasts presenceMs`).to.equal(false);
      }
    });

    it('its own notifications are not presence; a pending announcement of another process is', () => {
      const { clock, feed } = onClock();
      clock.t += 2_000;
      feed.notified(`${feed.origin}:here`);
      feed.notified(`${feed.origin}:9`);
      feed.heardFrom(feed.origin);
      expect(feed.othersListening()).to.equal(false);
      feed.heardFrom('abc');
      expect(feed.othersListening()).to.equal(true);
    });

    it('answers a hello with here, and a here with nothing', async () => {
      const { sent, feed } = onClock();
      feed.notified('abc:here');
      await feed.idle();
      expect(sent).to.deep.equal([]);
      feed.notified('abc:hello');
      await feed.idle();
      expect(sent).to.deep.equal(['here']);
    });

    it('after a LISTEN reconnect, says hello again and announces until answered', async () => {
      const { clock, sent, feed } = onClock();
      clock.t += 2_000;
      expect(feed.othersListening()).to.equal(false);
      feed.caughtUp();
      await feed.idle();
      expect(sent).to.deep.equal(['hello']);
      expect(feed.othersListening()).to.equal(true);
    });

    it('says here every third of presenceMs once started, until stopped', async () => {
      const { sent, feed } = recordingFeed({ presenceMs: 30 });
      feed.start();
      await eventually(
        () => Promise.resolve(sent.filter((p) => p === 'here').length >= 2),
        5000,
        'two heres',
      );
      feed.stop();
      await feed.idle();
      const said = sent.length;
      // Stopped: a later timer tick would have said more by the time a longer wait is over.
      await eventually(
        () => Promise.resolve(feed.othersListening() === false),
        5000,
        'presence to lapse',
      );
      expect(sent).to.have.length(said);
      expect(sent[0]).to.equal('hello');
    });

    it('a writer that does not listen (presenceMs Infinity) always announces', async () => {
      const clock = { t: 0 };
      const { sent, feed } = recordingFeed({ presenceMs: Infinity, now: () => clock.t });
      clock.t += 10 * 365 * 86_400_000;
      feed.appended(appendedIn('1', []));
      await feed.idle();
      expect(sent).to.deep.equal(['1']);
    });
  });
});

/**
 * LISTENs on the events channel as another process would (its hello answered first); payloads
 * go to `heard`, the service's answer to the hello among them.
 */
function listenForEvents(h: Harness, heard: string[]): Promise<pg.Client> {
  return listenAsPeer(h.db, [EVENTS_CHANNEL], (_, payload) => heard.push(payload));
}

/** The payloads that announce transactions (not presence messages). */
const announcements = (payloads: readonly string[]) =>
  payloads.filter((p) => !/:(hello|here)$/.test(p));

describe('events reach other processes', () => {
  let h: Harness | undefined;
  let listener: pg.Client | undefined;
  afterEach(async () => {
    await listener?.end();
    await h?.stop();
    listener = undefined;
    h = undefined;
  });

  it('a completion is announced after its commit, not by a NOTIFY inside its transaction', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)) });
    const payloads: string[] = [];
    listener = await listenForEvents(h, payloads);
    payloads.length = 0;
    const job = await submitJob(h, 'Netflix');
    await eventually(
      () => Promise.resolve(announcements(payloads).length >= 1),
      5000,
      'an announcement',
    );
    // A NOTIFY sent inside the completing transaction is delivered at its commit, so before the
    // announcement sent after it: had there been one, it would be first.
    expect(payloads[0]).to.match(/^[0-9a-f]{12}:\d+$/);
    const [event] = await h.db('job_events').where({ job_id: job.id }).select('tx_id');
    expect(payloads[0]!.split(':')[1]).to.equal(String((event as { tx_id: string }).tx_id));
  });

  it('a session of a version before 0010 (no merchant.events_announced) is still announced by the trigger', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const payloads: string[] = [];
    listener = await listenForEvents(h, payloads);
    const old = new pg.Client({ connectionString: databaseUrl(h.db) });
    await old.connect();
    try {
      const job = await submitJob(h, 'Hulu');
      const waiter = h.http.get(`/jobs/${job.id}?wait=30`).then((r) => r);
      await eventually(async () => h!.events.size === 1, 5000, 'the waiter to register');
      // As the previous version's cancel would: its event appended, nothing announced by it.
      const { rows } = await old.query<{ tx: string }>(
        `WITH c AS (UPDATE jobs SET status = 'canceled', finished_at = now()
                    WHERE id = $1 RETURNING id, client_id)
         INSERT INTO job_events (type, client_id, job_id)
         SELECT 'job.canceled', client_id, id FROM c RETURNING tx_id::text AS tx`,
        [job.id],
      );
      await eventually(
        () => Promise.resolve(announcements(payloads).length >= 1),
        5000,
        'the trigger',
      );
      expect(announcements(payloads)).to.deep.equal([rows[0]!.tx]);
      expect((await waiter).body.status, 'this version reads it').to.equal('canceled');
    } finally {
      await old.end();
    }
  });

  it('alone, a process announces neither its events nor its pending jobs; once a process says hello, it answers and announces', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const harness = h;
    const origin = harness.service.feed.origin;
    const heard: Array<[string, string]> = [];
    // Listening without a hello, as a process of a version before presence would.
    const silent = new pg.Client({ connectionString: databaseUrl(harness.db) });
    listener = silent;
    await silent.connect();
    silent.on('notification', (n) => heard.push([n.channel, n.payload ?? '']));
    await silent.query(`LISTEN ${EVENTS_CHANNEL}`);
    await silent.query(`LISTEN ${PENDING_CHANNEL}`);
    // Its hello has gone unanswered for 2 s.
    await eventually(
      () => Promise.resolve(!harness.service.feed.othersListening()),
      10_000,
      'the start-up grace to end',
    );
    const done = (id: string) =>
      eventually(async () => (await harness.store.getJob(id, null))?.status === 'succeeded');

    const alone = await submitJob(harness, 'Netflix');
    harness.runner.start();
    await done(alone.id);
    const [aloneEvent] = await harness.db('job_events').where({ job_id: alone.id });

    await silent.query('SELECT pg_notify($1, $2)', [EVENTS_CHANNEL, 'peer:hello']);
    await eventually(
      () => Promise.resolve(heard.some(([, p]) => p === `${origin}:here`)),
      5000,
      'the answer to the hello',
    );
    const told = await submitJob(harness, 'Hulu');
    await done(told.id);
    const [toldEvent] = await harness.db('job_events').where({ job_id: told.id });
    const toldTx = String((toldEvent as { tx_id: string }).tx_id);
    await eventually(
      () => Promise.resolve(heard.some(([, p]) => p.split(':')[1]?.split(',').includes(toldTx))),
      5000,
      'the announcement once a process said hello',
    );
    const aloneTx = String((aloneEvent as { tx_id: string }).tx_id);
    const ownPayloads = heard.filter(([, p]) => p.startsWith(`${origin}`));
    expect(
      ownPayloads.filter(([, p]) => p.split(':')[1]?.split(',').includes(aloneTx)),
      "the job finished alone: its event was not announced (the hello's answer came after it)",
    ).to.deep.equal([]);
    expect(
      ownPayloads.filter(([channel]) => channel === PENDING_CHANNEL),
      'the job queued alone was not announced',
    ).to.deep.equal([]);
  });

  it("another process's finish answers this process's long-poll waiter", async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    h = await startHarness({ heuristic, startRunner: false });
    const other = otherRunner(h.db, heuristic);
    try {
      const job = await submitJob(h, 'Spotify');
      const started = Date.now();
      const waiter = h.http.get(`/jobs/${job.id}?wait=30`).then((r) => r);
      await eventually(async () => h!.events.size === 1, 5000, 'the waiter to register');
      other.runner.start();
      other.runner.wake();
      const res = await waiter;
      expect(res.body.status).to.equal('succeeded');
      // Told, not answered at the deadline (30 s) after a re-read.
      expect(Date.now() - started).to.be.below(10_000);
    } finally {
      await other.stop();
    }
  });
});
