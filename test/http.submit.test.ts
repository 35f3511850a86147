import { createHash } from 'node:crypto';
import { expect } from 'chai';
import { rowCount } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { expectProblem } from './support/problem.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';

const valid = { date: '2026-04-03', description: 'Payment Netflix APRIL***', amount: 15.49 };

describe('POST /normalize_merchant', () => {
  let h: Harness;
  beforeEach(async () => {
    // The runner stays stopped so accepted jobs remain pending for inspection.
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
  });
  afterEach(() => h.stop());

  const jobCount = () => rowCount(h.db, 'jobs');

  it('answers 202 with Location, Retry-After and the pending job, after committing its row', async () => {
    const res = await h.http.post('/normalize_merchant').send(valid).expect(202);
    expect(res.headers['content-type']).to.match(/^application\/json/);
    expect(res.headers.location).to.equal(`/jobs/${res.body.id}`);
    expect(Number(res.headers['retry-after'])).to.be.within(1, 60);
    expect(res.body).to.include({ status: 'pending', attempts: 0, result: null, error: null });
    expect(res.body.transaction).to.deep.equal(valid);
    expect(res.body.id).to.match(/^[0-9a-f-]{36}$/);
    expect(Date.parse(res.body.created_at)).to.be.closeTo(Date.now(), 60_000);
    // The row is visible to any other connection as soon as the 202 is out.
    const row = await h.db('jobs').where({ id: res.body.id }).first();
    expect(row.status).to.equal('pending');
    expect(row.transaction).to.deep.equal(valid);
  });

  it('tags the body it sends: ETag is over the JSON as sent, on the 202 and on a read', async () => {
    const tagOf = (text: string) =>
      `"${createHash('sha256').update(text, 'utf8').digest('base64url').slice(0, 27)}"`;
    const body = { ...valid, description: 'Café Zürich 🍕' };
    const submitted = await h.http.post('/normalize_merchant').send(body).expect(202);
    expect(submitted.headers['content-type']).to.equal('application/json; charset=utf-8');
    expect(submitted.headers.etag).to.equal(tagOf(submitted.text));
    expect(Number(submitted.headers['content-length'])).to.equal(Buffer.byteLength(submitted.text));
    expect(JSON.parse(submitted.text).transaction).to.deep.equal(body);
    const read = await h.http.get(submitted.headers.location as string).expect(200);
    expect(read.headers['content-type']).to.equal('application/json; charset=utf-8');
    expect(read.headers.etag).to.equal(tagOf(read.text));
    expect(read.headers.etag).to.equal(submitted.headers.etag);
    await h.http
      .get(submitted.headers.location as string)
      .set('If-None-Match', read.headers.etag as string)
      .expect(304);
  });

  it('carries X-Request-Id: echoes a sane one, generates one otherwise', async () => {
    const echoed = await h.http
      .post('/normalize_merchant')
      .set('X-Request-Id', 'batch-7.row-12')
      .send(valid);
    expect(echoed.headers['x-request-id']).to.equal('batch-7.row-12');
    const generated = await h.http
      .post('/normalize_merchant')
      .set('X-Request-Id', 'bad id with spaces')
      .send(valid);
    expect(generated.headers['x-request-id']).to.match(/^[0-9a-f-]{36}$/);
    const onError = await h.http.post('/normalize_merchant').send({});
    expect(onError.status).to.equal(422);
    expect(onError.headers['x-request-id']).to.match(/^[0-9a-f-]{36}$/);
  });

  describe('accepts edge cases that are valid transactions', () => {
    const accepted: Array<[string, Record<string, unknown>]> = [
      ['a unicode description', { ...valid, description: 'Café Zürich 🍕 東京 №5' }],
      ['a refund with a negative amount', { ...valid, amount: -42.1 }],
      ['a zero amount', { ...valid, amount: 0 }],
      ['an integer amount', { ...valid, amount: 100 }],
      ['a leap day', { ...valid, date: '2024-02-29' }],
      ['a description of exactly 500 characters', { ...valid, description: 'A'.repeat(500) }],
      ['every optional field', { ...valid, currency: 'EUR', mcc: '5411', reference: 'txn-000123' }],
    ];
    for (const [name, body] of accepted) {
      it(`accepts ${name}`, async () => {
        const res = await h.http.post('/normalize_merchant').send(body).expect(202);
        expect(res.body.transaction).to.deep.equal(body);
      });
    }

    it('accepts a JSON content type with a charset parameter', async () => {
      await h.http
        .post('/normalize_merchant')
        .set('Content-Type', 'application/json; charset=utf-8')
        .send(JSON.stringify(valid))
        .expect(202);
    });
  });

  describe('rejects bad input with a problem naming the field, and stores nothing', () => {
    const { amount: _a, ...noAmount } = valid;
    const { date: _d, ...noDate } = valid;
    const { description: _s, ...noDescription } = valid;
    const cases: Array<[string, unknown, string]> = [
      ['a missing date', noDate, '/date'],
      ['a missing description', noDescription, '/description'],
      ['a missing amount', noAmount, '/amount'],
      ['an amount sent as a string', { ...valid, amount: '15.49' }, '/amount'],
      ['a null amount', { ...valid, amount: null }, '/amount'],
      ['a boolean amount', { ...valid, amount: true }, '/amount'],
      ['an impossible date (30 February)', { ...valid, date: '2026-02-30' }, '/date'],
      ['a 13th month', { ...valid, date: '2026-13-01' }, '/date'],
      ['29 February in a common year', { ...valid, date: '2025-02-29' }, '/date'],
      ['a date in another format', { ...valid, date: '04/03/2026' }, '/date'],
      ['a date with a time', { ...valid, date: '2026-04-03T10:00:00Z' }, '/date'],
      ['a numeric date', { ...valid, date: 20260403 }, '/date'],
      ['an empty description', { ...valid, description: '' }, '/description'],
      ['a whitespace-only description', { ...valid, description: ' \t ' }, '/description'],
      ['a 501-character description', { ...valid, description: 'A'.repeat(501) }, '/description'],
      ['a numeric description', { ...valid, description: 42 }, '/description'],
      ['an unknown field', { ...valid, merchant: 'Netflix' }, '/merchant'],
      ['a lower-case currency', { ...valid, currency: 'usd' }, '/currency'],
      ['a currency that is not ISO 4217', { ...valid, currency: 'XYZ' }, '/currency'],
      ['a three-digit mcc', { ...valid, mcc: '541' }, '/mcc'],
      ['a numeric mcc', { ...valid, mcc: 5411 }, '/mcc'],
      ['an empty reference', { ...valid, reference: '' }, '/reference'],
      ['an array body', [valid], ''],
      ['a JSON string body', 'Payment Netflix', ''],
      ['a JSON null body', null, ''],
    ];
    for (const [name, body, pointer] of cases) {
      it(`rejects ${name} with 422 pointing at "${pointer}"`, async () => {
        const res = await h.http
          .post('/normalize_merchant')
          .set('Content-Type', 'application/json')
          .send(JSON.stringify(body))
          .expect(422);
        expectProblem(res, '/problems/validation-error', 422);
        const pointers = (res.body.errors as Array<{ pointer: string; detail: string }>).map(
          (e) => e.pointer,
        );
        expect(pointers).to.deep.equal([pointer]);
        expect(res.body.errors[0].detail).to.be.a('string').and.not.be.empty;
        expect(await jobCount()).to.equal(0);
      });
    }

    it('rejects a non-finite amount (1e400 parses to Infinity)', async () => {
      const res = await h.http
        .post('/normalize_merchant')
        .set('Content-Type', 'application/json')
        .send('{"date":"2026-04-03","description":"X","amount":1e400}')
        .expect(422);
      expect(res.body.errors).to.deep.equal([
        {
          pointer: '/amount',
          detail: 'must be a finite JSON number, e.g. 15.49 or -3 (not a string)',
        },
      ]);
    });

    it('lists every bad field at once', async () => {
      const res = await h.http
        .post('/normalize_merchant')
        .send({ date: 'soon', amount: 'lots', extra: 1 })
        .expect(422);
      const pointers = (res.body.errors as Array<{ pointer: string }>).map((e) => e.pointer);
      expect(pointers).to.have.members(['/date', '/description', '/amount', '/extra']);
    });

    it('answers 400 for malformed JSON', async () => {
      const res = await h.http
        .post('/normalize_merchant')
        .set('Content-Type', 'application/json')
        .send('{"date": "2026-04-03", "amount": ')
        .expect(400);
      expectProblem(res, '/problems/malformed-json', 400);
      expect(await jobCount()).to.equal(0);
    });

    it('answers 415 for a body that is not declared as JSON', async () => {
      const res = await h.http
        .post('/normalize_merchant')
        .set('Content-Type', 'text/plain')
        .send(JSON.stringify(valid))
        .expect(415);
      expect(res.body).to.include({ type: '/problems/unsupported-media-type', status: 415 });
      expect(res.body.detail).to.contain('application/json');
    });

    it('answers 415 for a form-encoded body', async () => {
      await h.http.post('/normalize_merchant').type('form').send(valid).expect(415);
    });

    it('answers 415 when there is no body and no content type', async () => {
      await h.http.post('/normalize_merchant').expect(415);
    });

    it('answers 413 for a body over the size limit', async () => {
      const res = await h.http
        .post('/normalize_merchant')
        .send({ ...valid, description: 'A'.repeat(20_000) })
        .expect(413);
      expectProblem(res, '/problems/body-too-large', 413);
      expect(await jobCount()).to.equal(0);
    });

    it('never leaks a stack trace in an error body', async () => {
      const res = await h.http
        .post('/normalize_merchant')
        .set('Content-Type', 'application/json')
        .send('{bad')
        .expect(400);
      expect(JSON.stringify(res.body)).not.to.match(/\bat .+\.(ts|js):\d+/);
    });
  });
});
