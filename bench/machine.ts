/**
 * What else the machine did during a bench run: the CPU used by processes outside the bench's
 * own tree (this process, the servers, clients and Postgres it spawned), and the time the
 * hypervisor took away (steal), as shares of the machine's capacity (all cores). Figures from a
 * run whose machine was busy with other work are slower for reasons that are not the service's
 * (docs/performance.md, "The machine"), so each run reports how quiet its machine was.
 *
 * Read from /proc (Linux) every `everyMs`: /proc/stat for the whole machine, /proc/<pid>/stat
 * for the tree (bench/cpu.ts `treeCpuMs`).
 */
import fs from 'node:fs';
import os from 'node:os';
import { MS_PER_TICK, type ProcessTable, treeCpuMs } from './cpu.js';
import { round } from './harness.js';

/**
 * The machine's CPU so far, in ms summed over its cores (/proc/stat's first line): the time
 * processes ran (user, nice, system) and the time the hypervisor took (steal). Interrupt time
 * (irq, softirq) is left out: with it accounted apart, as here, it belongs to no process, and the
 * bench's own loopback traffic is most of it.
 */
export interface MachineCpu {
  busy: number;
  steal: number;
}

/** The first line of /proc/stat: user nice system idle iowait irq softirq steal guest guest_nice. */
export function machineCpu(stat: string): MachineCpu {
  const f = (stat.split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , , , steal = 0] = f;
  return { busy: (user + nice + system) * MS_PER_TICK, steal: steal * MS_PER_TICK };
}

/** A reading: wall time, the machine's CPU, and the bench tree's CPU, all in ms. */
interface Reading {
  at: number;
  machine: MachineCpu;
  tree: number;
}

export interface OtherLoadSummary {
  /** Other processes' CPU over the whole run, % of all cores. */
  other_cpu_pct: number;
  /** The same over the busiest window of `everyMs` (shorter ones, at the end, are not counted). */
  other_cpu_max_pct: number;
  /** CPU the hypervisor took, % of all cores over the whole run. */
  steal_pct: number;
  /** Other processes' CPU during each phase named by `phase()`, % of all cores. */
  phases: Record<string, number>;
}

export interface OtherLoadSources {
  now(): number;
  stat(): string;
  table?: ProcessTable;
  cores: number;
}

const fromProc: OtherLoadSources = {
  now: () => performance.now(),
  stat: () => fs.readFileSync('/proc/stat', 'utf8'),
  cores: os.cpus().length,
};

/** Samples the machine every `everyMs` from `start()` until `stop()`. */
export class OtherLoad {
  private readonly readings: Reading[] = [];
  /** The phases named so far, each with the reading it starts at. */
  private readonly phases: { name: string; from: number }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly root: number,
    private readonly everyMs = 5000,
    private readonly from: OtherLoadSources = fromProc,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
  }

  /** Takes a reading now (the timer's, and one more at the start and the end). */
  sample(): void {
    this.readings.push({
      at: this.from.now(),
      machine: machineCpu(this.from.stat()),
      tree: treeCpuMs(this.root, this.from.table),
    });
  }

  /** A phase of the run starts (and the one before it ends): a reading now, under its name. */
  phase(name: string): void {
    this.sample();
    this.phases.push({ name, from: this.readings.length - 1 });
  }

  stop(): OtherLoadSummary {
    clearInterval(this.timer);
    this.sample();
    const share = (a: Reading, b: Reading, ms: number) =>
      (100 * ms) / (this.from.cores * Math.max(1, b.at - a.at));
    const other = (a: Reading, b: Reading) =>
      share(a, b, Math.max(0, b.machine.busy - a.machine.busy - (b.tree - a.tree)));
    const first = this.readings[0];
    const last = this.readings[this.readings.length - 1];
    if (!first || !last) throw new Error('OtherLoad: stop() before start()');
    let max = 0;
    for (let i = 1; i < this.readings.length; i++) {
      const a = this.readings[i - 1];
      const b = this.readings[i];
      // A window of a few ticks would say little: only those of at least half the period count.
      if (a && b && b.at - a.at >= this.everyMs / 2) max = Math.max(max, other(a, b));
    }
    const phases: Record<string, number> = {};
    this.phases.forEach(({ name, from }, i) => {
      const a = this.readings[from];
      const b = this.readings[this.phases[i + 1]?.from ?? this.readings.length - 1];
      if (a && b) phases[name] = round(other(a, b));
    });
    return {
      other_cpu_pct: round(other(first, last)),
      other_cpu_max_pct: round(max),
      steal_pct: round(share(first, last, last.machine.steal - first.machine.steal)),
      phases,
    };
  }
}
