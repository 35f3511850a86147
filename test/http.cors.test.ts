import { expect } from 'chai';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';

const APP = 'https://app.example.com';

describe('CORS (CORS_ORIGINS)', () => {
  let h: Harness;
  afterEach(() => h.stop());

  const start = (corsOrigins: string[]) =>
    startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      startRunner: false,
      config: { corsOrigins },
    });

  const preflight = (origin: string, method = 'POST') =>
    h.anon
      .options('/normalize_merchant')
      .set('Origin', origin)
      .set('Access-Control-Request-Method', method)
      .set('Access-Control-Request-Headers', 'authorization,content-type,idempotency-key,prefer');

  it('answers a preflight from a listed origin without a key: methods, headers, max-age', async () => {
    h = await start([APP, 'http://localhost:3000']);
    const res = await preflight(APP).expect(204);
    expect(res.headers['access-control-allow-origin']).to.equal(APP);
    expect(res.headers['access-control-allow-methods']).to.equal('GET,HEAD,POST,DELETE');
    const allowed = String(res.headers['access-control-allow-headers']).split(',');
    expect(allowed).to.include.members(['Authorization', 'Content-Type', 'Idempotency-Key']);
    expect(allowed).to.include.members(['Prefer', 'If-None-Match']);
    expect(res.headers['access-control-max-age']).to.equal('600');
    expect(res.headers.vary).to.contain('Origin');
    expect(res.headers).not.to.have.property('access-control-allow-credentials');
    expect(res.headers['x-request-id']).to.be.a('string');
  });

  it('lets a listed origin read Location, ETag and Retry-After of a submit, and its errors', async () => {
    h = await start([APP]);
    const res = await h.http
      .post('/normalize_merchant')
      .set('Origin', APP)
      .send(tx('Netflix'))
      .expect(202);
    expect(res.headers['access-control-allow-origin']).to.equal(APP);
    const exposed = String(res.headers['access-control-expose-headers']).split(',');
    expect(exposed).to.include.members(['Location', 'ETag', 'Retry-After', 'Link']);
    expect(exposed).to.include.members(['X-Request-Id', 'WWW-Authenticate', 'Preference-Applied']);
    // A 401 is readable too, so the page can tell its user the key is wrong.
    const denied = await h.anon.get('/jobs').set('Origin', APP).expect(401);
    expect(denied.headers['access-control-allow-origin']).to.equal(APP);
    const missing = await h.http.get('/nowhere').set('Origin', APP).expect(404);
    expect(missing.headers['access-control-allow-origin']).to.equal(APP);
  });

  it('gives an origin not on the list no CORS headers, preflight or not', async () => {
    h = await start([APP]);
    const res = await preflight('https://evil.example.com');
    expect(res.status).not.to.equal(204);
    expect(res.headers).not.to.have.property('access-control-allow-origin');
    const get = await h.http.get('/jobs').set('Origin', 'https://evil.example.com').expect(200);
    expect(get.headers).not.to.have.property('access-control-allow-origin');
  });

  it('allows any origin with "*"', async () => {
    h = await start(['*']);
    const res = await preflight('https://anywhere.example.org', 'DELETE').expect(204);
    expect(res.headers['access-control-allow-origin']).to.equal('*');
  });

  it('sends no CORS headers by default', async () => {
    h = await start([]);
    const res = await preflight(APP);
    expect(res.headers).not.to.have.property('access-control-allow-origin');
    const get = await h.http.get('/jobs').set('Origin', APP).expect(200);
    expect(get.headers).not.to.have.property('access-control-allow-origin');
  });
});
