import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { parse as parseCsv } from 'csv-parse/sync';
import { newId } from '../src/ids.js';
import { eventually, rowCount } from './support/db.js';
import { readEvents } from '../src/db/sql/events.js';
import { type Harness, type HarnessOptions, startHarness, submitJob } from './support/harness.js';
import { expectProblem } from './support/problem.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';

const NDJSON = 'application/x-ndjson';
const CSV = 'text/csv';

/** One NDJSON line per transaction, references `ref-<i>`. */
const ndjson = (n: number, from = 0) =>
  Array.from(
    { length: n },
    (_, i) => JSON.stringify(tx(`Merchant ${from + i}`, { reference: `ref-${from + i}` })) + '\n',
  ).join('');

/** A response's body as text. */
const asText = (res: http.IncomingMessage, done: (err: Error | null, body: string) => void) => {
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => (text += chunk));
  res.on('end', () => done(null, text));
};

describe('file batches', () => {
  let h: Harness;
  let server: http.Server | undefined;
  afterEach(async () => {
    if (server) await new Promise((resolve) => server?.close(resolve));
    server = undefined;
    await h.stop();
  });

  const count = (table: string) => rowCount(h.db, table);
  const start = async (opts: Partial<HarnessOptions> = {}) => {
    h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      startRunner: false,
      ...opts,
    });
  };
  const upload = (type: string, body: string) =>
    h.http.post('/normalize_merchant/batch').set('Content-Type', type).send(body);
  const jobsInOrder = async (batchId: string) =>
    (
      await h.db.raw<{ rows: { batch_index: number; transaction: Record<string, unknown> }[] }>(
        'SELECT batch_index, transaction FROM jobs WHERE batch_id = ? ORDER BY batch_index',
        [batchId],
      )
    ).rows;

  /** The size of the staging table an upload in progress writes to (another session's). */
  const stagedBytes = async () => {
    const { rows } = await h.db.raw<{ rows: { n: string }[] }>(
      `SELECT coalesce(sum(pg_relation_size(oid)), 0) AS n FROM pg_class
       WHERE relname = 'batch_file_rows' AND relpersistence = 't'`,
    );
    return Number(rows[0]?.n ?? 0);
  };

  /** A port for requests whose body the test writes itself. */
  const listen = async () => {
    if (server) return (server.address() as AddressInfo).port;
    const callback = h.app.callback();
    server = http.createServer((req, res) => void callback(req, res));
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', () => resolve()));
    return (server.address() as AddressInfo).port;
  };
  /** A chunked POST of a file batch the test writes into; resolves with status and body. */
  const streamingUpload = async (type: string) => {
    const port = await listen();
    const req = http.request({
      port,
      host: '127.0.0.1',
      method: 'POST',
      path: '/normalize_merchant/batch',
      headers: { 'Content-Type': type, Authorization: `Bearer ${h.key.key}` },
    });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req.on('response', (res) => {
        asText(res, (_, body) => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
    });
    return { req, answer };
  };

  describe('POST /normalize_merchant/batch with a file body', () => {
    it('stores an NDJSON body as one batch, in line order, and answers 202 with Location', async () => {
      await start();
      const res = await upload(NDJSON, ndjson(3) + '\n' + ndjson(2, 3)).expect(202);
      expect(res.headers.location).to.equal(`/batches/${res.body.id}`);
      expect(res.body).to.include({ size: 5, done: false });
      expect(res.body.counts.pending).to.equal(5);
      expect(res.body).not.to.have.property('job_ids');
      const jobs = await jobsInOrder(res.body.id);
      expect(jobs.map((j) => j.transaction.reference)).to.deep.equal([
        'ref-0',
        'ref-1',
        'ref-2',
        'ref-3',
        'ref-4',
      ]);
      expect(jobs[4]?.transaction).to.deep.equal(tx('Merchant 4', { reference: 'ref-4' }));
      const batch = await h.http.get(`/batches/${res.body.id}`).expect(200);
      expect(batch.body).to.include({ size: 5 });
    });

    it('stores a CSV body: columns in any case and order, quoted fields, empty optional cells', async () => {
      await start();
      const csv =
        'Amount,DESCRIPTION,date,currency,Reference\r\n' +
        '15.49,"Netflix, Inc.",2026-04-03,USD,r1\r\n' +
        '-3,"Two\nlines",2026-04-04,,r2\r\n' +
        '\r\n' +
        '7,Spotify,2026-04-05,EUR,\r\n';
      const res = await upload(CSV, csv).expect(202);
      expect(res.body).to.include({ size: 3 });
      const jobs = await jobsInOrder(res.body.id);
      expect(jobs.map((j) => j.transaction)).to.deep.equal([
        {
          date: '2026-04-03',
          description: 'Netflix, Inc.',
          amount: 15.49,
          currency: 'USD',
          reference: 'r1',
        },
        { date: '2026-04-04', description: 'Two\nlines', amount: -3, reference: 'r2' },
        { date: '2026-04-05', description: 'Spotify', amount: 7, currency: 'EUR' },
      ]);
    });

    it('refuses the whole NDJSON file with 422 naming each bad line and field; stores nothing', async () => {
      await start();
      const body =
        ndjson(4) +
        JSON.stringify({ ...tx('x'), amount: '12.50' }) +
        '\n' +
        '{not json\n' +
        ndjson(2) +
        JSON.stringify({ ...tx('y'), colour: 'red' }) +
        '\n';
      const res = await upload(NDJSON, body).expect(422);
      expectProblem(res, '/problems/validation-error', 422);
      expect(res.body.detail).to.match(/3 line\(s\).*the first at line 5.*Nothing was stored/);
      expect(res.body.errors).to.deep.include({
        line: 5,
        pointer: '/amount',
        detail: 'must be a finite JSON number, e.g. 15.49 or -3 (not a string)',
      });
      const lines = (res.body.errors as { line: number; pointer: string }[]).map(
        (e) => `${e.line}:${e.pointer}`,
      );
      expect(lines).to.deep.equal(['5:/amount', '6:', '9:/colour']);
      expect(await count('jobs')).to.equal(0);
      expect(await count('batches')).to.equal(0);
    });

    it('refuses a CSV file with a formatted amount or a bad row with 422 naming the line; stores nothing', async () => {
      await start();
      const csv =
        'date,description,amount\n' +
        '2026-04-03,Netflix,15.49\n' +
        '2026-04-03,Rent,"1,234.50"\n' +
        '2026-02-30,,3\n';
      const res = await upload(CSV, csv).expect(422);
      expectProblem(res, '/problems/validation-error', 422);
      const errors = res.body.errors as { line: number; pointer: string; detail: string }[];
      expect(errors.find((e) => e.line === 3)).to.deep.include({ pointer: '/amount' });
      expect(errors.find((e) => e.line === 3)?.detail).to.match(/"1,234.50" is not a plain number/);
      expect(errors.filter((e) => e.line === 4).map((e) => e.pointer)).to.have.members([
        '/date',
        '/description',
      ]);
      expect(await count('jobs')).to.equal(0);
      expect(await count('batches')).to.equal(0);
    });

    it('refuses a CSV header that lacks a required column or names an unknown one, at line 1', async () => {
      await start();
      const res = await upload(CSV, 'date,description,Balance\n2026-04-03,x,3\n').expect(422);
      expectProblem(res, '/problems/validation-error', 422);
      const errors = res.body.errors as { line: number; pointer: string; detail: string }[];
      expect(errors.map((e) => `${e.line}:${e.pointer}`)).to.have.members([
        '1:/balance',
        '1:/amount',
      ]);
      expect(errors.find((e) => e.pointer === '/balance')?.detail).to.match(
        /not a transaction field/,
      );
      expect(await count('batches')).to.equal(0);
    });

    it('refuses CSV that does not parse with 422 naming the line', async () => {
      await start();
      const res = await upload(
        CSV,
        'date,description,amount\n2026-04-03,x,1\n2026-04-03,"unclosed,2\n',
      ).expect(422);
      expectProblem(res, '/problems/validation-error', 422);
      expect(res.body.errors[0]).to.have.property('line').that.is.a('number');
      expect(await count('batches')).to.equal(0);
    });

    it('reads a byte-order mark before the first line as nothing; refuses an overlong line with 422', async () => {
      await start();
      await upload(NDJSON, '\uFEFF' + ndjson(2)).expect(202);
      await upload(CSV, '\uFEFFdate,description,amount\n2026-04-03,x,1\n').expect(202);
      const long = JSON.stringify(tx('x'.repeat(70_000)));
      const res = await upload(NDJSON, ndjson(2) + long + '\n').expect(422);
      expect(res.body.errors).to.deep.equal([
        { line: 3, pointer: '', detail: 'is longer than 65536 bytes' },
      ]);
      // Across many chunks too: the line is refused before it is held whole.
      const huge = await upload(NDJSON, 'x'.repeat(5_000_000)).expect(422);
      expect(huge.body.errors[0]).to.include({ line: 1 });
      const csv = await upload(
        CSV,
        `date,description,amount\n2026-04-03,${'x'.repeat(70_000)},1\n`,
      );
      expect(csv.status).to.equal(422);
      expect(await count('jobs')).to.equal(3);
    });

    it('refuses a file without transactions with 422', async () => {
      await start();
      await upload(NDJSON, '\n\n').expect(422);
      await upload(CSV, 'date,description,amount\n').expect(422);
      expect(await count('batches')).to.equal(0);
    });

    it('stores 100,000 rows streamed in chunks, all in order, storing rows before the body has ended', async function () {
      this.timeout(120_000);
      await start();
      const { req, answer } = await streamingUpload(NDJSON);
      for (let i = 0; i < 50_000; i += 5000) req.write(ndjson(5000, i));
      // The first half is already in Postgres while the request is still open: the body is
      // COPYed as it arrives, not buffered until it ends.
      await eventually(async () => (await stagedBytes()) > 1_000_000, 20_000, 'rows staged');
      for (let i = 50_000; i < 100_000; i += 5000) req.write(ndjson(5000, i));
      req.end();
      const { status, body } = await answer;
      expect(status, body).to.equal(202);
      const batch = JSON.parse(body) as { id: string; size: number };
      expect(batch.size).to.equal(100_000);
      const { rows } = await h.db.raw<{ rows: { n: number; misplaced: number }[] }>(
        `SELECT count(*)::int AS n,
                count(*) FILTER (WHERE transaction->>'reference' <> 'ref-' || batch_index)::int
                  AS misplaced
         FROM jobs WHERE batch_id = ?`,
        [batch.id],
      );
      expect(rows[0]).to.deep.equal({ n: 100_000, misplaced: 0 });
      // Submission order is also the queue's order.
      const { rows: seqOrder } = await h.db.raw<{ rows: { out_of_order: number }[] }>(
        `SELECT count(*)::int AS out_of_order FROM (
           SELECT batch_index, lag(batch_index) OVER (ORDER BY seq) AS previous FROM jobs
         ) s WHERE previous > batch_index`,
      );
      expect(seqOrder[0]?.out_of_order).to.equal(0);
    });

    it('holds no transaction open while the body arrives: event readers are not held back', async () => {
      await start();
      const { id } = await submitJob(h, 'Cancel me');
      const { req, answer } = await streamingUpload(NDJSON);
      req.write(ndjson(6000));
      await eventually(async () => (await stagedBytes()) > 0, 20_000, 'rows staged');
      // A reader of the event log waits for the oldest open write transaction on the server; an
      // upload that kept one open while its client paused would hold every reader back.
      await h.http.delete(`/jobs/${id}`).expect(200);
      await eventually(
        async () => (await readEvents(h.db, { limit: 10 })).some((e) => e.job_id === id),
        20_000,
        'the cancel event, readable while the upload is paused',
      );
      req.end(ndjson(1, 6000));
      expect((await answer).status).to.equal(202);
      expect(await count('jobs')).to.equal(6002);
    });

    it('answers 413 past 100,000 rows and stores nothing', async function () {
      this.timeout(120_000);
      await start();
      const res = await upload(NDJSON, ndjson(100_001)).expect(413);
      expectProblem(res, '/problems/body-too-large', 413);
      expect(res.body.detail).to.match(/at most 100000 transactions/);
      expect(await count('batches')).to.equal(0);
      expect(await count('jobs')).to.equal(0);
    });

    it('answers 413 at once for a declared Content-Length over the limit, without reading the body', async () => {
      await start();
      const port = await listen();
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request({
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: '/normalize_merchant/batch',
          headers: {
            'Content-Type': CSV,
            'Content-Length': String(200 * 1024 * 1024),
            Authorization: `Bearer ${h.key.key}`,
          },
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
        req.on('error', reject);
        req.write('date,description,amount\n');
      });
      expect(status).to.equal(413);
    });

    it('stores nothing when the client goes away mid-upload, and frees the connection', async () => {
      await start({ poolMax: 2 });
      const { req, answer } = await streamingUpload(NDJSON);
      answer.catch(() => {});
      req.write(ndjson(6000));
      await eventually(async () => (await stagedBytes()) > 0, 20_000, 'rows staged');
      req.destroy();
      // Both of the pool's connections serve requests again.
      await eventually(async () => {
        const res = await Promise.all([upload(NDJSON, ndjson(1)), h.http.get('/jobs').expect(200)]);
        return res[0].status === 202;
      });
      expect(await count('batches')).to.equal(1);
      expect(await count('jobs')).to.equal(1);
    });

    it('answers 503 with Retry-After while as many file batches as it takes are uploading', async () => {
      // A pool of 2 takes one file batch at a time (each holds a connection while it uploads).
      await start({ poolMax: 2 });
      const { req, answer } = await streamingUpload(NDJSON);
      req.write(ndjson(6000));
      await eventually(async () => (await stagedBytes()) > 0, 20_000, 'rows staged');
      const busy = await upload(NDJSON, ndjson(1)).expect(503);
      expectProblem(busy, '/problems/service-unavailable', 503);
      expect(busy.headers['retry-after']).to.match(/^\d+$/);
      // JSON batches are not held up.
      await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: [tx('a')] })
        .expect(202);
      req.end(ndjson(10, 6000));
      expect((await answer).status).to.equal(202);
      await upload(NDJSON, ndjson(1)).expect(202);
      expect(await count('jobs')).to.equal(6012);
    });

    it('admits a file all or nothing against the pending-job quota (429, nothing stored)', async () => {
      await start({ quota: { clientMaxPending: 10 } });
      const res = await upload(NDJSON, ndjson(11)).expect(429);
      expectProblem(res, '/problems/pending-quota-exceeded', 429);
      expect(res.headers['retry-after']).to.match(/^\d+$/);
      expect(await count('jobs')).to.equal(0);
      expect(await count('batches')).to.equal(0);
      await upload(NDJSON, ndjson(10)).expect(202);
      expect(await count('jobs')).to.equal(10);
      await upload(NDJSON, ndjson(1)).expect(429);
    });

    it('replays a file sent again with the same Idempotency-Key; another file under it is 422', async () => {
      await start();
      const send = (body: string) => upload(NDJSON, body).set('Idempotency-Key', 'file-1');
      const first = await send(ndjson(3)).expect(202);
      const again = await send(ndjson(3)).expect(202);
      expect(again.headers['idempotent-replayed']).to.equal('true');
      expect(again.body.id).to.equal(first.body.id);
      const other = await send(ndjson(4)).expect(422);
      expectProblem(other, '/problems/idempotency-key-reused', 422);
      expect(await count('batches')).to.equal(1);
      expect(await count('jobs')).to.equal(3);
    });

    it('answers what the result cache knows at submit, as a JSON batch does', async () => {
      const heuristic = new TestHeuristic(echoAfter(0), true);
      await start({ startRunner: true, heuristic });
      const first = await upload(NDJSON, ndjson(2)).expect(202);
      const firstDone = await h.http.get(`/batches/${first.body.id}?wait=10`).expect(200);
      expect(firstDone.body.done).to.equal(true);
      const res = await upload(NDJSON, ndjson(3)).expect(202);
      expect(res.body.counts).to.include({ succeeded: 2, pending: 1 });
      const done = await h.http.get(`/batches/${res.body.id}?wait=10`).expect(200);
      expect(done.body.done).to.equal(true);
      // Runner slots run in parallel: the calls' order is not the submission order.
      expect(heuristic.calls.map((c) => c.description)).to.have.members([
        'Merchant 0',
        'Merchant 1',
        'Merchant 2',
      ]);
    });

    it('refuses a compressed file body with 415, and a body that is neither JSON nor a file', async () => {
      await start();
      const compressed = await upload(NDJSON, ndjson(1))
        .set('Content-Encoding', 'gzip')
        .expect(415);
      expectProblem(compressed, '/problems/unsupported-media-type', 415);
      const plain = await upload('text/plain', ndjson(1)).expect(415);
      expect(plain.body.detail).to.match(/"text\/csv" or "application\/x-ndjson"/);
      expect(await count('batches')).to.equal(0);
    });
  });

  describe('GET /batches/{id}/results as a file', () => {
    /** The results of batch `id` as text, fetched over a real connection. */
    const download = async (id: string, accept: string, query = '') => {
      const port = await listen();
      const res = await fetch(`http://127.0.0.1:${port}/batches/${id}/results${query}`, {
        headers: { Accept: accept, Authorization: `Bearer ${h.key.key}` },
      });
      return {
        status: res.status,
        header: (name: string) => res.headers.get(name),
        text: await res.text(),
      };
    };

    it('streams every item as NDJSON in submission order, each line the item of a JSON page', async () => {
      await start();
      const batch = await upload(NDJSON, ndjson(2500)).expect(202);
      const res = await download(batch.body.id, NDJSON);
      expect(res.status).to.equal(200);
      expect(res.header('content-type')).to.equal(NDJSON);
      expect(res.header('cache-control')).to.equal('no-store');
      expect(res.header('vary')).to.match(/Accept/);
      const lines = res.text
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as { index: number; reference: string });
      expect(lines.map((l) => l.index)).to.deep.equal(Array.from({ length: 2500 }, (_, i) => i));
      expect(lines.map((l) => l.reference)).to.deep.equal(
        Array.from({ length: 2500 }, (_, i) => `ref-${i}`),
      );
      const page = await h.http.get(`/batches/${batch.body.id}/results?limit=3`).expect(200);
      expect(lines.slice(0, 3)).to.deep.equal(page.body.items);
    });

    it('streams every item as CSV with the transaction and its outcome per row', async () => {
      await start({ startRunner: true });
      const csv =
        'date,description,amount,reference\n2026-04-03,"Sushi, Go",12.5,a\n2026-04-04,Netflix,3,b\n';
      const batch = await upload(CSV, csv).expect(202);
      await h.http.get(`/batches/${batch.body.id}?wait=10`).expect(200);
      const res = await download(batch.body.id, CSV);
      expect(res.status).to.equal(200);
      expect(res.header('content-type')).to.match(/^text\/csv/);
      const rows = parseCsv<Record<string, string>>(res.text, { columns: true });
      expect(rows).to.have.length(2);
      expect(rows[0]).to.include({
        index: '0',
        reference: 'a',
        date: '2026-04-03',
        description: 'Sushi, Go',
        amount: '12.5',
        status: 'succeeded',
        merchant: 'Sushi, Go',
        error: '',
      });
      expect(rows[1]).to.include({ index: '1', reference: 'b', merchant: 'Netflix' });
      expect(rows[1]?.job_id).to.match(/^[0-9a-f-]{36}$/);
    });

    it('streams 100,000 items in order in both formats', async function () {
      this.timeout(120_000);
      await start();
      const batch = await upload(NDJSON, ndjson(100_000)).expect(202);
      const ndjsonFile = await download(batch.body.id, NDJSON);
      expect(ndjsonFile.status).to.equal(200);
      const lines = ndjsonFile.text.trimEnd().split('\n');
      expect(lines).to.have.length(100_000);
      const bad = lines.filter((l, i) => (JSON.parse(l) as { index: number }).index !== i);
      expect(bad).to.deep.equal([]);
      const csvFile = await download(batch.body.id, CSV);
      expect(csvFile.status).to.equal(200);
      const rows = parseCsv<{ index: string; reference: string }>(csvFile.text, { columns: true });
      expect(rows).to.have.length(100_000);
      expect(
        rows.filter((r, i) => r.index !== String(i) || r.reference !== `ref-${i}`),
      ).to.deep.equal([]);
    });

    it('negotiates: JSON by default and for types it does not serve; the preferred file type', async () => {
      await start();
      const batch = await upload(NDJSON, ndjson(2)).expect(202);
      const id = batch.body.id as string;
      const plain = await h.http.get(`/batches/${id}/results`).expect(200);
      expect(plain.body.items).to.have.length(2);
      const other = await h.http.get(`/batches/${id}/results`).set('Accept', 'application/xml');
      expect(other.status).to.equal(200);
      expect(other.headers['content-type']).to.match(/^application\/json/);
      const preferred = await download(id, `${CSV};q=0.5, ${NDJSON}`);
      expect(preferred.status).to.equal(200);
      expect(preferred.header('content-type')).to.equal(NDJSON);
      const wildcard = await h.http.get(`/batches/${id}/results`).set('Accept', '*/*').expect(200);
      expect(wildcard.headers['content-type']).to.match(/^application\/json/);
    });

    it('answers 404 problem+json for an unknown batch, and 400 for page parameters', async () => {
      await start();
      const missing = await download(newId(), CSV);
      expect(missing.status).to.equal(404);
      expect(missing.header('content-type')).to.match(/^application\/problem\+json/);
      const batch = await upload(NDJSON, ndjson(1)).expect(202);
      const paged = await h.http
        .get(`/batches/${batch.body.id}/results?limit=5`)
        .set('Accept', CSV)
        .expect(400);
      expectProblem(paged, '/problems/invalid-parameter', 400);
    });
  });
});
