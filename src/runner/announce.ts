/**
 * Tells the runners of every process that jobs are pending, after the submit committed: one
 * NOTIFY in flight at a time, and the submits that arrive meanwhile share the next one. Under a
 * load of concurrent submits that is one NOTIFY per round trip, not one per job; idle, a submit
 * is announced at once. The local runner is woken directly; a lost announcement only delays
 * other processes until their poll.
 */
import type { Logger } from '../log.js';

export class PendingAnnouncer {
  private sending = false;
  private again = false;

  constructor(
    /** This process, in the announcements' payload: its own come back to it and are ignored. */
    private readonly origin: string,
    private readonly notify: (origin: string) => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** `payload` of a NOTIFY on the pending channel is this process's own announcement. */
  isOwn(payload: string): boolean {
    return payload === this.origin;
  }

  announce(): void {
    if (this.sending) {
      this.again = true;
      return;
    }
    this.sending = true;
    void this.send();
  }

  private async send(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.notify(this.origin);
        } catch (err) {
          this.log.warn({ err }, 'could not announce pending jobs; other processes poll for them');
          return;
        }
      } while (this.again);
    } finally {
      this.sending = false;
    }
  }
}
