/**
 * Worker-thread side of the mock heuristic's CPU-bound part (HEURISTIC_CPU_MS): burns the CPU
 * for `cpuMs`, as a compute-heavy heuristic would, then recognises the merchant. Runs in a
 * piscina pool, never on the event loop.
 */
import { type Recognition, recognise } from './recognise.js';

export interface CpuTask {
  description: string;
  cpuMs: number;
}

export default function run(task: CpuTask): Recognition {
  const until = performance.now() + task.cpuMs;
  while (performance.now() < until) {
    // burn
  }
  return recognise(task.description);
}
