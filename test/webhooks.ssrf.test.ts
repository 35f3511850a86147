/**
 * SSRF protection, with WEBHOOK_ALLOW_PRIVATE off: every class of non-public address is refused
 * at registration (literal or through DNS), checked again at delivery, and an attempt connects
 * to the address that was checked, not to whatever DNS says a moment later.
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { clientId, eventually } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';
import { pushConfig } from './support/push.js';
import { Receiver } from './support/receiver.js';
import { sendWebhook } from '../src/push/send.js';
import { type Resolved, checkUrl } from '../src/push/ssrf.js';

const refused: [url: string, class_: string][] = [
  ['https://127.0.0.1/hook', 'loopback'],
  ['https://127.8.9.10/hook', 'loopback'],
  ['https://[::1]/hook', 'loopback'],
  ['https://10.0.0.5/hook', 'private'],
  ['https://172.16.3.4/hook', 'private'],
  ['https://172.31.255.255/hook', 'private'],
  ['https://192.168.1.1/hook', 'private'],
  ['https://169.254.169.254/latest/meta-data/', 'linkLocal'],
  ['https://169.254.1.1/hook', 'linkLocal'],
  ['https://[fe80::1]/hook', 'linkLocal'],
  ['https://100.64.0.1/hook', 'carrierGradeNat'],
  ['https://100.100.100.200/hook', 'carrierGradeNat'],
  ['https://[fd00:ec2::254]/hook', 'uniqueLocal'],
  ['https://[fc00::1]/hook', 'uniqueLocal'],
  ['https://[::ffff:127.0.0.1]/hook', 'IPv4-mapped loopback'],
  ['https://[::ffff:10.0.0.1]/hook', 'IPv4-mapped private'],
  ['https://[::ffff:169.254.169.254]/hook', 'IPv4-mapped linkLocal'],
  ['https://0.0.0.0/hook', 'unspecified'],
  ['https://[::]/hook', 'unspecified'],
  ['https://224.0.0.1/hook', 'multicast'],
  ['https://255.255.255.255/hook', 'broadcast'],
  ['https://192.0.2.10/hook', 'reserved'],
  // Spelled so that a naive string check would pass them; the URL parser normalizes them.
  ['https://2130706433/hook', 'loopback'],
  ['https://0x7f000001/hook', 'loopback'],
  ['https://127.1/hook', 'loopback'],
  // Through DNS: localhost resolves to loopback.
  ['https://localhost/hook', 'loopback'],
];

describe('webhook SSRF protection (WEBHOOK_ALLOW_PRIVATE off)', () => {
  let h: Harness;
  let receiver: Receiver;
  beforeEach(async () => {
    receiver = await Receiver.start();
    h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      config: pushConfig({ webhookAllowPrivate: false, webhookRetryScheduleMs: [] }),
    });
  });
  afterEach(async () => {
    await h.stop();
    await receiver.close();
  });

  it('refuses every non-public address class at registration, naming the class', async () => {
    for (const [url, class_] of refused) {
      const res = await h.http.post('/webhooks').send({ url }).expect(422);
      expect(res.body.errors, url).to.have.length(1);
      expect(res.body.errors[0].pointer, url).to.equal('/url');
      expect(res.body.errors[0].detail, url).to.include(`not a public address (${class_})`);
    }
    expect((await h.http.get('/webhooks')).body.webhooks).to.deep.equal([]);
  });

  it('accepts a public address', async () => {
    await h.http.post('/webhooks').send({ url: 'https://93.184.216.34/hook' }).expect(201);
    await h.http.post('/webhooks').send({ url: 'https://[2606:4700::1111]/hook' }).expect(201);
  });

  it('refuses plain http, other schemes and credentials in the URL', async () => {
    const cases: [string, RegExp][] = [
      [
        'http://93.184.216.34/hook',
        /https:\/\/ URL \(plain http is allowed only with WEBHOOK_ALLOW_PRIVATE/,
      ],
      ['ftp://93.184.216.34/hook', /https:\/\/ URL/],
      ['file:///etc/passwd', /https:\/\/ URL/],
      ['https://user:pass@93.184.216.34/hook', /credentials/],
    ];
    for (const [url, detail] of cases) {
      const res = await h.http.post('/webhooks').send({ url }).expect(422);
      expect(res.body.errors[0].detail, url).to.match(detail);
    }
  });

  it('refuses a private address on PATCH too', async () => {
    const created = await h.http
      .post('/webhooks')
      .send({ url: 'https://93.184.216.34/hook' })
      .expect(201);
    const res = await h.http
      .patch(`/webhooks/${created.body.id}`)
      .send({ url: 'https://169.254.169.254/latest/meta-data/' })
      .expect(422);
    expect(res.body.errors[0].detail).to.include('linkLocal');
    expect((await h.http.get(`/webhooks/${created.body.id}`)).body.url).to.equal(
      'https://93.184.216.34/hook',
    );
  });

  it('checks again at delivery: an endpoint whose address is not public (any more) gets nothing', async () => {
    // As if it had been registered while allowed, or its DNS changed since: straight into the table.
    const id = randomUUID();
    await h.db('webhook_endpoints').insert({
      id,
      client_id: await clientId(h.db, 'a'),
      url: `https://127.0.0.1:${new URL(receiver.url).port}/hook`,
      event_types: ['job.succeeded'],
      secret: 'whsec_' + Buffer.alloc(32, 1).toString('base64'),
    });
    await h.db.raw(`SELECT pg_notify('merchant_webhooks', 'endpoints')`);
    await submitJob(h, 'Netflix');
    const delivery = await eventually(async () => {
      const d = (await h.http.get(`/webhooks/${id}/deliveries`)).body.deliveries[0];
      return d?.status === 'failed' && d;
    });
    expect(delivery.last_error).to.equal(
      'refused: resolves to 127.0.0.1, which is not a public address (loopback); only public addresses are allowed',
    );
    expect(delivery.last_status).to.equal(null);
    expect(receiver.received).to.deep.equal([]);
  });
});

describe('webhook address checks (ssrf.ts, send.ts)', () => {
  /** A resolver that answers each lookup with the next answer, and counts lookups. */
  function scriptedResolver(...answers: Resolved[][]) {
    const calls: string[] = [];
    const resolve = async (host: string) => {
      calls.push(host);
      return answers[Math.min(calls.length, answers.length) - 1] ?? [];
    };
    return { resolve, calls };
  }
  const v4 = (address: string): Resolved => ({ address, family: 4 });

  it('refuses a name with one private address among public ones', async () => {
    const { resolve } = scriptedResolver([v4('93.184.216.34'), v4('10.0.0.7')]);
    let error: unknown;
    await checkUrl('https://mixed.example/hook', { allowPrivate: false }, resolve).catch(
      (e: unknown) => (error = e),
    );
    expect(String(error)).to.include('10.0.0.7, which is not a public address (private)');
  });

  it('refuses a name that resolves to a private address at delivery time (rebinding after registration)', async () => {
    const receiver = await Receiver.start();
    try {
      const port = new URL(receiver.url).port;
      // Public when registered, loopback by the time of the attempt.
      const { resolve } = scriptedResolver([v4('93.184.216.34')], [v4('127.0.0.1')]);
      await checkUrl(`https://rebind.example:${port}/hook`, { allowPrivate: false }, resolve);
      const result = await sendWebhook({
        url: `https://rebind.example:${port}/hook`,
        body: '{}',
        headers: {},
        timeoutMs: 2000,
        policy: { allowPrivate: false },
        resolve,
      });
      expect(result).to.deep.equal({
        kind: 'unanswered',
        error:
          'refused: resolves to 127.0.0.1, which is not a public address (loopback); only public addresses are allowed',
      });
      expect(receiver.received).to.deep.equal([]);
    } finally {
      await receiver.close();
    }
  });

  it('connects to the address it checked: one lookup per attempt, pinned for the connection', async () => {
    const receiver = await Receiver.start();
    try {
      const port = new URL(receiver.url).port;
      // A second lookup would answer an address where nothing listens; "rebind.invalid" does not
      // exist in DNS, so a lookup by Node itself would fail the request outright.
      const { resolve, calls } = scriptedResolver([v4('127.0.0.1')], [v4('127.0.0.2')]);
      const result = await sendWebhook({
        url: `http://rebind.invalid:${port}/pinned`,
        body: '{"x":1}',
        headers: { 'webhook-id': 'm1' },
        timeoutMs: 2000,
        policy: { allowPrivate: true },
        resolve,
      });
      expect(result).to.deep.equal({ kind: 'answered', status: 204 });
      expect(calls).to.deep.equal(['rebind.invalid']);
      expect(receiver.received.map((r) => [r.path, r.headers.host, r.body])).to.deep.equal([
        ['/pinned', `rebind.invalid:${port}`, '{"x":1}'],
      ]);
    } finally {
      await receiver.close();
    }
  });
});
