import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface LogLine {
  msg: string;
  level: string;
  [key: string]: unknown;
}

/** The real server (`src/main.ts`) as a child process, as `npm start` runs it. */
export class ServerProcess {
  readonly logs: LogLine[] = [];
  stderr = '';
  url = '';
  /** Sent with `post` and `get` when set. */
  apiKey = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once the process has exited and all its output has been read into `logs`. */
  readonly closed: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    this.exited = once(child, 'exit').then(([code, signal]) => ({
      code: code as number | null,
      signal: signal as NodeJS.Signals | null,
    }));
    this.closed = once(child, 'close').then(() => undefined);
    let buffered = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.logs.push({ msg: line, level: 'raw' });
        }
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
  }

  /**
   * Spawns the server with `env` on top of this environment (minus DATABASE_URL); with
   * `clockSkewMs`, its clock runs that far off the database's (support/skewed-clock.ts).
   */
  static spawn(env: Record<string, string>, opts: { clockSkewMs?: number } = {}): ServerProcess {
    const base = { ...process.env };
    delete base.DATABASE_URL;
    const skew =
      opts.clockSkewMs === undefined
        ? []
        : ['--import', path.join(ROOT, 'test/support/skewed-clock.ts')];
    const child = spawn(process.execPath, ['--import', 'tsx', ...skew, 'src/main.ts'], {
      cwd: ROOT,
      env: {
        ...base,
        PORT: '0',
        LOG_LEVEL: 'info',
        ...(opts.clockSkewMs !== undefined && { CLOCK_SKEW_MS: String(opts.clockSkewMs) }),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ServerProcess(child);
  }

  /** Spawns the server and waits until it listens. */
  static async start(
    env: Record<string, string>,
    timeoutMs = 30_000,
    opts: { clockSkewMs?: number } = {},
  ): Promise<ServerProcess> {
    const server = ServerProcess.spawn(env, opts);
    const listening = await server.waitForLog((l) => l.msg === 'listening', timeoutMs);
    server.url = String(listening.url);
    return server;
  }

  /** Resolves with the first log line matching `match`; rejects if the process exits first. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      const check = () => {
        const line = this.logs.find(match);
        if (line) return resolve(line);
        if (this.child.exitCode !== null || this.child.signalCode !== null) {
          return reject(new Error(`server exited before the expected log line:\n${this.output()}`));
        }
        if (Date.now() > deadline) {
          return reject(new Error(`no matching log line in ${timeoutMs} ms:\n${this.output()}`));
        }
        setTimeout(check, 20);
      };
      check();
    });
  }

  async post(pathname: string, body: unknown): Promise<Response> {
    return fetch(this.url + pathname, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...this.auth() },
      body: JSON.stringify(body),
    });
  }

  async get(pathname: string): Promise<Response> {
    return fetch(this.url + pathname, { headers: this.auth() });
  }

  private auth(): Record<string, string> {
    return this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
  }

  /** Sends `signal` and resolves with the exit status. */
  async kill(signal: NodeJS.Signals) {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  output(): string {
    return [...this.logs.map((l) => JSON.stringify(l)), this.stderr].join('\n').slice(-4000);
  }
}
