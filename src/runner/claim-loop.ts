/**
 * The runner's claims, one at a time. A claim asked for while one is on its way makes one more
 * after it (a slot freed meanwhile would otherwise wait for the next wake-up or poll), and a
 * write waiting for "the claim that serves its slot" (`nextRound`) is let go when the first round
 * to look at the free slots after it ends, or at once when no round is coming.
 */
import type { Logger } from '../log.js';

export interface ClaimLoopOptions {
  /** Claims may go on: the runner is running, and the queue may have work. */
  active(): boolean;
  /** One claim for the free slots; false when there were too few to claim for. */
  round(): Promise<boolean>;
  log: Logger;
}

export class ClaimLoop {
  private running: Promise<void> | undefined;
  private requested = false;
  /** Writes waiting for the claim that serves their slot. */
  private readonly waiters: (() => void)[] = [];

  constructor(private readonly opts: ClaimLoopOptions) {}

  /** A claim was asked for since the current round began (a wake-up, a freed slot). */
  get requestedSince(): boolean {
    return this.requested;
  }

  /** The claims on their way, if any (shutdown waits for them). */
  get current(): Promise<void> | undefined {
    return this.running;
  }

  /** Claims for the free slots: now, or once the claim on its way is back. */
  request(): Promise<void> {
    if (this.running) {
      this.requested = true;
      return this.running;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
      // A request that came after the loop's last look at the free slots would be lost (nothing
      // else claims until the next wake-up or poll): look again.
      if (this.requested && this.opts.active()) void this.request();
      // No claim is coming for whoever waits on one: their writes go now.
      else releaseAll(this.waiters.splice(0));
    });
    return this.running;
  }

  /** Requests a claim; resolves once the claim that serves a slot freed now has come back. */
  nextRound(): Promise<void> {
    const served = new Promise<void>((resolve) => this.waiters.push(resolve));
    void this.request();
    return served;
  }

  private async loop() {
    try {
      while (this.opts.active()) {
        this.requested = false;
        // Slots freed before this round looks at the free slots are served by it.
        const served = this.waiters.splice(0);
        try {
          if (!(await this.opts.round())) return;
        } finally {
          releaseAll(served);
        }
      }
    } catch (err) {
      this.requested = false; // not at once again: the next wake-up or poll retries
      this.opts.log.error({ err }, 'claiming jobs failed; will retry on next poll');
    }
  }
}

function releaseAll(waiters: readonly (() => void)[]) {
  for (const release of waiters) release();
}
