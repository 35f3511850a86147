/**
 * Push delivery's metrics (deliveries by outcome, latency, pending deliveries, open streams) and
 * its logs, which name deliveries and endpoints by id and never contain a secret, a URL (it may
 * carry a token) or a body.
 */
import { expect } from 'chai';
import { pino } from 'pino';
import { issueKey } from '../src/auth/keys.js';
import { type Service, startService } from '../src/service.js';
import { databaseUrl, eventually, freshDatabase } from './support/db.js';
import { type Harness, startHarness, submitJob, testConfig } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { pushConfig, register } from './support/push.js';
import { Receiver } from './support/receiver.js';
import { openEvents, serve } from './support/sse.js';
import supertest from 'supertest';

function sample(text: string, name: string, labels = ''): number {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('push delivery: metrics and logs', () => {
  let receiver: Receiver;
  beforeEach(async () => {
    receiver = await Receiver.start();
  });
  afterEach(() => receiver.close());

  describe('GET /metrics', () => {
    let h: Harness;
    afterEach(() => h.stop());

    it('counts deliveries by outcome, times them, and shows pending deliveries and open streams', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), config: pushConfig() });
      const server = await serve(h);
      try {
        const scrape = async () => (await h.http.get('/metrics').expect(200)).text;
        const before = await scrape();
        expect(before).to.contain('# TYPE merchant_webhook_delivery_duration_seconds histogram');
        expect(sample(before, 'merchant_webhook_deliveries_pending', 'status="pending"')).to.equal(
          0,
        );

        const { id } = await register(h, receiver);
        let calls = 0;
        receiver.answer = () => (++calls === 1 ? { status: 500 } : { status: 204 });
        await submitJob(h, 'Netflix');
        await eventually(async () => calls === 2);
        const stream = await openEvents(server.base, h.key.key);
        await eventually(async () => {
          const text = await scrape();
          return sample(text, 'merchant_webhook_deliveries_total', 'outcome="delivered"') === 1;
        });
        const after = await scrape();
        expect(sample(after, 'merchant_webhook_deliveries_total', 'outcome="retry"')).to.equal(1);
        expect(
          sample(after, 'merchant_webhook_delivery_duration_seconds_count', 'outcome="delivered"'),
        ).to.equal(1);
        expect(sample(after, 'merchant_event_streams_open')).to.equal(1);
        stream.close();

        // A disabled endpoint's delivery stays pending, and the gauge shows it.
        await h.http.patch(`/webhooks/${id}`).send({ enabled: false }).expect(200);
        await h
          .db('webhook_deliveries')
          .update({ status: 'pending', next_attempt_at: h.db.fn.now() });
        const pending = await scrape();
        expect(sample(pending, 'merchant_webhook_deliveries_pending', 'status="pending"')).to.equal(
          1,
        );
        await eventually(async () => sample(await scrape(), 'merchant_event_streams_open') === 0);
      } finally {
        await server.close();
      }
    });
  });

  describe('logs', () => {
    let service: Service;
    afterEach(() => service.stop());

    it('never contain a secret, the URL or a body, however the delivery goes', async () => {
      const lines: string[] = [];
      const log = pino({ level: 'trace' }, { write: (line: string) => lines.push(line) });
      const db = await freshDatabase();
      service = await startService(
        testConfig(databaseUrl(db), { config: pushConfig({ webhookRetryScheduleMs: [20] }) }),
        { log, heuristic: new TestHeuristic(echoAfter(0)), listen: false },
      );
      const stop = service.stop.bind(service);
      service = { ...service, stop: () => stop().then(() => db.destroy()) };
      const key = await issueKey(db, 'a');
      const http = supertest
        .agent(service.app.callback())
        .set('Authorization', `Bearer ${key.key}`);
      const url = `${receiver.url}/hook?token=url-secret-token-123`;
      const created = await http.post('/webhooks').send({ url }).expect(201);
      const rotated = await http.post(`/webhooks/${created.body.id}/rotate-secret`).expect(200);
      let calls = 0;
      receiver.answer = () => (++calls === 1 ? { status: 500 } : { status: 410 });
      await http
        .post('/normalize_merchant')
        .send(tx('BODY-MARKER-7Q2 Netflix', { reference: 'REF-MARKER-9Z' }))
        .expect(202);
      await eventually(
        async () => (await http.get(`/webhooks/${created.body.id}`)).body.enabled === false,
      );

      const text = lines.join('');
      expect(text).to.contain('webhook delivery failed');
      expect(text).to.contain('webhook endpoint disabled');
      expect(text).to.contain(created.body.id);
      for (const secret of [
        created.body.secret,
        rotated.body.secret,
        created.body.secret.slice(6),
        'url-secret-token-123',
        receiver.received[0]!.body,
        'BODY-MARKER-7Q2',
        'REF-MARKER-9Z',
        String(receiver.received[0]!.headers['webhook-signature']).slice(3),
      ]) {
        expect(text, 'a secret or a body in the logs').not.to.contain(secret);
      }
    });
  });
});
