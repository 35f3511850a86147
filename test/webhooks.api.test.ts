/**
 * The webhook management routes: register (secret shown once), read, change, delete, rotate the
 * secret (both secrets sign for 24 h), the delivery log; validation; another client's endpoint
 * is a 404 everywhere.
 */
import { expect } from 'chai';
import { issueKey } from '../src/auth/keys.js';
import { eventually } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';
import { expectProblem } from './support/problem.js';
import { Receiver } from './support/receiver.js';
import { pushConfig, register } from './support/push.js';

const ALL = ['job.succeeded', 'job.failed', 'job.canceled', 'batch.completed'];
const UNKNOWN = '00000000-0000-4000-8000-000000000000';

describe('webhook endpoints (/webhooks)', () => {
  let h: Harness;
  let receiver: Receiver;
  beforeEach(async () => {
    receiver = await Receiver.start();
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), config: pushConfig() });
  });
  afterEach(async () => {
    await h.stop();
    await receiver.close();
  });

  describe('POST /webhooks', () => {
    it('registers an endpoint: 201, Location, every event type by default, the secret shown once', async () => {
      const res = await h.http
        .post('/webhooks')
        .send({ url: `${receiver.url}/hook`, description: 'orders service' })
        .expect(201);
      expect(res.headers.location).to.equal(`/webhooks/${res.body.id}`);
      expect(res.body).to.include({
        url: `${receiver.url}/hook`,
        description: 'orders service',
        enabled: true,
        disabled_reason: null,
        deliveries: `/webhooks/${res.body.id}/deliveries`,
      });
      expect(res.body.events).to.deep.equal(ALL);
      expect(res.body.secret).to.match(/^whsec_[A-Za-z0-9+/]{43}=$/);
      expect(Buffer.from(res.body.secret.slice(6), 'base64')).to.have.length(32);
      const read = await h.http.get(`/webhooks/${res.body.id}`).expect(200);
      expect(read.body).not.to.have.property('secret');
      const { secret: _secret, ...shown } = res.body;
      expect(read.body).to.deep.equal(shown);
      const list = await h.http.get('/webhooks').expect(200);
      expect(list.body.webhooks).to.deep.equal([read.body]);
      expect(JSON.stringify(list.body)).not.to.include(res.body.secret);
    });

    it('keeps the event types asked for, each once, in a fixed order', async () => {
      const res = await h.http
        .post('/webhooks')
        .send({ url: `${receiver.url}/x`, events: ['batch.completed', 'job.failed'] })
        .expect(201);
      expect(res.body.events).to.deep.equal(['job.failed', 'batch.completed']);
    });

    it('refuses a bad body with a 422 naming each field', async () => {
      const cases: [unknown, string, RegExp][] = [
        [{}, '/url', /is required/],
        [{ url: 42 }, '/url', /absolute https:\/\/ URL/],
        [{ url: 'not a url' }, '/url', /absolute URL/],
        [{ url: `${receiver.url}/x`, events: [] }, '/events', /non-empty list/],
        [{ url: `${receiver.url}/x`, events: ['job.exploded'] }, '/events/0', /event types/],
        [{ url: `${receiver.url}/x`, events: ['job.failed', 'job.failed'] }, '/events', /distinct/],
        [{ url: `${receiver.url}/x`, description: '' }, '/description', /1 to 500/],
        [{ url: `${receiver.url}/x`, secret: 'whsec_mine' }, '/secret', /not a known field/],
      ];
      for (const [body, pointer, detail] of cases) {
        const res = await h.http
          .post('/webhooks')
          .send(body as object)
          .expect(422);
        expectProblem(res, '/problems/validation-error', 422);
        const error = res.body.errors.find((e: { pointer: string }) => e.pointer === pointer);
        expect(error?.detail, JSON.stringify(body)).to.match(detail);
      }
      await h.http.post('/webhooks').set('Content-Type', 'text/plain').send('x').expect(415);
      expect((await h.http.get('/webhooks')).body.webhooks).to.deep.equal([]);
    });

    it('allows at most 20 endpoints per client (409), counted per client', async () => {
      for (let i = 0; i < 20; i++) {
        await h.http
          .post('/webhooks')
          .send({ url: `${receiver.url}/${i}` })
          .expect(201);
      }
      const res = await h.http
        .post('/webhooks')
        .send({ url: `${receiver.url}/21` })
        .expect(409);
      expectProblem(res, '/problems/webhook-limit', 409);
      expect(res.body.limit).to.equal(20);
      const other = await issueKey(h.db, 'b');
      await h
        .as(other.key)
        .post('/webhooks')
        .send({ url: `${receiver.url}/b` })
        .expect(201);
    });

    it('needs an API key', async () => {
      await h.anon
        .post('/webhooks')
        .send({ url: `${receiver.url}/x` })
        .expect(401);
      await h.anon.get('/webhooks').expect(401);
      await h.anon.get('/events').expect(401);
    });
  });

  describe('PATCH and DELETE /webhooks/{id}', () => {
    it('changes url, events, description; disables (manual) and enables', async () => {
      const { id } = await register(h, receiver);
      const changed = await h.http
        .patch(`/webhooks/${id}`)
        .send({ url: `${receiver.url}/v2`, events: ['job.failed'], description: 'v2' })
        .expect(200);
      expect(changed.body).to.include({ url: `${receiver.url}/v2`, description: 'v2' });
      expect(changed.body.events).to.deep.equal(['job.failed']);
      const off = await h.http.patch(`/webhooks/${id}`).send({ enabled: false }).expect(200);
      expect(off.body).to.include({ enabled: false, disabled_reason: 'manual' });
      expect(off.body.disabled_at).to.be.a('string');
      const on = await h.http
        .patch(`/webhooks/${id}`)
        .send({ enabled: true, description: null })
        .expect(200);
      expect(on.body).to.include({
        enabled: true,
        disabled_reason: null,
        disabled_at: null,
        description: null,
      });
    });

    it('refuses an empty change and a bad field', async () => {
      const { id } = await register(h, receiver);
      const empty = await h.http.patch(`/webhooks/${id}`).send({}).expect(422);
      expect(empty.body.errors[0]).to.deep.equal({
        pointer: '',
        detail: 'must change at least one of url, events, description, enabled',
      });
      const bad = await h.http.patch(`/webhooks/${id}`).send({ enabled: 'yes' }).expect(422);
      expect(bad.body.errors[0]).to.deep.equal({
        pointer: '/enabled',
        detail: 'must be true or false',
      });
    });

    it('deletes an endpoint and its delivery log: 204, then 404', async () => {
      const { id } = await register(h, receiver);
      await submitJob(h, 'Netflix');
      await eventually(async () => receiver.received.length === 1);
      await eventually(
        async () => (await h.db('webhook_deliveries').where({ status: 'delivered' })).length === 1,
      );
      await h.http.delete(`/webhooks/${id}`).expect(204);
      await h.http.get(`/webhooks/${id}`).expect(404);
      await h.http.delete(`/webhooks/${id}`).expect(404);
      expect(await h.db('webhook_deliveries').count('* as n')).to.deep.equal([{ n: '0' }]);
    });
  });

  describe('POST /webhooks/{id}/rotate-secret', () => {
    it('returns a new secret; for 24 h both secrets sign every message', async () => {
      const { id, secret: old } = await register(h, receiver);
      const res = await h.http.post(`/webhooks/${id}/rotate-secret`).expect(200);
      expect(res.body.secret)
        .to.match(/^whsec_/)
        .and.not.equal(old);
      const expires = Date.parse(res.body.previous_secret_expires_at);
      expect(expires - Date.now()).to.be.closeTo(24 * 3600 * 1000, 60_000);
      receiver.secrets = [old, res.body.secret];
      await submitJob(h, 'Netflix');
      await eventually(async () => receiver.received.length === 1);
      const [message] = receiver.received;
      expect(message!.verifiedWith).to.deep.equal([0, 1]);
      expect(String(message!.headers['webhook-signature']).split(' ')).to.have.length(2);
      // After the grace period only the new one signs.
      await h
        .db('webhook_endpoints')
        .update({ previous_secret_expires_at: h.db.raw("now() - interval '1 second'") });
      await submitJob(h, 'Spotify');
      await eventually(async () => receiver.received.length === 2);
      expect(receiver.received[1]!.verifiedWith).to.deep.equal([1]);
      expect((await h.http.get(`/webhooks/${id}`)).body.previous_secret_expires_at).to.equal(null);
    });
  });

  describe('GET /webhooks/{id}/deliveries', () => {
    it('pages through the log, newest event first', async () => {
      const { id } = await register(h, receiver);
      for (const name of ['A', 'B', 'C']) await submitJob(h, name);
      await eventually(async () => receiver.received.length === 3);
      const first = await h.http.get(`/webhooks/${id}/deliveries?limit=2`).expect(200);
      expect(first.body.deliveries).to.have.length(2);
      expect(first.headers.link).to.include('rel="next"');
      const second = await h.http
        .get(`/webhooks/${id}/deliveries?limit=2&cursor=${first.body.next_cursor}`)
        .expect(200);
      expect(second.body.next_cursor).to.equal(null);
      const ids = [...first.body.deliveries, ...second.body.deliveries].map((d) =>
        Number(d.event_id),
      );
      expect(ids).to.have.length(3);
      expect([...ids].sort((a, b) => b - a)).to.deep.equal(ids);
      await h.http.get(`/webhooks/${id}/deliveries?cursor=bm9wZQ`).expect(400);
    });
  });

  describe('GET /webhooks/{id} health', () => {
    it('counts pending deliveries while the endpoint fails, and none once it is delivered to', async () => {
      // Retries a minute apart: failed deliveries stay pending while the test looks.
      await h.stop();
      h = await startHarness({
        heuristic: new TestHeuristic(echoAfter(0)),
        config: pushConfig({ webhookRetryScheduleMs: [60_000] }),
      });
      receiver.answer = () => ({ status: 500 });
      const { id } = await register(h, receiver);
      const fresh = (await h.http.get(`/webhooks/${id}`).expect(200)).body;
      expect(fresh).to.include({ pending_deliveries: 0, failing_since: null });
      for (const name of ['A', 'B']) await submitJob(h, name);
      await eventually(async () => receiver.received.length === 2);
      const sick = await eventually(async () => {
        const res = await h.http.get(`/webhooks/${id}`).expect(200);
        return res.body.last_failure_at !== null && res.body.pending_deliveries === 2 && res.body;
      });
      expect(sick.failing_since).to.be.a('string');
      expect(sick.last_success_at).to.equal(null);

      receiver.answer = () => ({ status: 204 });
      const { deliveries } = (await h.http.get(`/webhooks/${id}/deliveries`).expect(200)).body;
      for (const d of deliveries as { id: string }[]) {
        await h.http.post(`/webhooks/${id}/deliveries/${d.id}/redeliver`).expect(202);
      }
      const healthy = await eventually(async () => {
        const res = await h.http.get(`/webhooks/${id}`).expect(200);
        return res.body.pending_deliveries === 0 && res.body.failing_since === null && res.body;
      });
      expect(healthy.last_success_at).to.be.a('string');
      const [listed] = (await h.http.get('/webhooks').expect(200)).body.webhooks;
      expect(listed).to.include({ id, pending_deliveries: 0 });
    });
  });

  it("answers 404 for another client's endpoint on every route, and lists only one's own", async () => {
    const { id } = await register(h, receiver);
    await submitJob(h, 'Netflix');
    await eventually(async () => receiver.received.length === 1);
    const [delivery] = (await h.http.get(`/webhooks/${id}/deliveries`)).body.deliveries;
    const b = h.as((await issueKey(h.db, 'b')).key);
    await b.get(`/webhooks/${id}`).expect(404);
    await b.patch(`/webhooks/${id}`).send({ enabled: false }).expect(404);
    await b.delete(`/webhooks/${id}`).expect(404);
    await b.post(`/webhooks/${id}/rotate-secret`).expect(404);
    await b.get(`/webhooks/${id}/deliveries`).expect(404);
    await b.post(`/webhooks/${id}/deliveries/${delivery.id}/redeliver`).expect(404);
    expect((await b.get('/webhooks').expect(200)).body.webhooks).to.deep.equal([]);
    for (const bad of [UNKNOWN, 'nope', '%zz']) await h.http.get(`/webhooks/${bad}`).expect(404);
    // Nothing changed for the owner.
    expect((await h.http.get(`/webhooks/${id}`)).body.enabled).to.equal(true);
  });
});
