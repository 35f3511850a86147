/**
 * The bench's CPU count of a Postgres server (bench/cpu.ts) while its backends come and go: a
 * backend that exits, and is waited for by the postmaster, while the children are being read is
 * counted once, neither lost (which made a CPU-per-request figure negative) nor counted twice.
 * The process table is a stand-in whose backend exits at a chosen moment.
 */
import { expect } from 'chai';
import { type ProcessTable, postgresCpuMs } from '../bench/cpu.js';

/** /proc/<pid>/stat fields after the command name: ppid [1], utime [11], stime [12], cutime [13], cstime [14]. */
function fields(ppid: number, utime: number, stime: number, cutime = 0, cstime = 0): string[] {
  const f = Array.from({ length: 20 }, () => '0');
  f[1] = String(ppid);
  f[11] = String(utime);
  f[12] = String(stime);
  f[13] = String(cutime);
  f[14] = String(cstime);
  return f;
}

const POSTMASTER = 100;
const STAYS = 101;
const EXITS = 102;

/**
 * A postmaster (5 + 1 ticks of its own) with two backends: 20 + 10 ticks and 300 + 100 ticks.
 * `exitWhen` decides at which read the second backend exits and is waited for (its 400 ticks then
 * move into the postmaster's cutime/cstime).
 */
function table(exitWhen: (read: { pid: number; n: number }) => boolean): ProcessTable {
  let exited = false;
  let n = 0;
  return {
    stat(pid) {
      n += 1;
      if (!exited && exitWhen({ pid, n })) exited = true;
      if (pid === POSTMASTER) return exited ? fields(1, 5, 1, 300, 100) : fields(1, 5, 1);
      if (pid === STAYS) return fields(POSTMASTER, 20, 10);
      if (pid === EXITS) return exited ? undefined : fields(POSTMASTER, 300, 100);
      return fields(1, 999, 999); // not Postgres's
    },
    pids: () => (exited ? [1, POSTMASTER, STAYS] : [1, POSTMASTER, STAYS, EXITS]),
  };
}

/** All the CPU above, in ms (10 ms a tick). */
const ALL_MS = (5 + 1 + 20 + 10 + 300 + 100) * 10;

describe('bench: postgresCpuMs', () => {
  it('counts the postmaster, its live backends and those it has waited for', () => {
    const stays = table(() => false);
    const exitedBefore = table(() => true);
    expect(postgresCpuMs(POSTMASTER, stays)).to.equal(ALL_MS);
    expect(postgresCpuMs(POSTMASTER, exitedBefore)).to.equal(ALL_MS);
  });

  it('does not lose a backend that exits after the postmaster was read and before it was', () => {
    // The read of the exiting backend itself finds it gone; the postmaster was read before.
    const exitsUnread = table(({ pid }) => pid === EXITS);
    expect(postgresCpuMs(POSTMASTER, exitsUnread)).to.equal(ALL_MS);
  });

  it('counts once a backend that exits after it was read', () => {
    // Read live, then waited for before the postmaster is read again: its time is then in both.
    let readLive = false;
    const exitsAfterRead = table(({ pid }) => {
      if (pid === EXITS) readLive = true;
      return pid === POSTMASTER && readLive;
    });
    expect(postgresCpuMs(POSTMASTER, exitsAfterRead)).to.equal(ALL_MS);
  });
});
