/**
 * Clients in a process of their own, for the latency figures: a module that measures calls
 * `inChild(path, input)` with its own path (`fileURLToPath(import.meta.url)`), which runs that
 * same module in a new Node process; there `childInput(path)` returns `input` (sent on the child's
 * stdin: the long-poll phase's job ids can outgrow an environment variable's 128 KiB), and the
 * module writes its answer with `answer()`. The measuring client then shares no event loop and no heap
 * with the bench (its garbage from earlier phases, the servers' logs it reads, the other
 * clients). Its requests go through `request` (node:http, a keep-alive agent of the caller's).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';

/** Set in a child's environment: its input waits on its stdin. */
const CHILD = 'BENCH_CHILD';

/** Runs `file` in a child process with `input`; resolves with what it answered. */
export function inChild<T>(file: string, input: unknown): Promise<T> {
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    env: { ...process.env, [CHILD]: '1' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  // A child that exits before reading it all breaks the pipe; its exit code tells why.
  child.stdin.on('error', () => {});
  child.stdin.end(JSON.stringify(input));
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
  if (process.env[CHILD] !== '1' || process.argv[1] !== file) return undefined;
  return JSON.parse(fs.readFileSync(0, 'utf8')) as T;
}

/** The child's answer to `inChild`. */
export function answer(value: unknown): void {
  process.stdout.write(JSON.stringify(value));
}

/**
 * One request on `agent` to `base`'s host and port; resolves with its status and body once the
 * body has been read. A server that does not answer within `timeoutMs` fails it.
 */
export function request(
  agent: http.Agent,
  base: URL,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: unknown; timeoutMs: number },
): Promise<{ status: number; text: string }> {
  const method = opts.method ?? 'GET';
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: base.hostname,
        port: base.port,
        path,
        method,
        agent,
        headers: {
          ...opts.headers,
          ...(payload !== undefined && {
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(payload)),
          }),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.setTimeout(opts.timeoutMs, () =>
      req.destroy(new Error(`${method} ${path}: no answer in ${opts.timeoutMs / 1000} s`)),
    );
    req.on('error', reject);
    req.end(payload);
  });
}
