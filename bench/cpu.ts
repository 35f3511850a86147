/**
 * CPU time of processes from /proc (Linux), for per-request costs that move less with the
 * machine's load than throughput does: a figure per request is (after - before) / requests.
 */
import fs from 'node:fs';

/** USER_HZ: /proc counts in ticks of 10 ms on Linux. */
const MS_PER_TICK = 10;

/**
 * Fields of /proc/<pid>/stat: its own user and system ticks, its system ticks alone, and those of
 * the children it has waited for.
 */
const OWN = [11, 12];
const SYSTEM = [12];
const REAPED = [13, 14];
const ticks = (fields: string[], at: number[]) => at.reduce((t, i) => t + Number(fields[i]), 0);

function statFields(pid: number): string[] {
  // Fields after the command name, which may contain spaces: state is [0], ppid [1], utime [11].
  return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
}

/** User + system CPU of `pid` in ms. */
export function cpuMs(pid: number): number {
  return ticks(statFields(pid), OWN) * MS_PER_TICK;
}

/** System (kernel) CPU of `pid` in ms. */
export function systemCpuMs(pid: number): number {
  return ticks(statFields(pid), SYSTEM) * MS_PER_TICK;
}

/** What postgresCpuMs reads: /proc, or a stand-in in tests. */
export interface ProcessTable {
  /** The fields of `/proc/<pid>/stat` after the command name; undefined when it is gone. */
  stat(pid: number): string[] | undefined;
  pids(): number[];
}

const proc: ProcessTable = {
  stat(pid) {
    try {
      return statFields(pid);
    } catch {
      return undefined; // gone meanwhile
    }
  },
  pids: () =>
    fs
      .readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number),
};

/**
 * CPU of a postmaster and all its processes (backends, workers), the exited ones included: its
 * own, its children's that it has waited for (`cutime`, `cstime`), and each live child's. A
 * child that exits and is waited for after the postmaster was read and before the child itself
 * was would be in neither count: a backend closed at the end of a load made the service's
 * Postgres CPU per request come out negative in one round. So the children are read again until
 * the postmaster's count of waited-for children is the same after them as before (the count
 * from before is the one summed, so a child read live and waited for later is counted once).
 */
export function postgresCpuMs(postmasterPid: number, table: ProcessTable = proc): number {
  const postmaster = () => {
    const fields = table.stat(postmasterPid);
    if (!fields) throw new Error(`no process ${postmasterPid}`);
    return fields;
  };
  let before = postmaster();
  for (let tries = 1; ; tries++) {
    let total = ticks(before, OWN) + ticks(before, REAPED);
    for (const pid of table.pids()) {
      const fields = pid === postmasterPid ? undefined : table.stat(pid);
      if (fields && Number(fields[1]) === postmasterPid) total += ticks(fields, OWN);
    }
    const after = postmaster();
    if (ticks(after, REAPED) === ticks(before, REAPED) || tries === 10) {
      return total * MS_PER_TICK;
    }
    before = after;
  }
}
