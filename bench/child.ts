/**
 * Clients in a process of their own, for the latency figures: a module that measures calls
 * `inChild(fileURLToPath(import.meta.url), input)`, which runs that same module in a new Node process with
 * `input`; there `childInput(…)` with the same path returns it, and the module writes its answer
 * with `answer()`. The measuring client then shares no event loop and no heap with the bench (its
 * garbage from earlier phases, the servers' logs it reads, the other clients).
 */
import { spawn } from 'node:child_process';

const INPUT = 'BENCH_CHILD_INPUT';

/** Runs `file` in a child process with `input`; resolves with what it answered. */
export function inChild<T>(file: string, input: unknown): Promise<T> {
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    env: { ...process.env, [INPUT]: JSON.stringify(input) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    // 'close', not 'exit': the child's stdout may still hold the end of its answer at its exit.
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${file} exited with ${code}`));
      try {
        resolve(JSON.parse(out) as T);
      } catch (err) {
        reject(new Error(`${file} answered no JSON: ${out.slice(0, 200)}`, { cause: err }));
      }
    });
  });
}

/** In a process started by `inChild(file, …)`: its input; otherwise undefined. */
export function childInput<T>(file: string): T | undefined {
  const input = process.env[INPUT];
  return input !== undefined && process.argv[1] === file ? (JSON.parse(input) as T) : undefined;
}

/** The child's answer to `inChild`. */
export function answer(value: unknown): void {
  process.stdout.write(JSON.stringify(value));
}
