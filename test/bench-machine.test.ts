/**
 * The bench's account of what else the machine did during a run (bench/machine.ts): other
 * processes' CPU is the machine's minus the bench tree's, as a share of all cores, over the run
 * and over its busiest window. /proc is a stand-in here.
 */
import { expect } from 'chai';
import { type OtherLoadSources, OtherLoad, machineCpu } from '../bench/machine.js';

/** /proc/stat with the given ticks (user nice system idle iowait irq softirq steal). */
const stat = (user: number, system: number, softirq: number, steal: number) =>
  `cpu  ${user} 0 ${system} 99999 0 0 ${softirq} ${steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n`;

/** /proc/<pid>/stat fields after the command name, for a root with no children: utime [11]. */
function rootFields(utime: number): string[] {
  const f = Array.from({ length: 20 }, () => '0');
  f[1] = '1';
  f[11] = String(utime);
  return f;
}

/**
 * A two-core machine read at the instants in `script`: wall ms, machine ticks (user, system,
 * softirq, steal) and the bench tree's ticks, one step per reading.
 */
function scripted(script: [at: number, user: number, tree: number, steal?: number][]) {
  let i = -1;
  const step = () => script[Math.min(i, script.length - 1)] ?? [0, 0, 0];
  const sources: OtherLoadSources = {
    cores: 2,
    now: () => {
      i += 1;
      return step()[0];
    },
    stat: () => stat(step()[1], 0, 50 * i, step()[3] ?? 0),
    table: { stat: (pid) => (pid === 42 ? rootFields(step()[2]) : undefined), pids: () => [42] },
  };
  return sources;
}

/** An OtherLoad of the bench tree (pid 42), sampling every 5 s, over `script`. */
const scriptedLoad = (script: Parameters<typeof scripted>[0]) =>
  new OtherLoad(42, 5000, scripted(script));

/** The summary of `script` read row by row, its last row read by `stop()`. */
const summaryOf = (script: Parameters<typeof scripted>[0]) => {
  const load = scriptedLoad(script);
  for (let i = 1; i < script.length; i++) load.sample();
  return load.stop();
};

describe('bench: the machine during a run', () => {
  it('reads processes and steal from /proc/stat, leaving interrupts out', () => {
    expect(machineCpu(stat(100, 20, 30, 4))).to.deep.equal({ busy: 1200, steal: 40 });
  });

  it("counts what the machine's processes used beyond the bench's own, as a share of all cores", () => {
    // 10 s on two cores (20 s of CPU): the machine ran 1,200 ticks (12 s), the bench 800 (8 s).
    const summary = summaryOf([
      [0, 0, 0],
      [5000, 300, 200],
      [10000, 1200, 800, 100],
    ]);
    // Others: 4 s of 20 (20 %); the busiest 5 s window: 3 s of 10 (30 %); steal: 1 s of 20.
    expect(summary).to.deep.equal({
      other_cpu_pct: 20,
      other_cpu_max_pct: 30,
      steal_pct: 5,
      phases: {},
    });
  });

  it('leaves a short last window out of the busiest one', () => {
    const summary = summaryOf([
      [0, 0, 0],
      [5000, 100, 100],
      [5100, 200, 100], // 100 ms with 1 s of others' CPU: a few ticks, not a load
    ]);
    expect(summary.other_cpu_max_pct).to.equal(0);
    expect(summary.other_cpu_pct).to.equal(9.8); // 1 s of the run's 10.2 s of CPU
  });

  it('counts no negative share when the tree was read ahead of the machine', () => {
    // The tree's ticks and the machine's are read a moment apart: the tree may come out ahead.
    const summary = summaryOf([
      [0, 0, 0],
      [5000, 100, 300],
    ]);
    expect(summary).to.deep.equal({
      other_cpu_pct: 0,
      other_cpu_max_pct: 0,
      steal_pct: 0,
      phases: {},
    });
  });

  it('gives each named phase the share from its start to the next one, the last to the end', () => {
    const load = scriptedLoad([
      [0, 0, 0], // start
      [2000, 100, 100], // ttr starts: nothing else ran before it
      [4000, 500, 200], // util starts: others ran 3 s during ttr's 2 s (75 % of two cores)
      [6000, 600, 300], // stop: none during util
    ]);
    load.start();
    load.phase('ttr');
    load.phase('util');
    expect(load.stop().phases).to.deep.equal({ ttr: 75, util: 0 });
  });
});
