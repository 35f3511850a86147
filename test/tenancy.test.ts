/**
 * Clients, keys, isolation, quotas and fair share: one client never sees, waits on or cancels
 * another's work, and never starves it.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Response } from 'supertest';
import { type IssuedKey, issueKey } from '../src/auth/keys.js';
import { revokeKey } from '../src/db/sql/clients.js';
import { clientId, eventually, insertJobs, rowCount } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { expectProblem } from './support/problem.js';

describe('API keys', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
  });
  afterEach(() => h.stop());

  const expect401 = (res: Response): string => {
    expectProblem(res, '/problems/unauthorized', 401);
    return String(res.headers['www-authenticate']);
  };

  // Two processes issuing the first key of a client at once (a test starting two servers did):
  // the second insert waited for the first, did nothing, and its statement's snapshot, taken
  // before the first committed, could not see the row it had conflicted with.
  it('issues a key for a client that another transaction creates at the same moment', async () => {
    const trx = await h.db.transaction();
    try {
      const created = await trx.raw<{ rows: [{ id: string }] }>(
        `INSERT INTO clients (name) VALUES ('twin') RETURNING id`,
      );
      const issuing = issueKey(h.db, 'twin');
      await eventually(
        async () => {
          const res = await h.db.raw<{ rows: [{ n: number }] }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock'
             AND query LIKE '%INSERT INTO clients%'`,
          );
          return res.rows[0].n > 0;
        },
        10_000,
        'the second insert waiting on the first',
      );
      await trx.commit();
      expect((await issuing).client.id).to.equal(created.rows[0].id);
    } finally {
      if (!trx.isCompleted()) await trx.rollback();
    }
  });

  it('answers 401 problem+json with a Bearer challenge without a key, and stores nothing', async () => {
    const res = await h.anon.post('/normalize_merchant').send(tx('Netflix'));
    expect(expect401(res)).to.equal('Bearer realm="merchant-normalizer"');
    expect(res.body.detail).to.contain('Authorization: Bearer');
    expect(await rowCount(h.db, 'jobs')).to.equal(0);
    for (const path of ['/jobs', `/jobs/${randomUUID()}`, `/batches/${randomUUID()}`]) {
      expect401(await h.anon.get(path));
    }
    expect401(await h.anon.delete(`/jobs/${randomUUID()}`));
    expect401(await h.anon.post('/normalize_merchant/batch').send({ transactions: [tx('x')] }));
  });

  it('answers 401 for a malformed header, an unknown key and a mistyped key', async () => {
    const malformed = await h.anon.get('/jobs').set('Authorization', `Basic ${h.key.key}`);
    expect(expect401(malformed)).to.contain('error="invalid_request"');
    const unknown = `mn_0123456789ab_${'A'.repeat(43)}`;
    expect(expect401(await h.as(unknown).get('/jobs'))).to.contain('error="invalid_token"');
    // Right id, wrong secret: the hash comparison refuses it.
    const mistyped = `${h.key.key.slice(0, -1)}${h.key.key.endsWith('A') ? 'B' : 'A'}`;
    expect401(await h.as(mistyped).get('/jobs'));
    expect401(await h.as('not-a-key').get('/jobs'));
  });

  it('lets anyone reach health, readiness, metrics and the API docs', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      await h.anon.get(path).expect(200);
    }
  });

  it('lives through create, use and revoke: a revoked key gets 401, even right after a hit', async () => {
    const fresh = await issueKey(h.db, 'c');
    await h.as(fresh.key).get('/jobs').expect(200); // verified and cached
    expect(await revokeKey(h.db, fresh.keyId)).to.equal(true);
    await eventually(
      async () => (await h.as(fresh.key).get('/jobs')).status === 401,
      3000,
      'the revocation to reach the key cache',
    );
    expect(await revokeKey(h.db, fresh.keyId), 'revoking twice').to.equal(false);
    // The client's other keys keep working.
    await h.http.get('/jobs').expect(200);
  });

  it('stores only a hash of each key', async () => {
    const rows = await h.db('api_keys').select('id', 'key_hash');
    expect(rows).to.have.length(1);
    expect(rows[0].id).to.equal(h.key.keyId);
    expect(Buffer.from(rows[0].key_hash as Buffer).toString('utf8')).not.to.contain('mn_');
    const dump = JSON.stringify(await h.db.raw('SELECT * FROM api_keys, clients'));
    expect(dump).not.to.contain(h.key.key.slice(16));
  });
});

describe('isolation between clients', () => {
  let h: Harness;
  let b: IssuedKey;
  let gate: Gate;
  beforeEach(async () => {
    gate = new Gate();
    h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour) });
    b = await issueKey(h.db, 'b');
  });
  afterEach(async () => {
    gate.release();
    await h.stop();
  });

  it("hides A's jobs and batches from B: reading, waiting, listing and cancelling are all 404", async () => {
    const job = (await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202)).body;
    const batch = (
      await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: [tx('Spotify'), tx('Uber')] })
        .expect(202)
    ).body;
    const asB = h.as(b.key);
    const notFound = async (req: PromiseLike<Response>) => {
      expectProblem(await req, '/problems/not-found', 404);
    };

    await notFound(asB.get(`/jobs/${job.id}`));
    const started = Date.now();
    await notFound(asB.get(`/jobs/${job.id}?wait=5`));
    expect(Date.now() - started, 'a wait on a job that is not yours ends at once').to.be.below(
      2000,
    );
    await notFound(asB.delete(`/jobs/${job.id}`));
    await notFound(asB.get(`/batches/${batch.id}`));
    await notFound(asB.get(`/batches/${batch.id}?wait=5`));
    await notFound(asB.get(`/batches/${batch.id}/results`));
    expect((await asB.get('/jobs').expect(200)).body.jobs).to.deep.equal([]);
    expect((await asB.get(`/jobs?batch=${batch.id}`).expect(200)).body.jobs).to.deep.equal([]);
    expect((await asB.get('/jobs?status=pending,running').expect(200)).body.jobs).to.deep.equal([]);

    // B's attempts changed nothing; A still sees and owns everything.
    const own = await h.http.get(`/jobs/${job.id}`).expect(200);
    expect(own.body.status).to.be.oneOf(['pending', 'running']);
    expect((await h.http.get('/jobs').expect(200)).body.jobs).to.have.length(3);
    await h.http.get(`/batches/${batch.id}/results`).expect(200);
    await h.http.delete(`/jobs/${job.id}`).expect(200);
  });

  it('keeps idempotency keys per client: the same key from B is a new job, not a replay or 422', async () => {
    const send = (agent: typeof h.http, description: string) =>
      agent.post('/normalize_merchant').set('Idempotency-Key', '"run-1"').send(tx(description));
    const ofA = await send(h.http, 'Netflix').expect(202);
    const ofB = await send(h.as(b.key), 'Something else entirely').expect(202);
    expect(ofB.headers['idempotent-replayed']).to.equal(undefined);
    expect(ofB.body.id).not.to.equal(ofA.body.id);
    const replay = await send(h.http, 'Netflix').expect(202);
    expect(replay.body.id).to.equal(ofA.body.id);
    const owners = await h.db('jobs').distinct('client_id');
    expect(owners).to.have.length(2);
  });
});

describe('quotas', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      startRunner: false,
      quota: { clientMaxPending: 3, maxPending: 5 },
    });
  });
  afterEach(() => h.stop());

  const submit = (agent: typeof h.http, description = 'Netflix') =>
    agent.post('/normalize_merchant').send(tx(description));

  it('answers 429 with Retry-After past a client’s pending cap; a batch is all or nothing', async () => {
    for (let i = 0; i < 3; i++) await submit(h.http).expect(202);
    const over = await submit(h.http);
    expectProblem(over, '/problems/pending-quota-exceeded', 429);
    expect(Number(over.headers['retry-after'])).to.be.within(1, 60);
    expect(over.body).to.include({ limit: 3 });
    expect(over.body.detail).to.contain('nothing was stored');
    expect(await rowCount(h.db, 'jobs')).to.equal(3);

    // Cancel one: a slot frees up at once (the count is read again before refusing).
    const [first] = (await h.http.get('/jobs').expect(200)).body.jobs as { id: string }[];
    await h.http.delete(`/jobs/${first?.id}`).expect(200);
    const batch = await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('a'), tx('b')] });
    expect(batch.status, 'two do not fit in one free slot').to.equal(429);
    expect(await rowCount(h.db, 'batches')).to.equal(0);
    await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('a')] })
      .expect(202);
  });

  it('does not count an idempotent replay against the cap', async () => {
    const keyed = () => submit(h.http).set('Idempotency-Key', '"same"');
    await keyed().expect(202);
    await keyed().expect(202);
    await submit(h.http).expect(202);
    await submit(h.http).expect(202); // 3 stored: the replay took no slot
    expect(await rowCount(h.db, 'jobs')).to.equal(3);
  });

  it('answers 503 queue-full with Retry-After past the global cap, whoever asks', async () => {
    const b = h.as((await issueKey(h.db, 'b')).key);
    const c = h.as((await issueKey(h.db, 'c')).key);
    for (let i = 0; i < 3; i++) await submit(h.http).expect(202);
    for (let i = 0; i < 2; i++) await submit(b).expect(202);
    const full = await submit(c);
    expectProblem(full, '/problems/queue-full', 503);
    expect(Number(full.headers['retry-after'])).to.be.within(1, 60);
    expect(await rowCount(h.db, 'jobs')).to.equal(5);
  });
});

describe('fair share', () => {
  // Clients that have never been served tie on last_claimed_at and are ordered by id, which is
  // random: each test runs once per order of the ids it involves, so none passes by luck.
  const IDS = [
    '00000000-0000-4000-8000-000000000001',
    '7fffffff-ffff-4fff-bfff-ffffffffffff',
    'ffffffff-ffff-4fff-bfff-fffffffffffe',
  ];

  /** Creates the clients `names`, their ids ascending in that order. */
  async function clientsInIdOrder(db: Harness['db'], names: readonly string[]): Promise<void> {
    await db('clients').insert(names.map((name, i) => ({ id: IDS[i], name })));
  }

  /** Every order of `items`. */
  function permutations<T>(items: readonly T[]): T[][] {
    if (items.length <= 1) return [[...items]];
    return items.flatMap((item, i) =>
      permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
    );
  }

  for (const order of permutations(['big', 'small'])) {
    it(`starts a single job of a new client within 2 claims while another has 100,000 pending (ids: ${order.join(' < ')})`, async function () {
      this.timeout(60_000);
      const h = await startHarness({
        heuristic: new TestHeuristic(echoAfter(0)),
        startRunner: false,
      });
      try {
        await clientsInIdOrder(h.db, order);
        const big = await clientId(h.db, 'big');
        await insertJobs(h.db, 'big', 100_000);
        const claim = () => h.store.runner.claim({ workerId: 'w', limit: 1, leaseMs: 60_000 });
        // The big client has been served for a while: its backlog is mid-flight.
        for (let i = 0; i < 5; i++) expect((await claim())[0]?.client_id).to.equal(big);

        const small = await issueKey(h.db, 'small');
        const job = (
          await h.as(small.key).post('/normalize_merchant').send(tx('Netflix')).expect(202)
        ).body as { id: string };
        const claimed: string[] = [];
        for (let i = 0; i < 2 && !claimed.includes(job.id); i++) {
          claimed.push(...(await claim()).map((r) => r.id));
        }
        expect(claimed, "the small client's job among the next 2 claims").to.include(job.id);
        // And the big one goes on where it was: nothing of its was skipped or lost.
        const pendingOfBig = await h.store.countPending({ clientId: big, cap: 200_000 });
        expect(pendingOfBig).to.equal(100_000 - 5 - (claimed.length - 1));
      } finally {
        await h.stop();
      }
    });
  }

  for (const order of permutations(['backlog', 'bee', 'sea'])) {
    it(`serves clients round-robin through the runner: no client waits behind another’s backlog (ids: ${order.join(' < ')})`, async () => {
      const started: string[] = [];
      const heuristic = new TestHeuristic(async (t) => {
        started.push(t.description.split(' ')[0] ?? '');
        await new Promise((resolve) => setTimeout(resolve, 5));
        return null;
      });
      const h = await startHarness({
        heuristic,
        startRunner: false,
        runner: { concurrency: 1 },
      });
      try {
        await clientsInIdOrder(h.db, order);
        await insertJobs(h.db, 'backlog', 30); // descriptions "backlog N"
        const b = h.as((await issueKey(h.db, 'bee')).key);
        const c = h.as((await issueKey(h.db, 'sea')).key);
        for (let i = 0; i < 3; i++) {
          await b
            .post('/normalize_merchant')
            .send(tx(`bee ${i}`))
            .expect(202);
          await c
            .post('/normalize_merchant')
            .send(tx(`sea ${i}`))
            .expect(202);
        }
        h.runner.start();
        await eventually(async () => started.length === 36, 10_000, 'all 36 jobs');
        // The first 9 starts take turns between the three clients; then the backlog runs alone.
        const firstNine = started.slice(0, 9);
        for (const name of ['backlog', 'bee', 'sea']) {
          expect(
            firstNine.filter((s) => s === name),
            firstNine.join(' '),
          ).to.have.length(3);
        }
        for (let i = 0; i + 2 < 9; i += 3) {
          expect(new Set(firstNine.slice(i, i + 3)).size, firstNine.join(' ')).to.equal(3);
        }
      } finally {
        await h.stop();
      }
    });
  }
});
