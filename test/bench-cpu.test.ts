/**
 * The bench's CPU count of a Postgres server (bench/cpu.ts) while its backends come and go: a
 * backend that exits, and is waited for by the postmaster, while the children are being read is
 * counted once, neither lost (which made a CPU-per-request figure negative) nor counted twice.
 * The process table is a stand-in whose backend exits at a chosen moment.
 */
import { expect } from 'chai';
import { type ProcessTable, postgresCpuMs, treeCpuMs } from '../bench/cpu.js';

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

describe('bench: treeCpuMs', () => {
  // The bench (1000) with a server (1001) and a postmaster (1002) whose backend (1003) exits at a
  // chosen moment; 1 is init and 2000 a process of someone else's.
  const BENCH = 1000;
  const BACKEND = 1003;
  function benchTable(exitWhen: (read: { pid: number }) => boolean): ProcessTable {
    let exited = false;
    return {
      stat(pid) {
        if (!exited && exitWhen({ pid })) exited = true;
        if (pid === BENCH) return fields(1, 10, 0, 7, 3); // 10 reaped ticks: a client that ran
        if (pid === 1001) return fields(BENCH, 50, 20);
        if (pid === 1002) return exited ? fields(BENCH, 4, 1, 60, 40) : fields(BENCH, 4, 1);
        if (pid === BACKEND) return exited ? undefined : fields(1002, 60, 40);
        if (pid === 2000) return fields(1, 500, 500);
        return fields(0, 900, 900); // init
      },
      pids: () => (exited ? [1, BENCH, 1001, 1002, 2000] : [1, BENCH, 1001, 1002, BACKEND, 2000]),
    };
  }
  const TREE_MS = (10 + 10 + 70 + 5 + 100) * 10;

  it('counts the root and every process under it, grandchildren and waited-for ones included', () => {
    expect(
      treeCpuMs(
        BENCH,
        benchTable(() => false),
      ),
    ).to.equal(TREE_MS);
    expect(
      treeCpuMs(
        BENCH,
        benchTable(() => true),
      ),
    ).to.equal(TREE_MS);
  });

  it('counts a grandchild once when it exits while the tree is being read', () => {
    let backendRead = 0;
    // Exits once it has been read live once, before its parent is read again.
    const exitsAfterRead = benchTable(({ pid }) => {
      if (pid === BACKEND) backendRead += 1;
      return backendRead >= 2 && pid === 1002;
    });
    expect(treeCpuMs(BENCH, exitsAfterRead)).to.equal(TREE_MS);
  });
});
