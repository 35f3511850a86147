/**
 * CPU time of processes from /proc (Linux), for per-request costs that move less with the
 * machine's load than throughput does: a figure per request is (after - before) / requests.
 */
import fs from 'node:fs';

/** USER_HZ: /proc counts in ticks of 10 ms on Linux. */
const MS_PER_TICK = 10;

function statFields(pid: number): string[] {
  // Fields after the command name, which may contain spaces: state is [0], ppid [1], utime [11].
  return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
}

/** User + system CPU of `pid` in ms; with `reaped`, plus that of the children it has waited for. */
export function cpuMs(pid: number, reaped = false): number {
  const fields = statFields(pid);
  const ticks = [11, 12, ...(reaped ? [13, 14] : [])].reduce((t, i) => t + Number(fields[i]), 0);
  return ticks * MS_PER_TICK;
}

/** System (kernel) CPU of `pid` in ms. */
export function systemCpuMs(pid: number): number {
  return Number(statFields(pid)[12]) * MS_PER_TICK;
}

/** CPU of a postmaster and all its processes (backends, workers), the exited ones included. */
export function postgresCpuMs(postmasterPid: number): number {
  let total = cpuMs(postmasterPid, true);
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(statFields(Number(entry))[1]) === postmasterPid) total += cpuMs(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
