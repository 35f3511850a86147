/**
 * The bench's services (bench/harness.ts `startService`) run one at a time unless a phase asks
 * for several on purpose: processes on one database share its queue, so a service left running
 * claims another's jobs and runs them with its own heuristic. The pick-up phase ran beside the
 * no-op service of the phases before it, and hung when the no-op service took one of its jobs.
 */
import { expect } from 'chai';
import { serviceStarting, startService } from '../bench/harness.js';

describe('bench/harness.ts: one service at a time', () => {
  const releases: (() => void)[] = [];
  afterEach(() => {
    for (const release of releases.splice(0)) release();
  });

  it('refuses to start a service while another runs, unless alongside', async () => {
    releases.push(serviceStarting());
    expect(() => serviceStarting()).to.throw(/1 service\(s\) already running/);
    // startService asks first: it refuses before building or spawning anything.
    const refused = await startService('postgres://unused', {}).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).to.be.instanceOf(Error);
    expect((refused as Error).message).to.match(/1 service\(s\) already running/);
    // Several on purpose (the processes phase).
    releases.push(serviceStarting(true));
  });

  it('starts one again once the others have stopped', () => {
    const first = serviceStarting();
    first();
    releases.push(serviceStarting());
  });
});
