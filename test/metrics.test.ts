import { expect } from 'chai';
import { eventually } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { Gate, TestHeuristic, tx } from './support/heuristics.js';

/** The value of one sample line (`name{labels} value`) in a Prometheus text scrape. */
function sample(text: string, name: string, labels = ''): number {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('GET /metrics', () => {
  let h: Harness;
  afterEach(() => h.stop());

  it('shows submits, finishes, queue depth, busy slots and HTTP durations moving', async () => {
    const gate = new Gate();
    h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour) });
    const scrape = async () => {
      const res = await h.http.get('/metrics').expect(200);
      expect(res.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/);
      return res.text;
    };
    const before = await scrape();
    expect(sample(before, 'merchant_jobs_submitted_total', 'via="single"')).to.equal(0);
    expect(before).to.contain('# TYPE merchant_heuristic_duration_seconds histogram');
    expect(before).to.contain('process_resident_memory_bytes');

    const single = (await h.http.post('/normalize_merchant').send(tx('A')).expect(202)).body;
    await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('B'), tx('C'), tx('D'), tx('E'), tx('F')] })
      .expect(202);
    // 4 slots: A..D run (held at the gate), E and F wait.
    await eventually(async () => h.runner.busySlots === 4);
    const busy = await scrape();
    expect(sample(busy, 'merchant_jobs_submitted_total', 'via="single"')).to.equal(1);
    expect(sample(busy, 'merchant_jobs_submitted_total', 'via="batch"')).to.equal(5);
    expect(sample(busy, 'merchant_runner_busy_slots')).to.equal(4);
    expect(sample(busy, 'merchant_jobs_queued', 'status="running"')).to.equal(4);
    expect(sample(busy, 'merchant_jobs_queued', 'status="pending"')).to.equal(2);

    await h.http.delete(`/jobs/${single.id}`).expect(200);
    // Release the others only once the runner has aborted the canceled attempt: released first,
    // that attempt could answer before the abort arrives, and its answer is then "discarded".
    await eventually(async () => gate.aborted.length === 1, 10_000, 'the attempt aborted');
    gate.release();
    await eventually(async () => {
      const text = await scrape();
      return (
        sample(text, 'merchant_jobs_finished_total', 'outcome="succeeded"') === 5 &&
        sample(text, 'merchant_job_attempts_total', 'outcome="canceled"') === 1 &&
        text
      );
    });
    const after = await scrape();
    expect(sample(after, 'merchant_jobs_finished_total', 'outcome="canceled"')).to.equal(1);
    expect(sample(after, 'merchant_job_attempts_total', 'outcome="canceled"')).to.equal(1);
    expect(sample(after, 'merchant_heuristic_duration_seconds_count')).to.equal(6);
    expect(sample(after, 'merchant_jobs_queued', 'status="pending"')).to.equal(0);
    expect(sample(after, 'merchant_runner_busy_slots')).to.equal(0);
    expect(
      sample(
        after,
        'merchant_http_request_duration_seconds_count',
        'method="POST",route="/normalize_merchant",status="202"',
      ),
    ).to.equal(1);
    expect(
      sample(
        after,
        'merchant_http_request_duration_seconds_count',
        'method="DELETE",route="/jobs/:id",status="200"',
      ),
    ).to.equal(1);
  });

  it('collapses unmatched paths into one route label', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(async () => null), startRunner: false });
    for (const path of ['/nope', '/x/y/z', '/jobs/a/b']) await h.http.get(path).expect(404);
    const text = (await h.http.get('/metrics')).text;
    expect(
      sample(
        text,
        'merchant_http_request_duration_seconds_count',
        'method="GET",route="(unmatched)",status="404"',
      ),
    ).to.equal(3);
    expect(text).not.to.contain('/x/y/z');
  });

  it('sends security headers on every answer; the docs page gets its own CSP', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(async () => null), startRunner: false });
    for (const path of ['/healthz', '/jobs', '/nope']) {
      const res = await h.http.get(path);
      expect(res.headers).to.include({
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
        'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
      });
    }
    const docs = await h.http.get('/docs').expect(200);
    expect(docs.headers['content-security-policy']).to.contain("default-src 'self'");
  });
});
