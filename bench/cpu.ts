/**
 * CPU time of processes from /proc (Linux), for per-request costs that move less with the
 * machine's load than throughput does: a figure per request is (after - before) / requests.
 */
import fs from 'node:fs';

/** USER_HZ: /proc counts in ticks of 10 ms on Linux. */
export const MS_PER_TICK = 10;

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
 * CPU of a postmaster and all its processes (backends, workers), the exited ones included: see
 * `treeCpuMs`. A backend closed at the end of a load once made the service's Postgres CPU per
 * request come out negative, when it exited between the reads of the postmaster and its own.
 */
export function postgresCpuMs(postmasterPid: number, table: ProcessTable = proc): number {
  return treeCpuMs(postmasterPid, table);
}

/**
 * CPU of `root` and every process under it, the exited ones included: each live one's own, and
 * what each has from the children it has waited for (`cutime`, `cstime`). A child that exits and
 * is waited for between the reads of its parent and itself would be in neither count, or, read
 * live before and its parent after, in both. So the tree is read from the top down (a parent
 * before its children), then read again, until no process in it has waited for a child between
 * the two reads.
 */
export function treeCpuMs(root: number, table: ProcessTable = proc): number {
  for (let tries = 1; ; tries++) {
    const members = treeOf(root, table);
    const read = members.map((pid) => table.stat(pid));
    if (!read[0]) throw new Error(`no process ${root}`);
    const again = members.map((pid) => table.stat(pid));
    const settled = read.every(
      (fields, i) =>
        (fields === undefined) === (again[i] === undefined) &&
        (!fields || ticks(fields, REAPED) === ticks(again[i] ?? [], REAPED)),
    );
    if (settled || tries === 10) {
      const total = read.reduce((sum, f) => (f ? sum + ticks(f, OWN) + ticks(f, REAPED) : sum), 0);
      return total * MS_PER_TICK;
    }
  }
}

/** `root` and the processes under it, a parent always before its children. */
function treeOf(root: number, table: ProcessTable): number[] {
  const children = new Map<number, number[]>();
  for (const pid of table.pids()) {
    const ppid = Number(table.stat(pid)?.[1]);
    if (pid === root || !ppid) continue;
    const siblings = children.get(ppid);
    if (siblings) siblings.push(pid);
    else children.set(ppid, [pid]);
  }
  const members = [root];
  for (let i = 0; i < members.length; i++) members.push(...(children.get(members[i] ?? 0) ?? []));
  return members;
}
