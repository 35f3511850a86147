/**
 * Webhook delivery against a real receiver on loopback that verifies every signature with the
 * `standardwebhooks` library: what is sent, retries with a stable webhook-id, 410 and failing
 * endpoints disabled, the per-endpoint cap, the delivery log and redelivery.
 */
import { expect } from 'chai';
import { NonRetryableError } from '../src/heuristic/errors.js';
import { randomUUID } from 'node:crypto';
import { createLogger } from '../src/log.js';
import { type Service, startService } from '../src/service.js';
import { clientId, databaseUrl, eventually, insertPending } from './support/db.js';
import { type Harness, startHarness, submitJob, testConfig } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { pushConfig, register } from './support/push.js';
import { Receiver } from './support/receiver.js';

/** Echoes, except: "Fail…" fails at once, "Hold…" runs until canceled. */
const scripted = new TestHeuristic(async (t, signal, call) => {
  if (t.description.startsWith('Fail')) throw new NonRetryableError('no such merchant');
  if (t.description.startsWith('Hold')) {
    await new Promise((_, reject) =>
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }),
    );
  }
  return echoAfter(0)(t, signal, call);
});

describe('webhook delivery', () => {
  let h: Harness;
  let receiver: Receiver;
  beforeEach(async () => {
    receiver = await Receiver.start();
  });
  afterEach(async () => {
    await h.stop();
    await receiver.close();
  });

  it('sends every event type, signed per Standard Webhooks, with the resource exactly as GET returns it', async () => {
    h = await startHarness({ heuristic: scripted, config: pushConfig() });
    const endpoint = await register(h, receiver);
    const batch = await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('Netflix'), tx('Fail here')] })
      .expect(202);
    const held = await submitJob(h, 'Hold on');
    await eventually(
      async () =>
        h.runner.busySlots > 0 && (await h.http.get(`/jobs/${held.id}`)).body.status === 'running',
    );
    await h.http.delete(`/jobs/${held.id}`).expect(200);

    await eventually(async () => receiver.received.length >= 4, 10_000, '4 deliveries');
    expect(
      receiver.received.every((r) => r.verified !== undefined),
      'every signature verifies',
    ).to.equal(true);
    const byType = Object.fromEntries(receiver.messages.map((m) => [m.type, m]));
    expect(Object.keys(byType).sort()).to.deep.equal([
      'batch.completed',
      'job.canceled',
      'job.failed',
      'job.succeeded',
    ]);
    const [netflixId, failId] = batch.body.job_ids as string[];
    expect(byType['job.succeeded']?.data).to.deep.equal(
      (await h.http.get(`/jobs/${netflixId}`)).body,
    );
    expect(byType['job.failed']?.data).to.deep.equal((await h.http.get(`/jobs/${failId}`)).body);
    expect(byType['job.canceled']?.data).to.deep.equal((await h.http.get(`/jobs/${held.id}`)).body);
    expect(byType['batch.completed']?.data).to.deep.equal(
      (await h.http.get(`/batches/${batch.body.id}`)).body,
    );
    for (const m of receiver.messages)
      expect(Date.parse(m.timestamp)).to.be.a('number').and.not.NaN;

    const first = receiver.received[0]!;
    expect(first.headers['content-type']).to.equal('application/json');
    expect(first.headers['webhook-signature']).to.match(/^v1,[A-Za-z0-9+/=]+$/);
    expect(Number(first.headers['webhook-timestamp'])).to.be.closeTo(Date.now() / 1000, 60);
    // The webhook-id of each is its delivery's id, and the log says delivered.
    const log = await eventually(async () => {
      const page = await h.http.get(`/webhooks/${endpoint.id}/deliveries`).expect(200);
      const done = page.body.deliveries.every((d: { status: string }) => d.status !== 'delivering');
      return done && page;
    });
    expect(log.body.deliveries).to.have.length(4);
    expect(log.body.deliveries.map((d: { status: string }) => d.status)).to.deep.equal(
      Array(4).fill('delivered'),
    );
    expect(new Set(log.body.deliveries.map((d: { id: string }) => d.id))).to.deep.equal(
      new Set(receiver.received.map((r) => r.headers['webhook-id'])),
    );
  });

  it('costs finishing jobs nothing while no endpoint is enabled: no fan-out round runs', async () => {
    h = await startHarness({ heuristic: scripted, config: pushConfig() });
    const cursorVersion = async () =>
      (await h.db.raw<{ rows: { v: string }[] }>(`SELECT xmin::text AS v FROM webhook_fanout`))
        .rows[0]?.v;
    const before = await cursorVersion();
    for (let i = 0; i < 10; i++) await submitJob(h, `Shop ${i}`);
    await eventually(
      async () => (await h.db('job_events').count<{ n: string }[]>('* as n'))[0]?.n === '10',
    );
    await h.service.feed.idle();
    expect(await cursorVersion(), 'the cursor row was not touched').to.equal(before);
    expect(await h.db('webhook_deliveries').count<{ n: string }[]>('* as n')).to.deep.equal([
      { n: '0' },
    ]);
    // With an endpoint, the next round moves the cursor past all of them at once.
    await register(h, receiver);
    const after = await submitJob(h, 'Netflix');
    await eventually(async () => receiver.received.length === 1);
    expect(receiver.messages.map((m) => m.data.id)).to.deep.equal([after.id]);
    expect(await cursorVersion()).not.to.equal(before);
  });

  it('a process that starts while an older transaction holds events back fans them out when it ends', async () => {
    h = await startHarness({ heuristic: scripted, config: pushConfig(), startRunner: false });
    // An endpoint the running service has not heard of (no NOTIFY), so it fans nothing out.
    await h.db('webhook_endpoints').insert({
      id: randomUUID(),
      client_id: await clientId(h.db, 'a'),
      url: `${receiver.url}/hook`,
      event_types: ['job.canceled'],
      secret: 'whsec_' + Buffer.alloc(32, 3).toString('base64'),
    });
    receiver.secrets.push('whsec_' + Buffer.alloc(32, 3).toString('base64'));
    const trx = await h.db.transaction();
    let second: Service | undefined;
    try {
      await trx.raw('SELECT pg_current_xact_id()');
      const job = await insertPending(h.db, 'Held');
      await h.http.delete(`/jobs/${job.id}`).expect(200);
      const cursorVersion = async () =>
        (await h.db.raw<{ rows: { v: string }[] }>(`SELECT xmin::text AS v FROM webhook_fanout`))
          .rows[0]?.v;
      const before = await cursorVersion();
      // A second process starts now: the event was committed before it listened.
      second = await startService(testConfig(databaseUrl(h.db), { config: pushConfig() }), {
        log: createLogger('silent'),
        heuristic: scripted,
        listen: false,
        startRunner: false,
      });
      // Its first fan-out round has run (and found the event held back)...
      await eventually(async () => (await cursorVersion()) !== before, 10_000, 'a fan-out round');
      expect(receiver.received).to.deep.equal([]);
      // ...and it goes on looking until the older transaction ends.
      await trx.commit();
      await eventually(async () => receiver.messages.length === 1, 10_000, 'the held-back event');
      expect(receiver.messages[0]?.data.id).to.equal(job.id);
    } finally {
      if (!trx.isCompleted()) await trx.rollback();
      await second?.stop();
    }
  });

  it('a signature made with another secret does not verify (the receiver can tell)', async () => {
    h = await startHarness({ heuristic: scripted, config: pushConfig() });
    await register(h, receiver);
    receiver.secrets = ['whsec_' + Buffer.alloc(32, 7).toString('base64')];
    await submitJob(h, 'Netflix');
    await eventually(async () => receiver.received.length === 1);
    expect(receiver.received[0]!.verified).to.equal(undefined);
  });

  it('sends only the event types an endpoint asked for, and none to a disabled one', async () => {
    h = await startHarness({ heuristic: scripted, config: pushConfig() });
    await register(h, receiver, { events: ['job.failed'] }, '/failed-only');
    const off = await register(h, receiver, {}, '/off');
    await h.http.patch(`/webhooks/${off.id}`).send({ enabled: false }).expect(200);
    const ok = await submitJob(h, 'Netflix');
    const failed = await submitJob(h, 'Fail now');
    await fannedOut(h, ok.id);
    await fannedOut(h, failed.id);
    await eventually(async () => receiver.received.length >= 1);
    const log = await h.http.get(`/webhooks/${off.id}/deliveries`).expect(200);
    expect(log.body.deliveries).to.deep.equal([]);
    expect(receiver.received.map((r) => r.path)).to.deep.equal(['/failed-only']);
    expect(receiver.messages[0]?.data.id).to.equal(failed.id);
  });

  it('retries a receiver that is down until it is back: every event arrives, one webhook-id per delivery across its attempts', async () => {
    h = await startHarness({
      heuristic: scripted,
      config: pushConfig({ webhookRetryScheduleMs: [100, 100, 100, 100, 100, 100, 100, 100] }),
    });
    await register(h, receiver);
    // Down in two ways: first answering 503, then not listening at all.
    receiver.answer = () => ({ status: 503 });
    const jobs = [await submitJob(h, 'Netflix'), await submitJob(h, 'Spotify')];
    await eventually(async () => receiver.received.length >= 4, 10_000, 'failed attempts');
    await receiver.down();
    const attemptsWhileDown = receiver.received.length;
    await eventually(
      async () => {
        const id = (await h.http.get('/webhooks')).body.webhooks[0].id;
        const log = await h.http.get(`/webhooks/${id}/deliveries`);
        return log.body.deliveries.every((d: { last_error: string | null }) =>
          d.last_error?.includes('ECONNREFUSED'),
        );
      },
      10_000,
      'connection refused recorded',
    );
    receiver.answer = () => ({ status: 200 });
    await receiver.up();
    const endpointId = (await h.http.get('/webhooks')).body.webhooks[0].id;
    await eventually(
      async () => {
        const log = await h.http.get(`/webhooks/${endpointId}/deliveries`);
        return (
          log.body.deliveries.filter((d: { status: string }) => d.status === 'delivered').length ===
          2
        );
      },
      10_000,
      'both delivered',
    );
    expect(receiver.received.length, 'attempts after it came back').to.be.above(attemptsWhileDown);
    const ids = new Map<string, Set<string>>();
    for (const r of receiver.received) {
      const jobId = (JSON.parse(r.body) as { data: { id: string } }).data.id;
      const set = ids.get(jobId) ?? new Set();
      set.add(String(r.headers['webhook-id']));
      ids.set(jobId, set);
    }
    expect([...ids.keys()].sort()).to.deep.equal(jobs.map((j) => j.id).sort());
    for (const set of ids.values()) expect(set.size, 'one webhook-id for all attempts').to.equal(1);
    expect(receiver.received.every((r) => r.verified !== undefined)).to.equal(true);
  });

  it('fails a delivery when its retries are used up, and records why', async () => {
    h = await startHarness({
      heuristic: scripted,
      config: pushConfig({ webhookRetryScheduleMs: [20, 20] }),
    });
    const endpoint = await register(h, receiver);
    receiver.answer = () => ({ status: 500 });
    await submitJob(h, 'Netflix');
    const delivery = await eventually(async () => {
      const log = await h.http.get(`/webhooks/${endpoint.id}/deliveries`).expect(200);
      const d = log.body.deliveries[0];
      return d?.status === 'failed' && d;
    });
    expect(delivery).to.include({
      attempts: 3,
      last_status: 500,
      last_error: 'HTTP 500',
      next_attempt_at: null,
    });
    expect(receiver.received).to.have.length(3);
    const status = (await h.http.get(`/webhooks/${endpoint.id}`)).body;
    expect(status.enabled).to.equal(true);
    expect(status.failing_since).to.be.a('string');
  });

  it('does not follow redirects: a 3xx is a failed attempt', async () => {
    h = await startHarness({
      heuristic: scripted,
      config: pushConfig({ webhookRetryScheduleMs: [] }),
    });
    const endpoint = await register(h, receiver);
    receiver.answer = (r) =>
      r.path === '/hook' ? { status: 302, headers: { location: '/elsewhere' } } : { status: 200 };
    await submitJob(h, 'Netflix');
    const delivery = await eventually(async () => {
      const d = (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries[0];
      return d?.status === 'failed' && d;
    });
    expect(delivery.last_error).to.equal('redirect not followed (HTTP 302)');
    expect(receiver.received.map((r) => r.path)).to.deep.equal(['/hook']);
  });

  it('gives up on an attempt after WEBHOOK_TIMEOUT_MS and retries it', async () => {
    h = await startHarness({
      heuristic: scripted,
      config: pushConfig({ webhookTimeoutMs: 300, webhookRetryScheduleMs: [20] }),
    });
    const endpoint = await register(h, receiver);
    let calls = 0;
    receiver.answer = () => (++calls === 1 ? 'hang' : { status: 204 });
    await submitJob(h, 'Netflix');
    const delivery = await eventually(async () => {
      const d = (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries[0];
      return d?.status === 'delivered' && d;
    });
    expect(delivery.attempts).to.equal(2);
    expect(receiver.received[0]!.headers['webhook-id']).to.equal(
      receiver.received[1]!.headers['webhook-id'],
    );
  });

  it('410 disables the endpoint: its status says so, nothing more is sent until it is enabled', async () => {
    h = await startHarness({ heuristic: scripted, config: pushConfig() });
    const endpoint = await register(h, receiver);
    receiver.answer = () => ({ status: 410 });
    await submitJob(h, 'Netflix');
    const disabled = await eventually(async () => {
      const body = (await h.http.get(`/webhooks/${endpoint.id}`)).body;
      return body.enabled === false && body;
    });
    expect(disabled).to.include({ disabled_reason: 'gone' });
    expect(disabled.disabled_at).to.be.a('string');
    const first = (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries[0];
    expect(first).to.include({ status: 'failed', last_status: 410 });

    // Another endpoint keeps the fan-out running past the disabled one's events.
    const other = await Receiver.start();
    try {
      await register(h, other);
      const missed = await submitJob(h, 'Spotify');
      await fannedOut(h, missed.id);
      await eventually(async () => other.received.length === 1);
      receiver.answer = () => ({ status: 204 });
      expect(receiver.received).to.have.length(1);
      // Enabled again: what happened while it was disabled is not sent; new events are.
      await h.http.patch(`/webhooks/${endpoint.id}`).send({ enabled: true }).expect(200);
      const later = await submitJob(h, 'Hulu');
      await eventually(async () => receiver.received.length === 2);
      expect(receiver.messages.at(-1)?.data.id).to.equal(later.id);
      const log = await eventually(async () => {
        const page = (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries;
        return page[0]?.status !== 'delivering' && page;
      });
      expect(log.map((d: { status: string }) => d.status)).to.deep.equal(['delivered', 'failed']);
    } finally {
      await other.close();
    }
  });

  it('disables an endpoint that has failed without a success for WEBHOOK_DISABLE_AFTER_MS', async () => {
    h = await startHarness({
      heuristic: scripted,
      config: pushConfig({
        webhookDisableAfterMs: 1000,
        webhookRetryScheduleMs: Array(50).fill(100),
      }),
    });
    const endpoint = await register(h, receiver);
    receiver.answer = () => ({ status: 500 });
    await submitJob(h, 'Netflix');
    const disabled = await eventually(async () => {
      const body = (await h.http.get(`/webhooks/${endpoint.id}`)).body;
      return body.enabled === false && body;
    });
    expect(disabled.disabled_reason).to.equal('failing');
    expect(Date.parse(disabled.disabled_at) - Date.parse(disabled.failing_since)).to.be.at.least(
      1000,
    );
    const attempts = receiver.received.length;
    // The delivery waits (pending) while the endpoint is disabled.
    const pending = (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries[0];
    expect(pending.status).to.equal('pending');
    receiver.answer = () => ({ status: 204 });
    await h.http.patch(`/webhooks/${endpoint.id}`).send({ enabled: true }).expect(200);
    await eventually(
      async () =>
        (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries[0].status ===
        'delivered',
    );
    expect(receiver.received.length).to.equal(attempts + 1);
    const healthy = (await h.http.get(`/webhooks/${endpoint.id}`)).body;
    expect(healthy).to.include({ enabled: true, disabled_reason: null, failing_since: null });
  });

  it('holds at most WEBHOOK_ENDPOINT_CONCURRENCY deliveries in flight to a slow endpoint while another endpoint is served', async () => {
    h = await startHarness({
      heuristic: scripted,
      config: pushConfig({ webhookConcurrency: 8, webhookEndpointConcurrency: 2 }),
    });
    const slow = await Receiver.start();
    try {
      await register(h, slow, { events: ['job.succeeded'] });
      slow.answer = () => ({ status: 204, delayMs: 300 });
      await register(h, receiver, { events: ['batch.completed'] });
      const batch = await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: Array.from({ length: 10 }, (_, i) => tx(`Shop ${i}`)) })
        .expect(202);
      // The fast endpoint gets its event while the slow one still works through its ten.
      await eventually(async () => receiver.received.length === 1);
      expect(slow.received.length).to.be.below(10);
      expect(receiver.messages[0]?.data.id).to.equal(batch.body.id);
      await eventually(async () => slow.received.length === 10, 15_000, 'all ten at the slow one');
      expect(slow.maxInFlight).to.equal(2);
    } finally {
      await slow.close();
    }
  });

  it('does not poll while an endpoint with a backlog has all its slots in flight', async () => {
    h = await startHarness({
      heuristic: scripted,
      config: pushConfig({ webhookEndpointConcurrency: 1 }),
    });
    await register(h, receiver);
    receiver.answer = () => ({ status: 204, delayMs: 1500 });
    let claims = 0;
    h.service.db.on('query', (q: { sql: string }) => {
      if (q.sql.includes('FOR NO KEY UPDATE OF e SKIP LOCKED')) claims++;
    });
    for (const name of ['A', 'B', 'C']) await submitJob(h, name);
    await eventually(async () => receiver.received.length === 1);
    const before = claims;
    // While the one slot is busy for 1.5 s, the other two wait without being asked for.
    await eventually(async () => receiver.received.length === 2, 10_000);
    expect(claims - before, 'claim statements while the endpoint was full').to.be.below(10);
  });

  it('redelivers a delivered message with the same webhook-id and a fresh schedule', async () => {
    h = await startHarness({ heuristic: scripted, config: pushConfig() });
    const endpoint = await register(h, receiver);
    await submitJob(h, 'Netflix');
    await eventually(async () => receiver.received.length === 1);
    const [delivery] = (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries;
    await eventually(
      async () =>
        (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries[0].status ===
        'delivered',
    );
    const res = await h.http
      .post(`/webhooks/${endpoint.id}/deliveries/${delivery.id}/redeliver`)
      .expect(202);
    expect(res.body).to.include({ id: delivery.id, status: 'pending' });
    await eventually(async () => receiver.received.length === 2);
    expect(receiver.received[1]!.headers['webhook-id']).to.equal(delivery.id);
    expect(receiver.received[1]!.body).to.equal(receiver.received[0]!.body);
    const after = await eventually(async () => {
      const d = (await h.http.get(`/webhooks/${endpoint.id}/deliveries`)).body.deliveries[0];
      return d.status === 'delivered' && d;
    });
    expect(after.attempts).to.equal(2);
    await h.http
      .post(`/webhooks/${endpoint.id}/deliveries/00000000-0000-4000-8000-000000000000/redeliver`)
      .expect(404);
  });
});

/** Resolves once the fan-out has passed job `jobId`'s event. */
async function fannedOut(h: Harness, jobId: string): Promise<void> {
  await eventually(
    async () => {
      const res = await h.db.raw<{ rows: { done: boolean }[] }>(
        `SELECT (e.tx_id, e.id) <= (f.tx_id, f.event_id) AS done
       FROM job_events e, webhook_fanout f WHERE e.job_id = ?`,
        [jobId],
      );
      return res.rows[0]?.done === true;
    },
    10_000,
    'fanned out',
  );
}
