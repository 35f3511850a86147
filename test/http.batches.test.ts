import { expect } from 'chai';
import { newId } from '../src/ids.js';
import { eventually, rowCount } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { expectProblem } from './support/problem.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';

const items = (n: number) =>
  Array.from({ length: n }, (_, i) => tx(`Merchant ${i}`, { reference: `ref-${i}` }));

describe('batches', () => {
  let h: Harness;
  afterEach(() => h.stop());

  const count = (table: string) => rowCount(h.db, table);

  describe('POST /normalize_merchant/batch', () => {
    beforeEach(async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    });

    it('answers 202 with Location and the job ids in submission order, after committing all', async () => {
      const transactions = items(5);
      const res = await h.http.post('/normalize_merchant/batch').send({ transactions }).expect(202);
      expect(res.headers.location).to.equal(`/batches/${res.body.id}`);
      expect(Number(res.headers['retry-after'])).to.be.within(1, 60);
      expect(res.body).to.include({ size: 5, finished: 0, done: false, progress: 0 });
      expect(res.body.counts).to.deep.equal({
        pending: 5,
        running: 0,
        succeeded: 0,
        failed: 0,
        canceled: 0,
      });
      expect(res.body.job_ids).to.have.length(5);
      for (const [i, id] of (res.body.job_ids as string[]).entries()) {
        const job = await h.http.get(`/jobs/${id}`).expect(200);
        expect(job.body.transaction).to.deep.equal(transactions[i]);
        expect(job.body.batch).to.deep.equal({ id: res.body.id, index: i });
      }
      expect(await count('jobs')).to.equal(5);
    });

    it('accepts the maximum of 1000 transactions', async () => {
      const res = await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: items(1000) })
        .expect(202);
      expect(res.body.job_ids).to.have.length(1000);
      expect(await count('jobs')).to.equal(1000);
    });

    it('rejects the whole batch when one item is bad, pointing at the item and field', async () => {
      const transactions: unknown[] = items(20);
      transactions[17] = { ...tx('x'), amount: '12.50' };
      transactions[3] = 'not an object';
      transactions[9] = { ...tx('y'), colour: 'red' };
      const res = await h.http.post('/normalize_merchant/batch').send({ transactions }).expect(422);
      expectProblem(res, '/problems/validation-error', 422);
      const pointers = (res.body.errors as { pointer: string }[]).map((e) => e.pointer);
      expect(pointers).to.have.members([
        '/transactions/17/amount',
        '/transactions/3',
        '/transactions/9/colour',
      ]);
      expect(res.body.errors).to.deep.include({
        pointer: '/transactions/17/amount',
        detail: 'must be a finite JSON number, e.g. 15.49 or -3 (not a string)',
      });
      expect(await count('jobs')).to.equal(0);
      expect(await count('batches')).to.equal(0);
    });

    const badBodies: Array<[string, unknown, string]> = [
      ['an empty list', { transactions: [] }, '/transactions'],
      ['1001 transactions', { transactions: items(1001) }, '/transactions'],
      ['no transactions field', {}, '/transactions'],
      ['transactions not a list', { transactions: tx('a') }, '/transactions'],
      ['an unknown top-level field', { transactions: items(1), callback: 'x' }, '/callback'],
      ['a bare array', items(2), ''],
    ];
    for (const [what, body, pointer] of badBodies) {
      it(`rejects ${what} with 422 pointing at "${pointer}"`, async () => {
        const res = await h.http
          .post('/normalize_merchant/batch')
          .send(body as object)
          .expect(422);
        expectProblem(res, '/problems/validation-error', 422);
        expect((res.body.errors as { pointer: string }[]).map((e) => e.pointer)).to.include(
          pointer,
        );
        expect(await count('batches')).to.equal(0);
      });
    }

    it('caps the list of errors at 100 and says so', async () => {
      const transactions = items(300).map((t) => ({ ...t, amount: 'NaN' }));
      const res = await h.http.post('/normalize_merchant/batch').send({ transactions }).expect(422);
      expect(res.body.errors).to.have.length(100);
      expect(res.body.detail).to.contain('300 error(s)').and.contain('first 100');
    });
  });

  describe('GET /batches/:id and /results', () => {
    it('counts per status, then done with progress 1 and finished_at once every job finished', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(5)) });
      const { body: batch } = await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: items(12) })
        .expect(202);
      const done = await eventually(async () => {
        const r = await h.http.get(`/batches/${batch.id}`).expect(200);
        return r.body.done === true && r;
      });
      expect(done.body).to.include({ size: 12, finished: 12, progress: 1 });
      expect(done.body.counts).to.include({ succeeded: 12, pending: 0, running: 0 });
      expect(Date.parse(done.body.finished_at)).to.be.at.least(Date.parse(done.body.started_at));
      expect(done.headers).not.to.have.property('retry-after');
    });

    it('returns one item per transaction in submission order, with reference, across pages', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)) });
      const { body: batch } = await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: items(7) })
        .expect(202);
      await eventually(async () => (await h.http.get(`/batches/${batch.id}`)).body.done === true);
      const seen: Array<{ index: number; reference: string; result: unknown; job_id: string }> = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query: string = cursor ? `?limit=3&cursor=${cursor}` : '?limit=3';
        const page = await h.http.get(`/batches/${batch.id}/results${query}`).expect(200);
        pages += 1;
        seen.push(...page.body.items);
        cursor = page.body.next_cursor;
        if (cursor)
          expect(page.headers.link).to.contain(`cursor=${cursor}`).and.contain('rel="next"');
      } while (cursor);
      expect(pages).to.equal(3);
      expect(seen.map((i) => i.index)).to.deep.equal([0, 1, 2, 3, 4, 5, 6]);
      expect(seen.map((i) => i.reference)).to.deep.equal(items(7).map((t) => t.reference));
      expect(seen.map((i) => i.job_id)).to.deep.equal(batch.job_ids);
      expect(seen[4]?.result).to.deep.equal({ merchant: { name: 'Merchant 4' } });
    });

    it('keeps submission order when the jobs finish in reverse: by batch_index, on every read', async () => {
      const gate = new Gate();
      h = await startHarness({
        heuristic: new TestHeuristic(gate.behaviour),
        // A slot for each job, so that any of them can finish first.
        runner: { concurrency: 6 },
        // Rows come back in table order unless a query orders them: the batch's unique index
        // would otherwise hand them back in batch_index order by luck.
        pgSettings: {
          enable_indexscan: 'off',
          enable_indexonlyscan: 'off',
          enable_bitmapscan: 'off',
        },
      });
      const transactions = items(6);
      const post = () =>
        h.http
          .post('/normalize_merchant/batch')
          .set('Idempotency-Key', 'reverse')
          .send({ transactions })
          .expect(202);
      const { body: batch } = await post();
      const jobIds = batch.job_ids as string[];
      // Finish the last first, one at a time: rows are rewritten in reverse submission order.
      for (let i = transactions.length - 1; i >= 0; i--) {
        gate.release(`Merchant ${i}`);
        await eventually(
          async () => (await h.store.getJob(jobIds[i]!, null))?.status === 'succeeded',
          5000,
          `Merchant ${i} to finish`,
        );
      }
      const finishOrder = await h
        .db('jobs')
        .where({ batch_id: batch.id })
        .orderBy('finished_at')
        .pluck('batch_index');
      expect(finishOrder).to.deep.equal([5, 4, 3, 2, 1, 0]);

      // The ids the submit answered, read back one by one: id i is transaction i.
      for (const [i, id] of jobIds.entries()) {
        const job = (await h.http.get(`/jobs/${id}`).expect(200)).body;
        expect(job.batch).to.deep.equal({ id: batch.id, index: i });
        expect(job.transaction).to.deep.equal(transactions[i]);
      }
      // A replay lists the same ids in the same order (read from the table this time).
      expect((await post()).body.job_ids).to.deep.equal(jobIds);
      // Results, across pages: item i is transaction i, its job and its answer.
      const seen: Array<{ index: number; reference: string; job_id: string; result: unknown }> = [];
      let cursor: string | null = null;
      do {
        const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
        const page = await h.http.get(`/batches/${batch.id}/results${query}`).expect(200);
        seen.push(...page.body.items);
        cursor = page.body.next_cursor;
      } while (cursor);
      expect(seen).to.have.length(transactions.length);
      for (const [i, item] of seen.entries()) {
        expect(item, `item ${i}`).to.deep.include({
          index: i,
          reference: transactions[i]!.reference,
          job_id: jobIds[i],
          result: { merchant: { name: transactions[i]!.description } },
        });
      }
    });

    it('shows unfinished items as they are, and 404s / 400s clearly', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const { body: batch } = await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: items(2) })
        .expect(202);
      const page = await h.http.get(`/batches/${batch.id}/results`).expect(200);
      expect(page.body.items.map((i: { status: string }) => i.status)).to.deep.equal([
        'pending',
        'pending',
      ]);
      expect(page.body.next_cursor).to.equal(null);

      const missing = '6f1c1d57-8a52-4d8c-9d1e-3f0a2b9c4e11';
      expectProblem(
        await h.http.get(`/batches/${missing}`).expect(404),
        '/problems/not-found',
        404,
      );
      expectProblem(
        await h.http.get(`/batches/${missing}/results`).expect(404),
        '/problems/not-found',
        404,
      );
      expectProblem(await h.http.get('/batches/nope').expect(404), '/problems/not-found', 404);
      const badCursor = await h.http.get(`/batches/${batch.id}/results?cursor=zzz`).expect(400);
      expectProblem(badCursor, '/problems/invalid-parameter', 400);
      expect(badCursor.body.errors[0]).to.include({ parameter: 'cursor' });
      const badLimit = await h.http.get(`/batches/${batch.id}/results?limit=0`).expect(400);
      expect(badLimit.body.errors[0]).to.include({ parameter: 'limit' });
    });
  });

  describe('retention', () => {
    it('purges a batch whole once all its jobs finished before the cutoff, never half of it', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const owner = h.key.client.id;
      const old = await h.store.insertBatch({
        id: crypto.randomUUID(),
        clientId: owner,
        transactions: items(3),
        jobIds: items(3).map(() => newId()),
        maxAttempts: 1,
      });
      const unfinished = await h.store.insertBatch({
        id: crypto.randomUUID(),
        clientId: owner,
        transactions: items(2),
        jobIds: items(2).map(() => newId()),
        maxAttempts: 1,
      });
      const longAgo = new Date(Date.now() - 30 * 24 * 3_600_000);
      await h.db('batches').update({ created_at: longAgo });
      await h
        .db('jobs')
        .whereIn('id', old.jobIds)
        .update({ status: 'succeeded', finished_at: longAgo });
      // One job of the second batch finished long ago, the other is still pending.
      await h
        .db('jobs')
        .where({ id: unfinished.jobIds[0] })
        .update({ status: 'succeeded', finished_at: longAgo });
      // A finished job inside a batch is not purged on its own either.
      expect(await h.store.runner.purgeJobs({ olderThanMs: 0, limit: 100 })).to.equal(0);

      expect(await h.store.runner.purgeBatches({ olderThanMs: 0, limit: 100 })).to.equal(1);
      expect(await h.store.getBatch(old.id, null)).to.equal(undefined);
      expect(
        await h.db('jobs').whereIn('id', old.jobIds).count<{ count: number }[]>('*'),
      ).to.deep.equal([{ count: '0' }]);
      expect((await h.store.getBatch(unfinished.id, null))?.size).to.equal(2);
    });
  });
});
