/**
 * Webhooks across real server processes (src/main.ts, spawned): a delivery interrupted by
 * kill -9 is made after a restart, with the same webhook-id; two processes deliver each event
 * once.
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { databaseUrl, eventually, freshDatabase } from './support/db.js';
import { Receiver } from './support/receiver.js';
import { ServerProcess } from './support/server-process.js';

describe('webhooks across server processes', function () {
  this.timeout(90_000);
  let db: Knex;
  let receiver: Receiver;
  let apiKey: string;
  const servers: ServerProcess[] = [];

  beforeEach(async () => {
    db = await freshDatabase();
    apiKey = (await issueKey(db, 'a')).key;
    receiver = await Receiver.start();
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.kill('SIGKILL')));
    await receiver.close();
    await db.destroy();
  });

  async function start(env: Record<string, string> = {}) {
    const server = await ServerProcess.start({
      DATABASE_URL: databaseUrl(db),
      HEURISTIC_DELAY_MS: '0',
      RESULT_CACHE_TTL_MS: '0',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      ...env,
    });
    server.apiKey = apiKey;
    servers.push(server);
    return server;
  }

  async function registerAt(server: ServerProcess) {
    const res = await server.post('/webhooks', { url: `${receiver.url}/hook` });
    expect(res.status).to.equal(201);
    const body = (await res.json()) as { id: string; secret: string };
    receiver.secrets.push(body.secret);
    return body;
  }

  const deliveries = () =>
    db('webhook_deliveries').select('id', 'status', 'attempts') as Promise<
      { id: string; status: string; attempts: number }[]
    >;

  it('delivers after a restart what was in flight when the server was killed with SIGKILL', async () => {
    // A lease of 2 × 1 s + 1 s: the restarted server takes the delivery over soon after.
    const env = { WEBHOOK_TIMEOUT_MS: '1000' };
    const first = await start(env);
    await registerAt(first);
    receiver.answer = () => 'hang';
    expect((await first.post('/normalize_merchant', tx('Netflix'))).status).to.equal(202);
    await eventually(async () => receiver.received.length === 1, 10_000, 'the attempt in flight');
    const [inFlight] = await deliveries();
    expect(inFlight).to.include({ status: 'delivering', attempts: 1 });

    expect(await first.kill('SIGKILL')).to.deep.equal({ code: null, signal: 'SIGKILL' });
    receiver.answer = () => ({ status: 204 });
    await start(env);
    await eventually(
      async () => (await deliveries())[0]?.status === 'delivered',
      20_000,
      'delivered',
    );

    expect(await deliveries()).to.deep.equal([
      { id: inFlight!.id, status: 'delivered', attempts: 2 },
    ]);
    expect(receiver.received).to.have.length(2);
    expect(receiver.received.map((r) => r.headers['webhook-id'])).to.deep.equal([
      inFlight!.id,
      inFlight!.id,
    ]);
    expect(receiver.received.every((r) => r.verified !== undefined)).to.equal(true);
  });

  it('SIGTERM ends open event streams and the server exits 0', async () => {
    const server = await start();
    const res = await fetch(`${server.url}/events`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(res.status).to.equal(200);
    const body = res.text(); // resolves when the server ends the stream
    expect(await server.kill('SIGTERM')).to.deep.equal({ code: 0, signal: null });
    expect(await body).to.contain(': connected');
  });

  it('two processes deliver each event once', async () => {
    const a = await start();
    const b = await start();
    await registerAt(a);
    receiver.answer = () => ({ status: 204, delayMs: 5 });
    const jobs = 60;
    for (let i = 0; i < jobs; i++) {
      const server = i % 2 ? a : b;
      expect((await server.post('/normalize_merchant', tx(`Shop ${i}`))).status).to.equal(202);
    }
    const batch = await b.post('/normalize_merchant/batch', {
      transactions: Array.from({ length: 20 }, (_, i) => tx(`Batch shop ${i}`)),
    });
    expect(batch.status).to.equal(202);
    const events = jobs + 20 + 1;
    await eventually(
      async () => (await deliveries()).filter((d) => d.status === 'delivered').length === events,
      60_000,
      `${events} delivered`,
    );
    const perId = new Map<string, number>();
    for (const r of receiver.received) {
      const id = String(r.headers['webhook-id']);
      perId.set(id, (perId.get(id) ?? 0) + 1);
    }
    expect(perId.size).to.equal(events);
    expect(
      [...perId.values()].every((n) => n === 1),
      'each webhook-id received once',
    ).to.equal(true);
    expect((await deliveries()).every((d) => d.attempts === 1)).to.equal(true);
    expect(receiver.received.every((r) => r.verified !== undefined)).to.equal(true);
    // The attempts are counted once across the two processes (whichever claimed each).
    const delivered = await Promise.all(
      [a, b].map(async (s) => {
        const text = await (await s.get('/metrics')).text();
        const line = /^merchant_webhook_deliveries_total\{outcome="delivered"\} (\d+)/m.exec(text);
        return Number(line?.[1] ?? 0);
      }),
    );
    expect(delivered[0]! + delivered[1]!).to.equal(events);
    // No claim or outcome write failed on the way (a deadlock would show here).
    for (const s of [a, b]) expect(s.logs.filter((l) => l.level === 'error')).to.deep.equal([]);
  });
});

function tx(description: string) {
  return { date: '2026-04-03', description, amount: 12.5 };
}
