/**
 * HttpHeuristic (HEURISTIC=http) against real HTTP servers on this machine: what it sends, the
 * keep-alive pool, its timeout and abort, how each failure is classed, and its metrics.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { HeuristicCallError, HttpHeuristic } from '../src/heuristic/http.js';
import { NonRetryableError } from '../src/heuristic/errors.js';
import { AttemptTimeoutError, jobErrorFrom } from '../src/runner/errors.js';
import { eventually } from './support/db.js';
import { tx } from './support/heuristics.js';

type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;

/** A local HTTP server answering with `handler`; records requests and connections. */
class Upstream {
  readonly requests: Array<{
    method?: string;
    url?: string;
    headers: http.IncomingHttpHeaders;
    body: string;
  }> = [];
  connections = 0;
  closedRequests = 0;
  url = '';
  private readonly server: http.Server;

  constructor(public handler: Handler) {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        this.requests.push({ method: req.method, url: req.url, headers: req.headers, body });
        res.on('close', () => {
          if (!res.writableFinished) this.closedRequests += 1;
        });
        this.handler(req, body, res);
      });
    });
    this.server.on('connection', () => (this.connections += 1));
  }

  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/normalize_merchant`;
    return this;
  }

  async stop() {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }
}

const json =
  (status: number, body: unknown, delayMs = 0): Handler =>
  (_req, _body, res) => {
    setTimeout(() => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    }, delayMs);
  };

const netflix = { merchant: { name: 'Netflix' } };
const never = new AbortController().signal;

async function failure(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(outcome instanceof Error)) throw new Error(`expected a rejection, got ${String(outcome)}`);
  return outcome;
}

describe('HttpHeuristic (HEURISTIC=http)', () => {
  let upstream: Upstream;
  let heuristic: HttpHeuristic | undefined;
  const make = (opts: Partial<ConstructorParameters<typeof HttpHeuristic>[0]> = {}) =>
    (heuristic = new HttpHeuristic({
      url: upstream.url,
      version: 'orig-7',
      connections: 4,
      timeoutMs: 5000,
      ...opts,
    }));

  beforeEach(async () => {
    upstream = await new Upstream(json(200, netflix)).start();
  });
  afterEach(async () => {
    await heuristic?.close();
    heuristic = undefined;
    await upstream.stop();
  });

  it('POSTs only {date, description, amount} as JSON to HEURISTIC_URL and reads {merchant: {name}}', async () => {
    const answer = await make().match(
      tx('Payment Netflix APRIL***', { currency: 'USD', mcc: '4899', reference: 'r-1' }),
      never,
    );
    // The original answers a name only: the id is its slug; intermediaries are not reported.
    expect(answer).to.deep.equal({ merchant: { name: 'Netflix', id: 'netflix' } });
    const [request] = upstream.requests;
    expect(request?.method).to.equal('POST');
    expect(request?.url).to.equal('/normalize_merchant');
    expect(request?.headers['content-type']).to.equal('application/json');
    expect(JSON.parse(request?.body ?? '')).to.deep.equal({
      date: '2026-04-03',
      description: 'Payment Netflix APRIL***',
      amount: 12.5,
    });
  });

  it('passes merchant.id and intermediaries through, and a null merchant as no merchant', async () => {
    const rich = {
      merchant: { name: 'Sushi Go', id: 'sushi-go' },
      intermediaries: [{ id: 'paypal', name: 'PayPal', kind: 'processor', since: 1998 }],
      confidence: 0.9,
    };
    upstream.handler = json(200, rich);
    expect(await make().match(tx('PAYPAL *SUSHI GO'), never)).to.deep.equal({
      merchant: { name: 'Sushi Go', id: 'sushi-go' },
      intermediaries: [{ id: 'paypal', name: 'PayPal', kind: 'processor' }],
    });
    upstream.handler = json(200, { merchant: null });
    expect(await heuristic!.match(tx('XQZW 99812'), never)).to.deep.equal({ merchant: null });
  });

  it('sends user:password from HEURISTIC_URL as Basic auth, and never puts it in an error', async () => {
    const url = new URL(upstream.url);
    url.username = 'svc';
    url.password = 's3cr%40t';
    upstream.handler = json(503, 'down');
    const err = await failure(make({ url: url.href }).match(tx('Netflix'), never));
    expect(upstream.requests[0]?.headers.authorization).to.equal(
      `Basic ${Buffer.from('svc:s3cr@t').toString('base64')}`,
    );
    expect(err.message).not.to.contain('s3cr');
  });

  it('keeps at most `connections` keep-alive sockets and reuses them', async () => {
    upstream.handler = json(200, netflix, 50);
    make({ connections: 2 });
    await Promise.all(Array.from({ length: 6 }, () => heuristic!.match(tx('Netflix'), never)));
    expect(upstream.connections).to.equal(2);
    for (let i = 0; i < 4; i++) await heuristic!.match(tx('Netflix'), never);
    expect(upstream.requests).to.have.length(10);
    expect(upstream.connections, 'no new socket for later calls').to.equal(2);
  });

  it('gives up after its per-attempt timeout with a timeout error, closing the request', async () => {
    upstream.handler = () => undefined; // never answers
    const started = performance.now();
    const err = await failure(make({ timeoutMs: 300 }).match(tx('Netflix'), never));
    expect(err).to.be.instanceOf(AttemptTimeoutError);
    expect(jobErrorFrom(err, 1).code).to.equal('timeout');
    expect(performance.now() - started).to.be.within(250, 4000);
    await eventually(async () => upstream.closedRequests === 1, 5000, 'the request closed');
  });

  it("stops as soon as the attempt's signal aborts, with the signal's reason", async () => {
    upstream.handler = () => undefined;
    const controller = new AbortController();
    const call = failure(make().match(tx('Netflix'), controller.signal));
    await eventually(async () => upstream.requests.length === 1, 5000, 'the request sent');
    const reason = new Error('job canceled');
    controller.abort(reason);
    expect(await call).to.equal(reason);
    await eventually(async () => upstream.closedRequests === 1, 5000, 'the request closed');
    // An abort is the runner's decision, not an error of the remote service.
    const text = await metricsText(heuristic!);
    expect(text).to.match(
      /merchant_heuristic_http_request_duration_seconds_count\{outcome="aborted"\} 1/,
    );
    expect(text).not.to.match(/merchant_heuristic_http_errors_total\{kind="[a-z_0-9]+"\} [1-9]/);
  });

  it('5xx, 408 and 429 are retryable errors that quote the answer', async () => {
    for (const status of [500, 503, 408, 429]) {
      upstream.handler = json(status, { error: `overloaded ${status}` });
      const err = await failure(make().match(tx('Netflix'), never));
      expect(err, String(status)).to.be.instanceOf(HeuristicCallError);
      expect(err).not.to.be.instanceOf(NonRetryableError);
      expect(err.message).to.equal(
        `heuristic answered ${status}: {"error":"overloaded ${status}"}`,
      );
      expect(jobErrorFrom(err, 1).code).to.equal('heuristic_error');
      await heuristic?.close();
    }
  });

  it('any other 4xx is not retried: NonRetryableError', async () => {
    upstream.handler = json(422, { error: 'amount must be a number' });
    const err = await failure(make().match(tx('Netflix'), never));
    expect(err).to.be.instanceOf(NonRetryableError);
    expect(jobErrorFrom(err, 1)).to.deep.equal({
      code: 'non_retryable',
      message: 'heuristic answered 422: {"error":"amount must be a number"}',
      attempt: 1,
    });
  });

  it('network errors are retryable and name the cause', async () => {
    const down = await new Upstream(json(200, netflix)).start();
    await down.stop();
    const refused = await failure(make({ url: down.url }).match(tx('Netflix'), never));
    expect(refused).to.be.instanceOf(HeuristicCallError);
    expect((refused as HeuristicCallError).kind).to.equal('network');
    expect(refused.message).to.match(
      /^heuristic at http:\/\/127\.0\.0\.1:\d+ unreachable: .*ECONNREFUSED/,
    );
    await heuristic?.close();

    upstream.handler = (req) => req.socket.destroy(); // drops the connection without answering
    const reset = await failure(make().match(tx('Netflix'), never));
    expect((reset as HeuristicCallError).kind).to.equal('network');
  });

  describe('a malformed answer is a retryable error saying what was wrong', () => {
    const cases: Array<[string, string, string]> = [
      ['HTML', '<html>Bad gateway</html>', 'not JSON (starts "<html>Bad gateway</html>")'],
      ['an empty body', '', 'not JSON (empty body)'],
      ['no merchant', '{"name":"Netflix"}', "the answer must have required property 'merchant'"],
      [
        'a string merchant',
        '{"merchant":"Netflix"}',
        'merchant must be object or null (got "Netflix")',
      ],
      ['a numeric name', '{"merchant":{"name":42}}', 'merchant.name must be string (got 42)'],
      ['a blank name', '{"merchant":{"name":"  "}}', 'merchant.name must not be blank'],
      [
        'an id that is no slug',
        '{"merchant":{"name":"A","id":"A B"}}',
        'merchant.id must be a lower-case slug',
      ],
      [
        'an unknown intermediary kind',
        '{"merchant":null,"intermediaries":[{"id":"x","name":"X","kind":"bank"}]}',
        'intermediaries[0].kind must be one of processor, platform (got "bank")',
      ],
    ];
    for (const [what, body, says] of cases) {
      it(`${what}: "${says}"`, async () => {
        upstream.handler = json(200, body);
        const err = await failure(make().match(tx('Netflix'), never));
        expect(err).to.be.instanceOf(HeuristicCallError);
        expect((err as HeuristicCallError).kind).to.equal('malformed');
        expect(err.message).to.contain(`heuristic answer malformed: ${says}`);
      });
    }

    it('an answer over 64 KiB', async () => {
      upstream.handler = json(200, { merchant: { name: 'x'.repeat(70_000) } });
      const err = await failure(make().match(tx('Netflix'), never));
      expect(err.message).to.equal('heuristic answer larger than 65536 bytes');
    });
  });

  it('keys the cache on the whole transaction by default, or on the description, or not at all', () => {
    const a = tx('NETFLIX.COM', { amount: 15.49 });
    const b = tx('NETFLIX.COM', { amount: 7 });
    const byTransaction = make();
    expect(byTransaction.key(a)).not.to.equal(byTransaction.key(b));
    expect(byTransaction.key(a)).to.equal(byTransaction.key({ ...a, reference: 'other' }));
    const byDescription = make({ cacheKey: 'description' });
    expect(byDescription.key(a)).to.equal(byDescription.key(b));
    expect(make({ cacheKey: 'none' }).key(a)).to.equal(null);
    expect(byTransaction.version).to.equal('orig-7');
  });

  it('exports latency by outcome and errors by kind', async () => {
    make();
    await heuristic!.match(tx('Netflix'), never);
    upstream.handler = json(502, 'bad gateway');
    await failure(heuristic!.match(tx('Netflix'), never));
    upstream.handler = json(200, '{"merchant":1}');
    await failure(heuristic!.match(tx('Netflix'), never));
    const text = await metricsText(heuristic!);
    expect(text).to.match(
      /^merchant_heuristic_http_request_duration_seconds_count\{outcome="ok"\} 1$/m,
    );
    expect(text).to.match(/^merchant_heuristic_http_errors_total\{kind="http_5xx"\} 1$/m);
    expect(text).to.match(/^merchant_heuristic_http_errors_total\{kind="malformed"\} 1$/m);
    expect(text).to.match(/^merchant_heuristic_http_errors_total\{kind="timeout"\} 0$/m);
  });
});

async function metricsText(heuristic: HttpHeuristic): Promise<string> {
  const registry = new Registry();
  heuristic.metrics.register(registry);
  return registry.metrics();
}
