import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { ApiError, MerchantClient, NetworkError } from '../src/client/client.js';
import { freePort } from '../src/net.js';
import { Progress } from '../src/cli/progress.js';

/** A scripted HTTP server: answers each request with the next of `answers`. */
async function scripted(answers: Array<{ status: number; headers?: Record<string, string> }>) {
  const seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const answer = answers[Math.min(seen.length - 1, answers.length - 1)] ?? { status: 500 };
    const problem = answer.status >= 400;
    res.writeHead(answer.status, {
      'content-type': problem ? 'application/problem+json' : 'application/json',
      ...answer.headers,
    });
    res.end(
      JSON.stringify(
        problem
          ? { type: '/problems/x', title: 'Nope', status: answer.status, detail: 'scripted' }
          : { id: 'j1', status: 'pending' },
      ),
    );
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, close: () => server.close() };
}

describe('client module', () => {
  it('retries 503 after the Retry-After the server gave, then succeeds', async () => {
    const s = await scripted([{ status: 503, headers: { 'retry-after': '1' } }, { status: 202 }]);
    try {
      const retries: number[] = [];
      const client = new MerchantClient({
        baseUrl: s.url,
        onRetry: ({ delayMs }) => retries.push(delayMs),
      });
      const started = Date.now();
      const { job } = await client.submit(
        { date: '2026-04-03', description: 'x', amount: 1 },
        { idempotencyKey: 'k' },
      );
      expect(job.id).to.equal('j1');
      expect(retries).to.deep.equal([1000]);
      expect(Date.now() - started).to.be.at.least(950);
      expect(s.seen).to.have.length(2);
      expect(s.seen[1]?.headers['idempotency-key']).to.equal('"k"');
    } finally {
      s.close();
    }
  });

  it('does not repeat a POST without Idempotency-Key after an ambiguous 502', async () => {
    const s = await scripted([{ status: 502 }, { status: 202 }]);
    try {
      const client = new MerchantClient({ baseUrl: s.url, maxBackoffMs: 10 });
      let error: unknown;
      await client
        .submit({ date: '2026-04-03', description: 'x', amount: 1 })
        .catch((err: unknown) => (error = err));
      expect(error).to.be.instanceOf(ApiError);
      expect((error as ApiError).status).to.equal(502);
      expect((error as ApiError).problem?.detail).to.equal('scripted');
      expect(s.seen).to.have.length(1);
    } finally {
      s.close();
    }
  });

  it('gives up after maxRetries and surfaces the problem', async () => {
    const s = await scripted([{ status: 429, headers: { 'retry-after': '0' } }]);
    try {
      const client = new MerchantClient({ baseUrl: s.url, maxRetries: 2 });
      let error: unknown;
      await client.getJob('j1').catch((err: unknown) => (error = err));
      expect((error as ApiError).status).to.equal(429);
      expect(s.seen).to.have.length(3);
    } finally {
      s.close();
    }
  });
});

describe('client errors name the call', () => {
  it('gives ApiError the method and URL that got the answer', async () => {
    const s = await scripted([{ status: 409 }]);
    try {
      const client = new MerchantClient({ baseUrl: `${s.url}/`, maxRetries: 0 });
      let error: unknown;
      await client.cancel('j1').catch((err: unknown) => (error = err));
      expect(error).to.be.instanceOf(ApiError);
      expect((error as ApiError).request).to.deep.equal({
        method: 'DELETE',
        url: `${s.url}/jobs/j1`,
      });
    } finally {
      s.close();
    }
  });

  it('throws NetworkError naming the URL when nothing answers, after its retries', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const reasons: string[] = [];
    const client = new MerchantClient({
      baseUrl: url,
      maxRetries: 1,
      maxBackoffMs: 10,
      onRetry: ({ reason }) => reasons.push(reason),
    });
    let error: unknown;
    await client.getBatch('b1').catch((err: unknown) => (error = err));
    expect(error).to.be.instanceOf(NetworkError);
    expect((error as NetworkError).request).to.deep.equal({
      method: 'GET',
      url: `${url}/batches/b1`,
    });
    expect((error as NetworkError).reason).to.equal('ECONNREFUSED');
    expect((error as NetworkError).message).to.equal(`GET ${url}/batches/b1: ECONNREFUSED`);
    expect(reasons).to.deep.equal([`network error: ECONNREFUSED at ${url}/batches/b1`]);
  });
});

describe('CLI progress output', () => {
  const capture = () => {
    const stream = new PassThrough();
    let text = '';
    stream.setEncoding('utf8').on('data', (s: string) => (text += s));
    return { stream, text: () => text };
  };

  it('redraws one bar line on a terminal, with done/total, rate and ETA', () => {
    const out = capture();
    const progress = new Progress(200, 'bar', out.stream);
    progress.update(0);
    progress.note('batch 1/1 submitted');
    progress.update(200);
    progress.finish();
    const text = out.text();
    expect(text).to.contain('\r\x1b[K[------------------------] 0/200 0.0%');
    expect(text).to.contain('batch 1/1 submitted\n');
    expect(text).to.match(/\[#{24}\] 200\/200 100\.0% [\d.]+ jobs\/s ETA 0:00\n$/);
  });

  it('prints plain lines at an interval and at the end when not a terminal', () => {
    const out = capture();
    const progress = new Progress(100, 'lines', out.stream, 60_000);
    progress.update(0);
    for (let done = 1; done < 100; done++) progress.update(done);
    progress.update(100);
    const lines = out.text().trim().split('\n');
    expect(lines).to.have.length(2);
    expect(lines[0]).to.match(/^progress 0\/100 0\.0% /);
    expect(lines[1]).to.match(/^progress 100\/100 100\.0% [\d.]+ jobs\/s ETA 0:00$/);
    expect(out.text()).not.to.contain('\r');
  });
});
