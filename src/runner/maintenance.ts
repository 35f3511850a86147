/**
 * Housekeeping on timers of its own: the reaper (running jobs whose lease expired go back to
 * pending, or fail on their last attempt), with it the planner statistics of a table that has
 * outgrown them tenfold (db/sql/statistics.ts), and the retention purge (finished jobs,
 * batches, expired cache entries, old events).
 */
import type { RunnerStore } from '../db/store.js';
import type { Logger } from '../log.js';

export interface MaintenanceOptions {
  store: RunnerStore;
  log: Logger;
  /** How often the reaper runs (the runner's safety-net poll). */
  reapEveryMs: number;
  /** Finished jobs older than this are purged, every `purgeEveryMs`. */
  retentionMs: number;
  purgeEveryMs: number;
  /** After each reaper pass: work may be claimable (it is also the runner's safety-net poll). */
  afterReap(): void;
  /** Jobs the reaper must leave alone: this process's own live attempts. */
  spare(): string[];
}

const REAP_BATCH = 1000;
const PURGE_BATCH = 1000;

export class Maintenance {
  private reapTimer: NodeJS.Timeout | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;
  private reaping = false;
  private running = false;

  constructor(private readonly opts: MaintenanceOptions) {}

  /** Starts both timers, and runs a reaper pass and a purge at once. */
  start(): void {
    this.running = true;
    this.reapTimer = setInterval(() => void this.reap(), this.opts.reapEveryMs);
    this.purgeTimer = setInterval(() => void this.purge(), this.opts.purgeEveryMs);
    void this.reap();
    void this.purge();
  }

  stop(): void {
    this.running = false;
    clearInterval(this.reapTimer);
    clearInterval(this.purgeTimer);
  }

  /**
   * One reaper pass (in batches until none is left), then `afterReap`, then the statistics check.
   * A slow database must not stack passes up: the next starts once all of this one is done.
   */
  async reap(): Promise<void> {
    if (!this.running || this.reaping) return;
    this.reaping = true;
    try {
      const reaped = await this.reapExpired();
      this.opts.afterReap();
      // Not while the database fails: the reaper's error says so already.
      if (reaped) await this.refreshStatistics();
    } finally {
      this.reaping = false;
    }
  }

  /** Requeues or fails the jobs whose lease expired; false when the database failed. */
  private async reapExpired(): Promise<boolean> {
    try {
      for (;;) {
        const { requeued, failed } = await this.opts.store.reap({
          limit: REAP_BATCH,
          except: this.opts.spare(),
        });
        if (requeued + failed > 0) {
          this.opts.log.warn({ requeued, failed }, 'reaped jobs whose lease expired');
        }
        if (requeued + failed < REAP_BATCH) return true;
      }
    } catch (err) {
      this.opts.log.error({ err }, 'reaping expired leases failed; will retry on next poll');
      return false;
    }
  }

  /**
   * A table that has outgrown its statistics (taken empty, or nearly) keeps cached plans that scan
   * it whole until it is analyzed; autovacuum takes up to a minute, a burst of submits seconds.
   */
  private async refreshStatistics(): Promise<void> {
    if (!this.running) return;
    try {
      const analyzed = await this.opts.store.refreshStatistics();
      if (analyzed.length > 0) {
        this.opts.log.info(
          { tables: analyzed },
          'analyzed tables grown tenfold past their statistics: cached plans are made again',
        );
      }
    } catch (err) {
      this.opts.log.warn({ err }, 'checking planner statistics failed; will retry on next poll');
    }
  }

  async purge(): Promise<void> {
    if (!this.running) return;
    const { store, log, retentionMs } = this.opts;
    // Every cutoff is computed by the database against its own timestamps, never this clock.
    const olderThanMs = retentionMs;
    try {
      const purged = await this.drain((limit) => store.purgeJobs({ olderThanMs, limit }));
      const batches = await this.drain((limit) => store.purgeBatches({ olderThanMs, limit }));
      if (purged + batches > 0) {
        log.info({ purged: purged + batches, olderThanMs }, 'purged finished jobs and batches');
      }
      const expired = await this.drain((limit) => store.purgeResults({ limit }));
      if (expired > 0) log.info({ expired }, 'purged expired result-cache entries');
      const events = await this.drain((limit) => store.purgeEvents({ retentionMs, limit }));
      if (events > 0) log.info({ events }, 'purged events past retention');
    } catch (err) {
      log.error({ err }, 'purging finished jobs failed; will retry');
    }
  }

  /** Runs a batched delete until it removes less than a batch (or maintenance stops). */
  private async drain(purgeSome: (limit: number) => Promise<number>): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await purgeSome(PURGE_BATCH);
      total += n;
      if (n < PURGE_BATCH || !this.running) return total;
    }
  }
}
