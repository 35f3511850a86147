/**
 * Inputs that once reached Postgres (or the socket) in a shape it could not handle and came
 * back as 5xx: each must be a 4xx problem+json naming what was wrong, with nothing stored.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { expect } from 'chai';
import { cursors } from '../src/http/views.js';
import { rowCount } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { expectProblem } from './support/problem.js';

describe('bad input that Postgres or the socket cannot take', () => {
  let h: Harness;
  let server: http.Server;
  let port: number;
  before(async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const handle = h.app.callback();
    server = http.createServer((req, res) => void handle(req, res)).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await h.stop();
  });

  /** One request over a real socket: any method, any bytes (supertest and fetch refuse some). */
  const raw = (
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body?: Buffer | string,
  ) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
      (resolve, reject) => {
        const req = http.request({ port, host: '127.0.0.1', method, path, headers }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }),
          );
        });
        req.on('error', reject);
        req.end(body);
      },
    );
  const submitGzip = (body: Buffer) =>
    raw(
      'POST',
      '/normalize_merchant',
      {
        authorization: `Bearer ${h.key.key}`,
        'content-type': 'application/json',
        'content-encoding': 'gzip',
      },
      body,
    );

  const storesNothing = async () => {
    expect(await rowCount(h.db, 'jobs')).to.equal(0);
    expect(await rowCount(h.db, 'batches')).to.equal(0);
  };

  describe('text Postgres cannot store (NUL, unpaired surrogates)', () => {
    const cases: Array<[string, string]> = [
      ['NUL', 'Netflix\u0000'],
      ['an unpaired high surrogate', 'Netflix \ud800'],
      ['an unpaired low surrogate', '\udc00 Netflix'],
    ];
    for (const [what, text] of cases) {
      for (const field of ['description', 'reference'] as const) {
        it(`POST /normalize_merchant: 422 naming /${field} when it holds ${what}`, async () => {
          const res = await h.http
            .post('/normalize_merchant')
            .set('Content-Type', 'application/json')
            .send(JSON.stringify(tx('Netflix', { [field]: text })))
            .expect(422);
          expectProblem(res, '/problems/validation-error', 422);
          expect(res.body.errors).to.deep.include({
            pointer: `/${field}`,
            detail:
              'must not contain NUL (\\u0000) or unpaired UTF-16 surrogates (\\ud800-\\udfff)',
          });
          await storesNothing();
        });
      }
      it(`POST /normalize_merchant/batch: 422 naming the item when it holds ${what}`, async () => {
        const res = await h.http
          .post('/normalize_merchant/batch')
          .set('Content-Type', 'application/json')
          .send(JSON.stringify({ transactions: [tx('Fine'), tx(text)] }))
          .expect(422);
        expectProblem(res, '/problems/validation-error', 422);
        expect(res.body.errors.map((e: { pointer: string }) => e.pointer)).to.deep.equal([
          '/transactions/1/description',
        ]);
        await storesNothing();
      });
    }

    it('accepts well-formed astral characters (a surrogate pair) and stores them unchanged', async () => {
      const res = await h.http.post('/normalize_merchant').send(tx('Café 🍕 Pizza')).expect(202);
      const row = await h.db('jobs').where({ id: res.body.id }).first();
      expect(row.transaction.description).to.equal('Café 🍕 Pizza');
      await h.db('jobs').del();
    });
  });

  describe('cursors whose number overflows the column', () => {
    const raw = (text: string) => Buffer.from(text).toString('base64url');
    it('GET /jobs: 400 naming cursor for a seq beyond bigint', async () => {
      const res = await h.http.get(`/jobs?cursor=${raw('seq:9999999999999999999')}`).expect(400);
      expectProblem(res, '/problems/invalid-parameter', 400);
      expect(res.body.errors[0].parameter).to.equal('cursor');
    });
    it('GET /jobs: the largest bigint is still a cursor', async () => {
      await h.http.get(`/jobs?cursor=${cursors.encode('seq', '9223372036854775807')}`).expect(200);
    });
    it('GET /batches/{id}/results: 400 naming cursor for an index beyond integer', async () => {
      const batch = await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: [tx('A')] })
        .expect(202);
      const res = await h.http
        .get(`/batches/${batch.body.id}/results?cursor=${raw('index:2147483648')}`)
        .expect(400);
      expectProblem(res, '/problems/invalid-parameter', 400);
      expect(res.body.errors[0].parameter).to.equal('cursor');
      await h.http
        .get(`/batches/${batch.body.id}/results?cursor=${raw('index:2147483647')}`)
        .expect(200);
      await h.db('batches').del();
    });
  });

  describe('bodies that do not decode', () => {
    it('POST /normalize_merchant: 400 naming Content-Encoding for a "gzip" body that is not gzip', async () => {
      const res = await submitGzip(Buffer.from(JSON.stringify(tx('Netflix'))));
      expect(res.status).to.equal(400);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      const problem = JSON.parse(res.body) as { type: string; detail: string };
      expect(problem.type).to.equal('/problems/malformed-body');
      expect(problem.detail).to.contain('Content-Encoding');
      await storesNothing();
    });
    it('POST /normalize_merchant: a truncated gzip body is a 400 too', async () => {
      const gz = gzipSync(JSON.stringify(tx('Netflix')));
      const res = await submitGzip(gz.subarray(0, gz.length - 6));
      expect(res.status).to.equal(400);
      expect(JSON.parse(res.body)).to.include({ type: '/problems/malformed-body', status: 400 });
      await storesNothing();
    });
    it('POST /normalize_merchant: real gzip is accepted', async () => {
      const res = await submitGzip(gzipSync(JSON.stringify(tx('Netflix'))));
      expect(res.status, res.body).to.equal(202);
      expect(JSON.parse(res.body).transaction.description).to.equal('Netflix');
      await h.db('jobs').del();
    });
  });

  describe('methods no route implements', () => {
    for (const method of ['TRACE', 'PROPFIND', 'MKCOL']) {
      it(`${method} on a known path: 405 problem+json with Allow`, async () => {
        const res = await raw(method, '/jobs', { authorization: `Bearer ${h.key.key}` });
        expect(res.status).to.equal(405);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.headers.allow).to.equal('HEAD, GET');
        const problem = JSON.parse(res.body) as { type: string; detail: string };
        expect(problem.type).to.equal('/problems/method-not-allowed');
        expect(problem.detail).to.contain(method);
      });
    }
    it('TRACE on an unknown path: 404 problem+json', async () => {
      const res = await raw('TRACE', '/nowhere');
      expect(res.status).to.equal(404);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
    });
  });

  describe('a declared Content-Length over the limit', () => {
    /** Sends the head of a request whose body never comes; resolves with the first answer. */
    const headOnly = (length: string) =>
      new Promise<{ head: string; closed: Promise<void> }>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        let received = '';
        const closed = new Promise<void>((done) => socket.once('close', () => done()));
        socket.setEncoding('utf8');
        socket.on('error', reject);
        socket.on('data', (chunk: string) => {
          received += chunk;
          if (received.includes('\r\n\r\n')) resolve({ head: received, closed });
        });
        socket.write(
          'POST /normalize_merchant HTTP/1.1\r\nHost: x\r\n' +
            `Authorization: Bearer ${h.key.key}\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${length}\r\n\r\n{`,
        );
      });

    for (const length of ['20000', '2147483648', '9007199254740993']) {
      it(`answers 413 at once for Content-Length ${length}, before any body arrives, and closes`, async () => {
        const { head, closed } = await headOnly(length);
        expect(head).to.match(/^HTTP\/1\.1 413 /);
        expect(head).to.match(/content-type: application\/problem\+json/i);
        await closed;
        await storesNothing();
      });
    }
  });
});
