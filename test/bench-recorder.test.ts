/**
 * The bench's pick-up measure (bench/recorder.ts): a remote heuristic that notes when each call
 * arrives. The pick-up is the time from a submit's sending to its call's arrival; the jobs' own
 * `started_at - created_at`, which the bench read before, is 0 for a job an idle runner starts at
 * its insert (both are its insert's instant), and said nothing of how soon the heuristic was
 * called. Here the service calls the recorder as `HEURISTIC=http` does.
 */
import { expect } from 'chai';
import { HttpHeuristic } from '../src/heuristic/http.js';
import { now } from '../bench/harness.js';
import { type Recorder, startRecorder } from '../bench/recorder.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';

describe('bench/recorder.ts', function () {
  this.timeout(20_000);
  let recorder: Recorder;
  let h: Harness;

  beforeEach(async () => {
    recorder = await startRecorder();
    const heuristic = new HttpHeuristic({
      url: recorder.url,
      version: 'bench',
      connections: 1,
      timeoutMs: 5_000,
    });
    h = await startHarness({ heuristic });
  });
  afterEach(async () => {
    await h.stop();
    await recorder.close();
  });

  it('notes when the call for a submitted job arrives, and answers it as the service expects', async () => {
    const sent = now();
    const { id } = await submitJob(h, 'PICKUP 1');
    const arrived = await recorder.arrival('PICKUP 1');
    expect(arrived).to.be.above(sent);

    const res = await h.http.get(`/jobs/${id}?wait=5`).expect(200);
    expect(res.body).to.nested.include({ status: 'succeeded', 'result.merchant.name': 'Bench' });
  });

  it('gives the arrival of a call that came before it was asked for', async () => {
    const sent = now();
    const { id } = await submitJob(h, 'PICKUP 2');
    // Finished: its call has come and gone before the recorder is asked.
    await h.http.get(`/jobs/${id}?wait=5`).expect(200);
    const arrived = await recorder.arrival('PICKUP 2');
    expect(arrived).to.be.above(sent).and.below(now());
  });

  // It waited for ever: a pick-up phase whose job another process ran hung the whole bench.
  it('rejects, naming the call, when none comes within the time given', async () => {
    const error = await recorder.arrival('NEVER SENT', 50).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.equal('no heuristic call for "NEVER SENT" within 50 ms');
  });
});
