/**
 * Failed authentication costs no database work in steady state: a negative cache for keys found
 * invalid, and a per-address limit on failed lookups (AUTH_FAILURES_PER_MINUTE).
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { problemOf } from '../src/http/problem.js';
import { Authenticator } from '../src/auth/authenticator.js';
import { issueKey } from '../src/auth/keys.js';
import { revokeKey } from '../src/db/sql/clients.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';
import { expectProblem } from './support/problem.js';

/** A well-formed key that exists nowhere: checking it needs a lookup. */
const randomKey = () =>
  `mn_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url')}`;

/** Counts the key lookups `db` runs, calling `each` as each one starts. */
function countLookups(db: Harness['db'], each: () => void = () => undefined): () => number {
  let n = 0;
  db.on('query', (q: { sql: string }) => {
    if (!q.sql.includes('FROM api_keys')) return;
    n += 1;
    each();
  });
  return () => n;
}

describe('failed authentication', () => {
  let h: Harness;
  afterEach(() => h.stop());

  it('looks an invalid key up once: the same key again is 401 from memory', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const lookups = countLookups(h.service.db);
    const key = randomKey();
    for (let i = 0; i < 20; i++) {
      const res = await h.as(key).get('/jobs').expect(401);
      expectProblem(res, '/problems/unauthorized', 401);
    }
    expect(lookups()).to.equal(1);
  });

  it('answers 429 without a lookup once an address has failed AUTH_FAILURES_PER_MINUTE times', async () => {
    h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      startRunner: false,
      config: { authFailuresPerMinute: 5 },
    });
    await h.http.get('/jobs').expect(200); // client "a"'s key: verified and remembered
    const lookups = countLookups(h.service.db);
    const answers = [];
    for (let i = 0; i < 50; i++) answers.push(await h.as(randomKey()).get('/jobs'));
    expect(answers.slice(0, 5).map((r) => r.status)).to.deep.equal([401, 401, 401, 401, 401]);
    for (const res of answers.slice(5)) {
      expectProblem(res, '/problems/too-many-failed-authentications', 429);
      // 5 a minute: one comes back every 12 s.
      expect(Number(res.headers['retry-after'])).to.be.within(1, 12);
    }
    expect(lookups()).to.equal(5);
    // A key this process has verified is served as before, from the same address.
    await h.http.get('/jobs').expect(200);
    // A valid key it has not seen yet waits like the rest: the address is what is limited.
    const fresh = await issueKey(h.db, 'b');
    await h.as(fresh.key).get('/jobs').expect(429);
    expect(lookups()).to.equal(5);
  });

  it('looks a valid key up once, then serves it from memory', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const lookups = countLookups(h.service.db);
    await h.http.get('/jobs').expect(200);
    await h.http.get('/jobs').expect(200);
    expect(lookups()).to.equal(1);
  });
});

describe('Authenticator', () => {
  let h: Harness;
  afterEach(() => h.stop());

  // A busy client's connections all arrive with its key when the trust runs out (and at start).
  it('looks a key up once for the requests that bring it while it is being looked up', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const auth = new Authenticator(h.db, { failuresPerMinute: 2 });
    const lookups = countLookups(h.db);
    const all = await Promise.all(
      Array.from({ length: 20 }, () => auth.authenticate(`Bearer ${h.key.key}`, 'addr')),
    );
    expect(all.map((p) => p.name)).to.deep.equal(Array(20).fill('a'));
    expect(lookups()).to.equal(1);
    // The same for a key that is not valid: one lookup, and one failure charged, not twenty.
    const bad = `Bearer ${randomKey()}`;
    const failures = await Promise.all(
      Array.from({ length: 20 }, () =>
        auth.authenticate(bad, 'addr').then(
          () => 'authenticated',
          (err: unknown) => problemOf(err)?.status,
        ),
      ),
    );
    expect(failures).to.deep.equal(Array(20).fill(401));
    expect(lookups()).to.equal(2);
    // One of the address's 2 failed lookups a minute is left: one more is tried, then 429.
    const next = () =>
      auth.authenticate(`Bearer ${randomKey()}`, 'addr').then(
        () => 'authenticated',
        (err: unknown) => problemOf(err)?.status,
      );
    expect(await next()).to.equal(401);
    expect(await next()).to.equal(429);
  });

  // The revocation's NOTIFY can arrive while a lookup that read the key before the revocation
  // committed is still under way; remembering that answer would trust a revoked key for cacheMs.
  it('does not remember a key whose revocation arrived while it was being looked up', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const auth = new Authenticator(h.db, { cacheMs: 60_000 });
    let revokeNow = true;
    const lookups = countLookups(h.db, () => {
      if (!revokeNow) return;
      revokeNow = false;
      auth.forget(h.key.keyId); // the notification, while the lookup's query is under way
    });
    expect((await auth.authenticate(`Bearer ${h.key.key}`, 'addr')).name).to.equal('a');
    expect(await revokeKey(h.db, h.key.keyId)).to.equal(true);
    const again = await auth.authenticate(`Bearer ${h.key.key}`, 'addr').then(
      () => 'authenticated',
      (err: unknown) => problemOf(err)?.status,
    );
    expect(again).to.equal(401);
    expect(lookups()).to.equal(2);
  });

  it('checks a known key again when its trust runs out, even from an address out of failures', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const auth = new Authenticator(h.db, { cacheMs: 1, failuresPerMinute: 1 });
    expect((await auth.authenticate(`Bearer ${h.key.key}`, 'addr')).name).to.equal('a');
    const failure = (header: string, address: string) =>
      auth.authenticate(header, address).then(
        () => expect.fail('authenticated'),
        // The authenticator throws domain errors; this is the status the API answers with.
        (err: unknown) => ({ status: problemOf(err)?.status }),
      );
    expect(await failure(`Bearer ${randomKey()}`, 'addr')).to.include({ status: 401 });
    expect(await failure(`Bearer ${randomKey()}`, 'addr')).to.include({ status: 429 });
    // Another address has its own allowance.
    expect(await failure(`Bearer ${randomKey()}`, 'elsewhere')).to.include({ status: 401 });
    await new Promise((resolve) => setTimeout(resolve, 5)); // past cacheMs: 1
    expect((await auth.authenticate(`Bearer ${h.key.key}`, 'addr')).name).to.equal('a');
    // Malformed keys cost no lookup and use up nothing.
    for (let i = 0; i < 3; i++) {
      expect(await failure('Bearer not-a-key', 'elsewhere')).to.include({ status: 401 });
    }
  });
});
