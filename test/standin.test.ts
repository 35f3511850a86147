/**
 * The stand-in for the original synchronous service (src/standin): its contract, its latency
 * and each injected failure, seen through the HTTP adapter that calls it in production.
 */
import { once } from 'node:events';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import type { StandinConfig } from '../src/standin/config.js';
import { HeuristicCallError, HttpHeuristic } from '../src/heuristic/http.js';
import { NonRetryableError } from '../src/heuristic/errors.js';
import { createLogger } from '../src/log.js';
import { createStandinServer } from '../src/standin/server.js';
import { tx } from './support/heuristics.js';

describe('stand-in for the original service (npm run standin)', () => {
  let server: http.Server | undefined;
  let heuristic: HttpHeuristic | undefined;
  let url = '';

  async function start(
    opts: { delayMs?: number; failures?: StandinConfig['failures']; random?: () => number } = {},
  ) {
    const delay = opts.delayMs ?? 0;
    server = createStandinServer({
      delayMs: { min: delay, max: delay },
      failures: opts.failures ?? [],
      log: createLogger('silent'),
      random: opts.random,
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/normalize_merchant`;
    heuristic = new HttpHeuristic({ url, version: 's-1', connections: 2, timeoutMs: 5000 });
  }
  afterEach(async () => {
    await heuristic?.close();
    server?.closeAllConnections();
    server?.close();
    if (server) await once(server, 'close');
    server = undefined;
  });

  const post = (body: unknown, path = '/normalize_merchant') =>
    fetch(new URL(path, url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it("answers the original's {merchant: {name}} with id and intermediaries, after its delay", async () => {
    await start({ delayMs: 150 });
    const started = performance.now();
    const res = await post({ date: '2026-04-03', description: 'PAYPAL *SUSHI GO', amount: 9 });
    expect(performance.now() - started).to.be.at.least(140);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.deep.equal({
      merchant: { name: 'Sushi Go', id: 'sushi-go' },
      intermediaries: [{ id: 'paypal', name: 'PayPal', kind: 'processor' }],
    });
    const none = await post({ date: '2026-04-03', description: 'XQZW 99812', amount: 1 });
    expect(await none.json()).to.deep.equal({ merchant: null, intermediaries: [] });
  });

  it('refuses a bad transaction with 422 naming the field, and unknown routes', async () => {
    await start();
    const bad = await post({ date: '2026-04-03', description: 'Netflix', amount: '9' });
    expect(bad.status).to.equal(422);
    expect(await bad.json()).to.deep.equal({ error: 'amount must be a number' });
    expect((await post({}, '/elsewhere')).status).to.equal(404);
    expect((await fetch(url)).status).to.equal(405);
    expect((await fetch(new URL('/healthz', url))).status).to.equal(200);
  });

  describe('injected failures (STANDIN_FAILURES), as the adapter sees them', () => {
    // The first draw picks the failure; rates are cumulative in the order given.
    const always = (failure: StandinConfig['failures'][number]['failure']) => ({
      failures: [{ failure, rate: 1 }],
    });

    it('a status: 503 is retryable, 422 is not', async () => {
      await start(always('503'));
      const unavailable = await heuristic!
        .match(tx('Netflix'), new AbortController().signal)
        .catch((e: unknown) => e);
      expect(unavailable).to.be.instanceOf(HeuristicCallError);
      expect((unavailable as Error).message).to.equal(
        'heuristic answered 503: {"error":"injected failure 503"}',
      );
      await heuristic?.close();
      server?.close();
      server?.closeAllConnections();
      await start(always('422'));
      const refused = await heuristic!
        .match(tx('Netflix'), new AbortController().signal)
        .catch((e: unknown) => e);
      expect(refused).to.be.instanceOf(NonRetryableError);
    });

    it('reset: the connection drops without an answer (a network error)', async () => {
      await start(always('reset'));
      const err = await heuristic!
        .match(tx('Netflix'), new AbortController().signal)
        .catch((e: unknown) => e);
      expect((err as HeuristicCallError).kind).to.equal('network');
    });

    it('malformed: a 200 whose merchant name is a number', async () => {
      await start(always('malformed'));
      const err = await heuristic!
        .match(tx('Netflix'), new AbortController().signal)
        .catch((e: unknown) => e);
      expect((err as Error).message).to.equal(
        'heuristic answer malformed: merchant.name must be string (got 42)',
      );
    });

    it('hang: no answer until the caller gives up', async () => {
      await start(always('hang'));
      const controller = new AbortController();
      const call = heuristic!.match(tx('Netflix'), controller.signal).catch((e: unknown) => e);
      const outcome = await Promise.race([
        call,
        new Promise((resolve) => setTimeout(resolve, 300, 'still waiting')),
      ]);
      expect(outcome).to.equal('still waiting');
      controller.abort(new Error('gave up'));
      expect(((await call) as Error).message).to.equal('gave up');
    });

    it('draws each failure at its rate', async () => {
      const draws = [0.05, 0, 0.15, 0, 0.5, 0]; // failure draw, delay draw, ...
      let i = 0;
      await start({
        failures: [
          { failure: '500', rate: 0.1 },
          { failure: 'malformed', rate: 0.1 },
        ],
        random: () => draws[i++ % draws.length] ?? 0,
      });
      const outcomes = [];
      for (let n = 0; n < 3; n++) {
        outcomes.push(
          await heuristic!.match(tx('NETFLIX.COM'), new AbortController().signal).then(
            (r) => r.merchant?.name,
            (e: unknown) => (e as HeuristicCallError).kind,
          ),
        );
      }
      expect(outcomes).to.deep.equal(['http_5xx', 'malformed', 'Netflix']);
    });
  });
});
