/**
 * A finished attempt whose result cannot be written at once: the result is kept and retried
 * while the claim holds (without running the heuristic again), and a write that cannot succeed
 * hands the job back as pending. Never is a job left `running` for its lease to expire. The
 * failures are real: a trigger in the test's own database refuses the completion, or a TCP
 * proxy cuts the service off from Postgres.
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import { backendsWaiting, eventually } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { Gate, TestHeuristic, echoAfter } from './support/heuristics.js';

/**
 * Makes the completion (`running` -> `succeeded`) of jobs whose description matches `pattern`
 * fail `times` times with SQLSTATE `code` (with `firstAttemptOnly`, only those of attempt 1),
 * then pass. A sequence counts the failures: it is not rolled back with the failed statement.
 */
async function refuseCompletions(
  db: Knex,
  opts: { pattern: string; code: string; times: number; firstAttemptOnly?: boolean },
): Promise<{ failures: () => Promise<number> }> {
  await db.raw(`CREATE SEQUENCE test_completion_failures`);
  await db.raw(`
    CREATE FUNCTION test_refuse_completion() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.status = 'running' AND NEW.status = 'succeeded'
         AND NEW.transaction->>'description' LIKE '${opts.pattern}'
         AND (NOT ${opts.firstAttemptOnly ?? false} OR NEW.attempts = 1) THEN
        IF nextval('test_completion_failures') <= ${opts.times} THEN
          RAISE EXCEPTION 'completion refused by the test' USING ERRCODE = '${opts.code}';
        END IF;
      END IF;
      RETURN NEW;
    END $$`);
  await db.raw(`CREATE TRIGGER test_refuse_completion BEFORE UPDATE ON jobs
                FOR EACH ROW EXECUTE FUNCTION test_refuse_completion()`);
  return {
    failures: async () => {
      const res = await db.raw<{ rows: { n: string; called: boolean }[] }>(
        `SELECT last_value AS n, is_called AS called FROM test_completion_failures`,
      );
      const row = res.rows[0];
      return row?.called ? Math.min(Number(row.n), opts.times) : 0;
    },
  };
}

const jobRow = (h: Harness, id: string) => h.store.getJob(id, null);

describe('a completion write that fails', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('with a transient error, past the old 6 tries: kept and retried, the heuristic runs once', async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    h = await startHarness({ heuristic });
    const refused = await refuseCompletions(h.db, { pattern: 'Netflix', code: '40001', times: 6 });
    const job = await submitJob(h, 'Netflix');
    const done = await eventually(
      async () => {
        const row = await jobRow(h!, job.id);
        return row?.status === 'succeeded' && row;
      },
      15_000,
      'the job to succeed',
    );
    expect(await refused.failures()).to.equal(6);
    expect(heuristic.calls).to.have.length(1);
    expect(done).to.include({ attempts: 1, error: null });
    expect(done.result).to.deep.equal({ merchant: { name: 'Netflix' } });
  });

  it('with an error retrying cannot fix: handed back as pending at once, then succeeds', async () => {
    const gate = new Gate();
    gate.release('Netflix'); // the first call answers at once; the second waits at the gate
    const heuristic = new TestHeuristic(async (tx, signal, call) => {
      if (call === 1) return { name: tx.description };
      return gate.behaviour({ ...tx, description: 'second call' }, signal, call);
    });
    h = await startHarness({ heuristic });
    const refused = await refuseCompletions(h.db, { pattern: 'Netflix', code: 'P0001', times: 1 });
    const job = await submitJob(h, 'Netflix');
    // Handed back and claimed again (not left running until its 5 s lease expires): the
    // second attempt runs, and the job says why the first did not count.
    const retried = await eventually(
      async () => {
        const row = await jobRow(h!, job.id);
        return heuristic.calls.length === 2 && row?.status === 'running' && row;
      },
      3000,
      'the second attempt',
    );
    expect(await refused.failures()).to.equal(1);
    expect(retried.attempts).to.equal(2);
    expect(retried.error).to.include({ code: 'result_not_stored', attempt: 1 });
    gate.release('second call');
    const done = await eventually(async () => {
      const row = await jobRow(h!, job.id);
      return row?.status === 'succeeded' && row;
    });
    expect(done).to.include({ attempts: 2, error: null });
  });

  it('with an error retrying cannot fix, in a group: only the refused job is handed back', async () => {
    const gate = new Gate();
    const heuristic = new TestHeuristic(gate.behaviour);
    h = await startHarness({ heuristic });
    // "Slow" holds the group-commit writer for a moment, so the others queue up and are
    // written together; "Bad%" is refused once.
    await h.db.raw(`CREATE FUNCTION test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.status = 'succeeded' AND NEW.transaction->>'description' = 'Slow' THEN
          PERFORM pg_sleep(0.3);
        END IF;
        RETURN NEW;
      END $$`);
    await h.db.raw(`CREATE TRIGGER test_slow BEFORE UPDATE ON jobs
                    FOR EACH ROW EXECUTE FUNCTION test_slow()`);
    // Attempt 1 of "Bad one" cannot be stored, alone or with others.
    const refused = await refuseCompletions(h.db, {
      pattern: 'Bad%',
      code: '23514',
      times: 100,
      firstAttemptOnly: true,
    });
    const slow = await submitJob(h, 'Slow');
    const bad = await submitJob(h, 'Bad one');
    const good = [await submitJob(h, 'Good 1'), await submitJob(h, 'Good 2')];
    await eventually(async () => heuristic.running === 4, 5000, 'four attempts running');
    gate.release('Slow');
    // Released while "Slow" is being written (its statement is sleeping in the trigger): these
    // three complete in one group, the next one.
    await eventually(
      async () => (await backendsWaiting(h!.db, { event: 'PgSleep' })) > 0,
      5000,
      '"Slow" being written',
    );
    gate.release('Bad one');
    gate.release('Good 1');
    gate.release('Good 2');
    for (const j of [slow, bad, ...good]) {
      await eventually(async () => (await jobRow(h!, j.id))?.status === 'succeeded');
    }
    // Refused twice: with its group, and then on its own.
    expect(await refused.failures()).to.equal(2);
    const calls = (d: string) => heuristic.calls.filter((c) => c.description === d).length;
    expect(calls('Good 1')).to.equal(1);
    expect(calls('Good 2')).to.equal(1);
    expect(calls('Bad one')).to.equal(2);
    expect((await jobRow(h, bad.id))?.attempts).to.equal(2);
    // The split is counted, for alerting, beside its log line.
    const metrics = (await h.http.get('/metrics').expect(200)).text;
    expect(metrics).to.include('merchant_group_commit_splits_total{statement="completions"} 1');
    expect(metrics).to.include('merchant_group_commit_splits_total{statement="submits"} 0');
  });
});

describe('a completion during a database outage longer than the lease', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('lands when the database is back, without running the heuristic again', async () => {
    const gate = new Gate();
    const heuristic = new TestHeuristic(gate.behaviour);
    // A short lease, and a reaper (the poll) running every 200 ms once the database is back.
    h = await startHarness({ heuristic, proxy: true, runner: { leaseMs: 1000, pollMs: 200 } });
    const proxy = h.proxy!;
    const job = await submitJob(h, 'Netflix');
    await eventually(async () => h!.runner.busySlots === 1, 5000, 'the attempt to start');

    proxy.refuseNew(true);
    proxy.dropAll();
    gate.release(); // the answer is ready; the database is not
    const answered = performance.now();
    // The outage lasts longer than the lease, and than the 6 tries over about 3 s that the
    // runner used to make before dropping the answer (the fault's length, not a proof).
    await eventually(
      async () => {
        const row = await jobRow(h!, job.id);
        const expired = row?.locked_until && row.locked_until.getTime() < Date.now() - 1500;
        return expired && proxy.refused >= 20 && performance.now() - answered > 5000;
      },
      20_000,
      'the lease to be long expired',
    );
    expect((await jobRow(h, job.id))?.status).to.equal('running');
    proxy.refuseNew(false);

    const done = await eventually(
      async () => {
        const row = await jobRow(h!, job.id);
        return row?.status === 'succeeded' && row;
      },
      10_000,
      'the kept result to land',
    );
    expect(heuristic.calls).to.have.length(1);
    expect(done).to.include({ attempts: 1, error: null });
    expect(done.result).to.deep.equal({ merchant: { name: 'Netflix' } });
  });

  it('is given up when shutdown ends its grace period: stop() does not wait for the database', async () => {
    const gate = new Gate();
    h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour), proxy: true });
    const proxy = h.proxy!;
    const job = await submitJob(h, 'Netflix');
    await eventually(async () => h!.runner.busySlots === 1, 5000, 'the attempt to start');
    proxy.refuseNew(true);
    proxy.dropAll();
    gate.release();
    await eventually(async () => proxy.refused >= 3, 5000, 'completion tries to fail');
    // SHUTDOWN_GRACE_MS is 0 in tests: the kept answer is dropped, the lease will expire.
    await h.runner.stop(0);
    expect(h.runner.busySlots).to.equal(0);
    proxy.refuseNew(false);
    expect((await jobRow(h, job.id))?.status).to.equal('running');
  });
});
