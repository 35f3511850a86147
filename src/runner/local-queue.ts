/**
 * What a runner knows of the pending jobs, for starting a local single submit at its insert,
 * without a claim (Runner.reserve): whether every due pending job is known to this process, how
 * many of them it queued itself, and how many slots are promised to submits being inserted.
 * A job may start at its insert only when each pending job known here keeps a slot for itself,
 * so none of them waits for a slot because of it.
 */
import type { JobRow } from '../db/sql/rows.js';

/** A slot promised to a submit (`Runner.reserve`): the claim its insert makes. */
export interface Reservation {
  workerId: string;
  leaseMs: number;
  /** The insert is over: `row` as inserted (undefined: it inserted nothing). */
  settle(row: JobRow | undefined): void;
  /**
   * The insert of job `id` did not answer (it failed, or was never sent): it may have committed
   * all the same, its answer lost with the connection, so the job is handed back as pending if
   * it is there. Gives the slot back, as `settle` does.
   */
  failed(id: string): void;
}

/** What becomes of a reserved slot once its insert is over (`LocalQueue.reserve`). */
export interface ReservationOutcome {
  /** The insert stored `row`. */
  inserted(row: JobRow): void;
  /** The insert of job `id` did not answer. */
  failed(id: string): void;
}

export class LocalQueue {
  /** Slots promised to submits being inserted already running. */
  reserved = 0;
  /**
   * Every due pending job is one this process queued and counted in `pending`, or one the claim
   * on its way takes: set by a claim that found fewer jobs than it asked for with no wake-up from
   * elsewhere during it (a NOTIFY, the poll, a retry coming due), cleared by such a wake-up.
   */
  private known = false;
  /** A wake-up from elsewhere since the current claim was sent. */
  private wokenElsewhere = false;
  /** Jobs this process queued that no claim has covered yet. */
  private pending = 0;
  /** While a claim is on its way: the jobs it can find, at most, when `known`. */
  private claimingFor = 0;

  /** Jobs this process did not queue may be due (a NOTIFY, a retry coming due, the poll). */
  heardFromElsewhere(): void {
    this.known = false;
    this.wokenElsewhere = true;
  }

  /** This process queued `n` jobs (committed). */
  queued(n: number): void {
    this.pending += n;
  }

  /**
   * Promises a slot (`reserved`) to a submit about to be inserted under a claim of `workerId`
   * for `leaseMs`, until its `settle` or `failed`: whichever comes first gives the slot back and
   * tells `outcome`.
   */
  reserve(workerId: string, leaseMs: number, outcome: ReservationOutcome): Reservation {
    this.reserved += 1;
    return new SlotReservation(this, workerId, leaseMs, outcome);
  }

  /** With `free` slots free, one is left over once each pending job known here has its own. */
  hasSpare(free: number): boolean {
    return this.known && free - this.claimingFor - this.pending >= 1;
  }

  /** A claim for `free` jobs is sent. Returns the local jobs it covers, for its outcome. */
  claimSent(free: number): number {
    // Those queued from now on count from zero again.
    const covered = this.pending;
    this.pending = 0;
    this.wokenElsewhere = false;
    this.claimingFor = Math.min(free, covered);
    return covered;
  }

  /** The claim that covered `covered` failed: nothing is known of the queue. */
  claimFailed(covered: number): void {
    this.claimingFor = 0;
    this.pending += covered;
    this.known = false;
  }

  /** The claim for `free` jobs that covered `covered` found `found`. */
  claimReturned(covered: number, free: number, found: number): void {
    this.claimingFor = 0;
    // Fewer than asked: the queue is drained, unless a wake-up from elsewhere came meanwhile.
    if (found < free) {
      if (!this.wokenElsewhere) this.known = true;
    } else {
      // As many as asked: some of the local jobs may still wait.
      this.pending += Math.max(0, covered - found);
    }
  }
}

/**
 * A slot promised by `LocalQueue.reserve`. A class, not an object of closures: one is made per
 * single submit that starts at once.
 */
class SlotReservation implements Reservation {
  private open = true;

  constructor(
    private readonly queue: LocalQueue,
    readonly workerId: string,
    readonly leaseMs: number,
    private readonly outcome: ReservationOutcome,
  ) {}

  settle(row: JobRow | undefined): void {
    if (this.close() && row) this.outcome.inserted(row);
  }

  failed(id: string): void {
    if (this.close()) this.outcome.failed(id);
  }

  /** Gives the slot back; false when it was given back already. */
  private close(): boolean {
    if (!this.open) return false;
    this.open = false;
    this.queue.reserved -= 1;
    return true;
  }
}
