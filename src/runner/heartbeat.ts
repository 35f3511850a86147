/**
 * The runner's heartbeat: every third of the lease, renews the leases of the attempts not
 * recorded yet in one statement, and aborts those whose lease was found taken (their job was
 * reaped and claimed elsewhere): their answers would be discarded by the fenced write anyway.
 */
import type { RunnerStore } from '../db/store.js';
import type { Logger } from '../log.js';
import { LeaseLostError } from './errors.js';
import { type TrackedAttempt, claimOf } from './tracked.js';

export interface HeartbeatOptions {
  store: Pick<RunnerStore, 'renew'>;
  workerId: string;
  leaseMs: number;
  log: Logger;
  /** The attempts whose claims are held now (not recorded yet). */
  live: () => TrackedAttempt[];
}

export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private beating = false;

  constructor(private readonly opts: HeartbeatOptions) {}

  start(): void {
    this.timer = setInterval(
      () => void this.beat(),
      Math.max(100, Math.floor(this.opts.leaseMs / 3)),
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async beat() {
    const live = this.opts.live();
    // One at a time: while the database stalls, a renewal may wait longer than the interval.
    if (live.length === 0 || this.beating) return;
    this.beating = true;
    let held: Set<string>;
    try {
      held = await this.opts.store.renew({
        workerId: this.opts.workerId,
        claims: live.map((a) => claimOf(a.job)),
        leaseMs: this.opts.leaseMs,
      });
    } catch (err) {
      // A lease outlives two missed heartbeats; the next one retries.
      this.opts.log.warn({ err }, 'renewing leases failed');
      return;
    } finally {
      this.beating = false;
    }
    for (const a of live) {
      if (!a.settled && !held.has(a.job.id)) {
        a.abandon(new LeaseLostError());
      }
    }
  }
}
