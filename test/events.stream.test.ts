/**
 * GET /events: the caller's events as Server-Sent Events over a real socket, parsed with
 * eventsource-parser. Reconnecting with Last-Event-ID (or ?after=) yields exactly the events
 * missed; an event committed late behind an older transaction is not skipped; filters,
 * heartbeats, errors, and shutdown ending the streams.
 */
import { expect } from 'chai';
import { issueKey } from '../src/auth/keys.js';
import { cancelJob } from '../src/db/sql/jobs.js';
import { clientId, eventually, insertPending } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { pushConfig } from './support/push.js';
import { type OpenStream, openEvents, serve } from './support/sse.js';

interface Message {
  type: string;
  timestamp: string;
  data: { id: string; status?: string };
}
const dataOf = (s: OpenStream) => s.messages.map((m) => JSON.parse(m.data) as Message);
const jobIdsOf = (s: OpenStream) => dataOf(s).map((m) => m.data.id);

/** The ids of the events after event `id`, in log order. */
async function logAfter(h: Harness, id: string): Promise<string[]> {
  const res = await h.db.raw<{ rows: { id: string }[] }>(
    `SELECT e.id::text FROM job_events e, job_events s
     WHERE s.id = ? AND (e.tx_id, e.id) > (s.tx_id, s.id) ORDER BY e.tx_id, e.id`,
    [id],
  );
  return res.rows.map((r) => r.id);
}

/** The event id of job `jobId`'s event. */
async function eventIdOf(h: Harness, jobId: string): Promise<string> {
  const row = await h.db('job_events').where({ job_id: jobId }).first<{ id: string }>();
  if (!row) throw new Error(`no event for ${jobId}`);
  return String(row.id);
}

describe('GET /events (Server-Sent Events)', () => {
  let h: Harness;
  let server: Awaited<ReturnType<typeof serve>>;
  const streams: OpenStream[] = [];
  const open = async (opts: Parameters<typeof openEvents>[2] = {}, key = h.key.key) => {
    const s = await openEvents(server.base, key, opts);
    streams.push(s);
    return s;
  };
  const start = async (extra: Parameters<typeof pushConfig>[0] = {}, startRunner = true) => {
    h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      config: pushConfig(extra),
      startRunner,
    });
    server = await serve(h);
  };
  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    await h.stop();
    await server.close();
  });

  it("streams the caller's own events: id is the event id, event its type, data the resource as GET returns it", async () => {
    await start();
    const a = await open();
    expect(a.status).to.equal(200);
    expect(a.headers.get('content-type')).to.match(/^text\/event-stream/);
    expect(a.headers.get('cache-control')).to.equal('no-cache, no-transform');
    const other = await issueKey(h.db, 'b');
    const b = await open({}, other.key);
    const mine = await submitJob(h, 'Netflix');
    const theirs = await h
      .as(other.key)
      .post('/normalize_merchant')
      .send(tx('Spotify'))
      .expect(202);
    await eventually(async () => a.messages.length === 1 && b.messages.length === 1);
    const [message] = a.messages;
    expect(message!.id).to.equal(await eventIdOf(h, mine.id));
    expect(message!.event).to.equal('job.succeeded');
    const body = JSON.parse(message!.data) as Message;
    expect(body.type).to.equal('job.succeeded');
    expect(body.data).to.deep.equal((await h.http.get(`/jobs/${mine.id}`)).body);
    expect(jobIdsOf(b)).to.deep.equal([theirs.body.id]);
    expect(a.comments).to.include('connected');
  });

  it('reconnecting with Last-Event-ID yields exactly the events missed, then live ones, none twice', async () => {
    await start();
    const first = await open();
    const before = [await submitJob(h, 'A'), await submitJob(h, 'B'), await submitJob(h, 'C')];
    await eventually(async () => first.messages.length === 3, 10_000, 'first: 3');
    const lastSeen = first.messages[2]!.id!;
    first.close();
    const missed = [];
    for (const name of ['D', 'E', 'F', 'G']) missed.push(await submitJob(h, name));
    await eventually(
      async () => (await h.db('job_events').count<{ n: string }[]>('* as n'))[0]?.n === '7',
    );

    const resumed = await open({ lastEventId: lastSeen });
    await eventually(async () => resumed.messages.length === 4, 10_000, 'resumed: 4');
    // Exactly the missed ones, in log order (which is not submission order: jobs finish as
    // they finish).
    expect(jobIdsOf(resumed).sort()).to.deep.equal(missed.map((j) => j.id).sort());
    expect(resumed.messages.map((m) => m.id)).to.deep.equal(await logAfter(h, lastSeen));
    expect(jobIdsOf(first).sort()).to.deep.equal(before.map((j) => j.id).sort());
    const live = await submitJob(h, 'H');
    await eventually(async () => resumed.messages.length === 5, 10_000, 'resumed: 5');
    expect(jobIdsOf(resumed).at(-1)).to.equal(live.id);
    const viaQuery = await open({ query: `?after=${lastSeen}` });
    await eventually(async () => viaQuery.messages.length === 5, 10_000, 'viaQuery: 5');
    expect(viaQuery.messages.map((m) => m.id)).to.deep.equal(resumed.messages.map((m) => m.id));
    // Last-Event-ID wins over ?after= (it is the later position on a reconnect).
    const both = await open({ query: `?after=${lastSeen}`, lastEventId: resumed.messages[3]!.id! });
    await eventually(async () => both.messages.length === 1, 10_000, 'both: 1');
    expect(both.messages[0]!.id).to.equal(resumed.messages[4]!.id);
  });

  it('does not skip an event that commits after a later one (held back until the older transaction ends)', async () => {
    await start({}, false);
    const stream = await open();
    const owner = await clientId(h.db, 'a');
    const early = await insertPending(h.db, 'Early');
    const late = await insertPending(h.db, 'Late');
    // The older transaction appends its event first but commits last.
    const trx = await h.db.transaction();
    try {
      await cancelJob(trx, early.id, owner);
      await h.http.delete(`/jobs/${late.id}`).expect(200);
      await trx.commit();
    } catch (err) {
      await trx.rollback();
      throw err;
    }
    await eventually(async () => stream.messages.length === 2, 10_000, 'both events');
    expect(jobIdsOf(stream)).to.deep.equal([early.id, late.id]);
    // And a reconnect after the last one sends nothing again.
    const again = await open({ lastEventId: stream.messages[1]!.id! });
    const marker = await insertPending(h.db, 'Marker');
    await h.http.delete(`/jobs/${marker.id}`).expect(200);
    await eventually(async () => again.messages.length === 1);
    expect(jobIdsOf(again)).to.deep.equal([marker.id]);
  });

  it('resuming while an older transaction holds the missed events back gets them when it ends', async () => {
    await start({}, false);
    const first = await open();
    const marker = await insertPending(h.db, 'Marker');
    await h.http.delete(`/jobs/${marker.id}`).expect(200);
    await eventually(async () => first.messages.length === 1);
    first.close();
    // An open transaction older than the next events (anyone's, on this server) holds them
    // back from the cursor read; they were committed before the stream reconnects, so the
    // feed never reports them to it.
    const trx = await h.db.transaction();
    try {
      await trx.raw('SELECT pg_current_xact_id()');
      const missed = await insertPending(h.db, 'Missed');
      await h.http.delete(`/jobs/${missed.id}`).expect(200);
      const resumed = await open({ lastEventId: first.messages[0]!.id! });
      await eventually(async () => resumed.comments.includes('connected'));
      expect(resumed.messages).to.deep.equal([]);
      await trx.commit();
      // Long before the first heartbeat (15 s) would have made it read again.
      await eventually(async () => resumed.messages.length === 1, 10_000, 'the held-back event');
      expect(jobIdsOf(resumed)).to.deep.equal([missed.id]);
    } finally {
      if (!trx.isCompleted()) await trx.rollback();
    }
  });

  it('filters by ?types= and ?batch=', async () => {
    await start({}, false);
    const all = await open();
    const completed = await open({ query: '?types=batch.completed' });
    const jobsOnly = await open({ query: '?types=job.succeeded,job.failed' });
    const batch = await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('One'), tx('Two')] })
      .expect(202);
    const ofBatch = await open({ query: `?batch=${batch.body.id}` });
    const outside = await submitJob(h, 'Outside');
    h.runner.start();
    await eventually(async () => all.messages.length === 4 && jobsOnly.messages.length === 3);
    await eventually(async () => completed.messages.length === 1 && ofBatch.messages.length === 3);
    expect(completed.messages[0]!.event).to.equal('batch.completed');
    expect(JSON.parse(completed.messages[0]!.data).data.id).to.equal(batch.body.id);
    expect(jobIdsOf(jobsOnly).sort()).to.deep.equal([...batch.body.job_ids, outside.id].sort());
    expect(jobIdsOf(ofBatch).sort()).to.deep.equal([...batch.body.job_ids, batch.body.id].sort());
    expect(ofBatch.messages.at(-1)?.event).to.equal('batch.completed');
  });

  it('sends heartbeat comments while nothing happens', async () => {
    await start({ eventsHeartbeatMs: 30 });
    const stream = await open();
    await eventually(async () => stream.comments.filter((c) => c === 'heartbeat').length >= 3);
    expect(stream.messages).to.deep.equal([]);
  });

  it('refuses bad parameters (400) and an event that is not in your log (410)', async () => {
    await start();
    expect((await open({ query: '?after=abc' })).status).to.equal(400);
    expect((await open({ query: '?types=job.exploded' })).status).to.equal(400);
    expect((await open({ query: '?batch=nope' })).status).to.equal(400);
    expect((await open({ query: '?since=1' })).status).to.equal(400);
    expect((await open({ lastEventId: 'abc' })).status).to.equal(400);
    const gone = await open({ lastEventId: '999999' });
    expect(gone.status).to.equal(410);
    expect(gone.problem).to.include({ type: '/problems/event-expired', status: 410 });
    // Another client's event is not in your log either.
    const other = await issueKey(h.db, 'b');
    const theirs = await h.as(other.key).post('/normalize_merchant').send(tx('X')).expect(202);
    await eventually(
      async () => (await h.db('job_events').where({ job_id: theirs.body.id })).length === 1,
    );
    expect((await open({ lastEventId: await eventIdOf(h, theirs.body.id) })).status).to.equal(410);
  });

  it('refuses a stream past EVENTS_MAX_STREAMS_PER_CLIENT with 429, per client, even when asked for at once, and takes one again once one closes', async () => {
    await start({ eventsMaxStreamsPerClient: 2 });
    // Asked for together: each request awaits the log position before it opens its stream, so
    // a count taken before that await would let all six through.
    const first = await Promise.all(Array.from({ length: 6 }, () => open()));
    expect(first.map((s) => s.status).sort()).to.deep.equal([200, 200, 429, 429, 429, 429]);
    const refused = first.find((s) => s.status === 429)!;
    expect(refused.headers.get('content-type')).to.match(/^application\/problem\+json/);
    expect(refused.headers.get('retry-after')).to.equal('5');
    expect(refused.problem).to.include({
      type: '/problems/too-many-streams',
      status: 429,
      limit: 2,
    });
    expect((refused.problem as { detail: string }).detail).to.contain(
      'EVENTS_MAX_STREAMS_PER_CLIENT',
    );
    // A refused or failed open takes no place: at the limit, a resume after an event that is not
    // in the log is refused as such, before anything is read.
    expect((await open({ lastEventId: '999999' })).status).to.equal(429);
    // The limit is the client's: another key's client still gets its streams.
    const other = await issueKey(h.db, 'b');
    expect((await open({}, other.key)).status).to.equal(200);
    // Once one of the two closes, the server sees it go and takes a new one.
    first.find((s) => s.status === 200)!.close();
    await eventually(
      async () => {
        const again = await open();
        return again.status === 200;
      },
      5000,
      'a stream accepted again after one closed',
    );
    expect((await open()).status).to.equal(429);
    // All closed: resumes that fail (410) keep no place, so both places are there afterwards.
    for (const s of streams) s.close();
    await eventually(async () => (await open({ lastEventId: '999999' })).status === 410);
    expect((await open({ lastEventId: '999999' })).status).to.equal(410);
    expect((await open()).status).to.equal(200);
    expect((await open()).status).to.equal(200);
    expect((await open()).status).to.equal(429);
  });

  it('gives back the place of a stream the server ends itself (its read of the log failed)', async () => {
    // Heartbeats every 30 ms: the stream reads the log again after each.
    await start({ eventsMaxStreamsPerClient: 1, eventsHeartbeatMs: 30 });
    const first = await open();
    expect(first.status).to.equal(200);
    await eventually(async () => first.comments.includes('connected'));
    expect((await open()).status).to.equal(429);
    // The log out of reach for a moment: the stream's next read fails and the server ends it
    // (the client would reconnect with Last-Event-ID). A place kept by a stream ended this way,
    // not by its client, would refuse every stream of this client from then on.
    await h.db.raw('ALTER TABLE job_events RENAME TO job_events_away');
    try {
      await first.ended;
    } finally {
      await h.db.raw('ALTER TABLE job_events_away RENAME TO job_events');
    }
    const again = await open();
    expect(again.status).to.equal(200);
    await eventually(async () => again.comments.includes('connected'));
  });

  it('ends open streams when the service stops, so stop() does not hang', async () => {
    await start();
    const stream = await open();
    await eventually(async () => stream.comments.includes('connected'));
    await h.service.stop();
    await stream.ended;
  });
});
