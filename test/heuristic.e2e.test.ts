/**
 * End to end: the service as `npm start` runs it, with HEURISTIC=http, in front of the
 * stand-in as `npm run standin` runs it; both real processes, talking HTTP. Slow answers,
 * injected failures and refusals go through the job's attempts as documented.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { recognise } from '../src/heuristic/recognise.js';
import { databaseUrl, eventually, freshDatabase } from './support/db.js';
import { type LogLine, ServerProcess } from './support/server-process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** `npm run standin` as a child process; its JSON log lines are kept. */
class StandinProcess {
  readonly logs: LogLine[] = [];
  url = '';
  private constructor(readonly child: ChildProcess) {
    let buffered = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (buffered + chunk).split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) this.logs.push(JSON.parse(line) as LogLine);
    });
  }

  static async start(env: Record<string, string>): Promise<StandinProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/standin/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, STANDIN_PORT: '0', STANDIN_HOST: '127.0.0.1', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const standin = new StandinProcess(child);
    const listening = await eventually(
      async () => standin.logs.find((l) => l.msg === 'listening'),
      30_000,
      'the stand-in listening',
    ).catch(async (err: unknown) => {
      await standin.stop();
      throw err;
    });
    standin.url = String(listening.url);
    return standin;
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    await once(this.child, 'exit');
  }
}

interface Job {
  id: string;
  status: string;
  attempts: number;
  result: unknown;
  error: { code: string; message: string; attempt: number } | null;
}

describe('HEURISTIC=http end to end: the service in front of the stand-in', function () {
  this.timeout(120_000);
  let db: Knex;
  const processes: Array<{ stop(): Promise<unknown> }> = [];

  beforeEach(async () => {
    db = await freshDatabase();
  });
  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.stop()));
    await db.destroy();
  });

  async function start(standinEnv: Record<string, string>, serviceEnv: Record<string, string>) {
    const standin = await StandinProcess.start({ LOG_LEVEL: 'info', ...standinEnv });
    processes.push(standin);
    const service = await ServerProcess.start({
      DATABASE_URL: databaseUrl(db),
      HEURISTIC: 'http',
      HEURISTIC_URL: standin.url,
      HEURISTIC_VERSION: 'standin-e2e',
      RUNNER_POLL_MS: '200',
      JOB_BACKOFF_BASE_MS: '10',
      JOB_BACKOFF_MAX_MS: '50',
      ...serviceEnv,
    });
    processes.push({ stop: () => service.kill('SIGKILL') });
    service.apiKey = (await issueKey(db, 'a')).key;
    return { standin, service };
  }

  async function submit(service: ServerProcess, description: string): Promise<string> {
    const res = await service.post('/normalize_merchant', {
      date: '2026-04-03',
      description,
      amount: 12.5,
    });
    expect(res.status).to.equal(202);
    return ((await res.json()) as { id: string }).id;
  }

  /** Each job once finished, long-polled (`?wait=`) rather than polled. */
  async function finished(service: ServerProcess, ids: string[]): Promise<Job[]> {
    const jobs: Job[] = [];
    const deadline = Date.now() + 90_000;
    for (const id of ids) {
      for (;;) {
        const job = (await (await service.get(`/jobs/${id}?wait=30`)).json()) as Job;
        if (['succeeded', 'failed'].includes(job.status)) {
          jobs.push(job);
          break;
        }
        if (Date.now() > deadline) throw new Error(`job ${id} still ${job.status}`);
      }
    }
    return jobs;
  }

  it('slow answers, 503s, dropped connections and malformed answers are retried until every job has the right answer', async () => {
    const { service } = await start(
      { STANDIN_DELAY_MS: '50-1500', STANDIN_FAILURES: '503:0.2,reset:0.1,malformed:0.1' },
      // Answers over 1 s time out. Every job calls the stand-in: no result cache.
      {
        HEURISTIC_TIMEOUT_MS: '1000',
        JOB_MAX_ATTEMPTS: '40',
        RUNNER_CONCURRENCY: '8',
        RESULT_CACHE_TTL_MS: '0',
      },
    );
    const descriptions = [
      'PAYPAL *SUSHI GO',
      'GRUBHUB*VINYL CO',
      'GRUBHUB*JDACTF 834-678-7722',
      'SQ *BLUE BOTTLE COFFEE DENVER CO',
      'Payment Netflix APRIL***',
      'DD *DOORDASH POKE BAR',
      'GOOGLE *YOUTUBE TV',
      'SQ *12345',
    ].flatMap((d) => [d, d]);
    const ids: string[] = [];
    for (const d of descriptions) ids.push(await submit(service, d));

    const jobs = await finished(service, ids);
    expect(jobs.map((j) => j.status)).to.deep.equal(descriptions.map(() => 'succeeded'));
    expect(jobs.map((j) => j.result)).to.deep.equal(descriptions.map((d) => recognise(d)));

    // Every failed attempt is one error of the HTTP heuristic, by kind; every job one success.
    const metrics = await (await service.get('/metrics')).text();
    const count = (pattern: RegExp) =>
      [...metrics.matchAll(pattern)].reduce((sum, m) => sum + Number(m[1]), 0);
    const errors = count(/^merchant_heuristic_http_errors_total\{kind="[a-z_0-9]+"\} (\d+)$/gm);
    const retries = jobs.reduce((sum, j) => sum + j.attempts - 1, 0);
    expect(retries, 'attempts beyond the first').to.be.above(0);
    expect(errors).to.equal(retries);
    expect(
      count(/^merchant_heuristic_http_request_duration_seconds_count\{outcome="ok"\} (\d+)$/gm),
    ).to.equal(descriptions.length);
  });

  it('a 4xx answer fails the job at once: no retry', async () => {
    const { service } = await start(
      { STANDIN_DELAY_MS: '0', STANDIN_FAILURES: '422:1' },
      { JOB_MAX_ATTEMPTS: '3' },
    );
    const [job] = await finished(service, [await submit(service, 'PAYPAL *SUSHI GO')]);
    expect(job).to.deep.include({ status: 'failed', attempts: 1, result: null });
    expect(job?.error).to.deep.equal({
      code: 'non_retryable',
      message: 'heuristic answered 422: {"error":"injected failure 422"}',
      attempt: 1,
    });
  });

  it('an answer slower than HEURISTIC_TIMEOUT_MS times out each attempt, and the stand-in sees the call dropped', async () => {
    const { service, standin } = await start(
      { STANDIN_DELAY_MS: '30000' },
      { HEURISTIC_TIMEOUT_MS: '300', JOB_MAX_ATTEMPTS: '2' },
    );
    const [job] = await finished(service, [await submit(service, 'PAYPAL *SUSHI GO')]);
    expect(job).to.deep.include({ status: 'failed', attempts: 2 });
    expect(job?.error).to.deep.equal({
      code: 'timeout',
      message: 'heuristic did not answer within 300 ms',
      attempt: 2,
    });
    await eventually(
      async () => standin.logs.filter((l) => l.status === 'client gone').length === 2,
      10_000,
      'the stand-in to see both calls abandoned',
    );
  });
});
