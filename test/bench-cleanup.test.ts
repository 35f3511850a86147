/**
 * `npm run bench` without BENCH_DATABASE_URL starts an embedded Postgres in a
 * `merchant-bench-*` directory under the temp dir. A run that fails (here: the service it starts
 * cannot be built) must still stop that Postgres and remove the directory, as a finished run
 * does; it used to exit at once and leave both behind.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminQuery, dropDatabase, eventually, withDatabase } from './support/db.js';
import { processesWhose } from './support/procs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Runs bench script `file` (through tsx) with `env` added; its exit code and stderr. */
async function runBenchScript(
  file: string,
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const script = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  script.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  script.stdout.resume();
  const [code] = (await once(script, 'exit')) as [number | null];
  return { code, stderr };
}

describe('bench/main.ts after a failure', function () {
  // Node with tsx, an embedded Postgres initialised from scratch, and a server that fails to build.
  this.timeout(120_000);

  let tmp: string;
  beforeEach(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-cleanup-'));
    // Run as root, the embedded Postgres runs as "postgres", which must reach its directory.
    await fs.chmod(tmp, 0o755);
  });
  afterEach(() => fs.rm(tmp, { recursive: true, force: true }));

  it('stops its embedded Postgres and removes its data directory when a server fails to start', async () => {
    // A "service checkout" with nothing in it: the first server the bench starts cannot be built.
    const noService = path.join(tmp, 'no-service');
    await fs.mkdir(noService);
    const { code, stderr } = await runBenchScript('bench/main.ts', {
      TMPDIR: tmp,
      BENCH_DATABASE_URL: '',
      BENCH_SERVICE_DIR: noService,
      BENCH_ONLY: 'submit',
    });

    expect(code, stderr).to.equal(1);
    expect(stderr).to.match(/bench: failed/);
    // The run did create its directory here (its Postgres started before the server was spawned)…
    expect(stderr, 'the bench got as far as building the service').to.match(
      /npm run build in .*no-service exited with/,
    );
    // …and removed it on the way out.
    const left = (await fs.readdir(tmp)).filter((name) => name.startsWith('merchant-bench-'));
    expect(left).to.deep.equal([]);
  });
});

/**
 * `bench/profile-submit.ts` spawns the server it measures; when it failed before the load (here:
 * `bare` on a database without the service's tables), it exited and left that server running.
 */
describe('bench/profile-submit.ts after a failure', function () {
  this.timeout(60_000);

  let database: string | undefined;
  const marker = `MERCHANT_TEST_MARK=${randomUUID()}`;
  afterEach(async () => {
    for (const pid of await processesWhose('environ', marker)) process.kill(pid, 'SIGKILL');
    if (database) await dropDatabase(database);
  });

  it('stops the server it spawned', async function () {
    if (!existsSync('/proc/self/environ')) this.skip();
    // A database of this test's own, without the service's tables.
    database = `mnt_${process.pid}_profile_submit_empty`;
    await adminQuery(`CREATE DATABASE "${database}"`);
    const [name, value] = marker.split('=') as [string, string];
    // bare Koa answers (so it was running), then the script's TRUNCATE fails.
    const { code, stderr } = await runBenchScript('bench/profile-submit.ts', {
      [name]: value,
      DATABASE_URL: withDatabase(database),
      BENCH_RUNNER: 'bare',
      BENCH_SECONDS: '1',
    });
    expect(code, stderr).to.equal(1);
    expect(stderr).to.match(/relation "jobs" does not exist/);
    await eventually(
      async () => (await processesWhose('environ', marker)).length === 0,
      10_000,
      'the spawned server to stop',
    );
  });
});
