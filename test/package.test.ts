/**
 * The package as a user installs it: `npm pack` (which builds it), installed from the tarball
 * into an empty project, then the client imported by a script there and the CLI run with npx,
 * against a spawned server. Nothing is built on the user's side.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { databaseUrl, freshDatabase } from './support/db.js';
import { ServerProcess } from './support/server-process.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Read synchronously: a top-level await makes mocha load this file as a separate ES module
// graph, with test/support/db.ts instantiated twice (and its admin connection never closed).
const VERSION = (
  JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

/** This environment without what an outer `npm test` sets for its own package. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_(package|lifecycle)_/.test(k) && k !== 'DATABASE_URL') env[k] = v;
  }
  return { ...env, ...extra };
}

/** A script a user would write: submit a batch, wait for it, read its results. */
const SCRIPT = `
import { MerchantClient, ApiError } from 'merchant-normalizer/client';
import * as root from 'merchant-normalizer';

const client = new MerchantClient({ baseUrl: process.env.MN_URL, apiKey: process.env.MN_KEY });
const { batch } = await client.submitBatch(
  [
    { date: '2026-04-03', description: 'Payment Netflix APRIL***', amount: 15.49, reference: 'a' },
    { date: '2026-04-04', description: 'SQ *BLUE BOTTLE COFFEE DENVER CO', amount: 4.5, reference: 'b' },
  ],
  { idempotencyKey: 'install-test-1' },
);
let read = await client.getBatch(batch.id, { wait: 20 });
while (!read.value.done) read = await client.getBatch(batch.id, { wait: 20, etag: read.etag });
const items = [];
for await (const item of client.batchResults(batch.id)) items.push(item);
const missing = (await client.getJob('no-such-job')).value ?? null;
let status;
try {
  await new MerchantClient({ baseUrl: process.env.MN_URL, apiKey: 'mn_wrong' }).listJobs();
} catch (err) {
  status = err instanceof ApiError ? err.status : String(err);
}
console.log(JSON.stringify({ batch: batch.id, jobIds: batch.job_ids, items, missing, status,
  sameExport: root.MerchantClient === MerchantClient }));
`;

/** The same in TypeScript, to check the published declarations. */
const TYPED = `
import { MerchantClient, type Batch, type BatchItem, type Job } from 'merchant-normalizer/client';

const client = new MerchantClient({ baseUrl: 'http://127.0.0.1:9898', apiKey: 'mn_x' });
export async function firstMerchant(id: string): Promise<string | null> {
  const read = await client.getJob(id, { wait: 5 });
  const job: Job | undefined = read.value;
  return job?.result?.merchant?.name ?? null;
}
export async function sizes(id: string): Promise<number> {
  const batch: Batch | undefined = (await client.getBatch(id)).value;
  const items: BatchItem[] = [];
  for await (const item of client.batchResults(id)) items.push(item);
  return (batch?.size ?? 0) + items.length;
}
`;

describe('the package (npm pack, installed from the tarball)', function () {
  // Packing builds the project (tsc), and installing fetches its dependencies.
  this.timeout(300_000);
  let db: Knex;
  let server: ServerProcess | undefined;
  let work: string;
  let project: string;

  before(async () => {
    db = await freshDatabase();
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'mn-pack-'));
    const packed = await run('npm', ['pack', '--pack-destination', work, '--json'], {
      cwd: ROOT,
      env: cleanEnv(),
      maxBuffer: 32 * 1024 * 1024,
    });
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as [
      { filename: string; files: { path: string }[] },
    ];
    const files = info.files.map((f) => f.path);
    expect(files).to.include.members([
      'package.json',
      'dist/src/client/client.js',
      'dist/src/client/client.d.ts',
      'dist/src/cli/main.js',
      'dist/src/main.js',
      'dist/db/migrations.js',
      'public/dashboard/index.html',
      'public/dashboard/app.js',
    ]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).to.deep.equal([]);
    expect(files.filter((f) => /^(test|bench|src)\//.test(f))).to.deep.equal([]);

    project = path.join(work, 'app');
    await fs.mkdir(project);
    await fs.writeFile(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }),
    );
    // The embedded Postgres binaries (an optional dependency) are not needed to be a client.
    await run(
      'npm',
      [
        'install',
        path.join(work, info.filename),
        '--omit=optional',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
      ],
      { cwd: project, env: cleanEnv(), maxBuffer: 32 * 1024 * 1024 },
    );
    const installed = path.join(project, 'node_modules', 'merchant-normalizer');
    expect(existsSync(path.join(installed, 'dist/src/client/client.js'))).to.equal(true);
    expect(existsSync(path.join(installed, 'src')), 'no sources to build').to.equal(false);

    server = await ServerProcess.start({ DATABASE_URL: databaseUrl(db), HEURISTIC_DELAY_MS: '0' });
    server.apiKey = (await issueKey(db, 'a')).key;
  });

  after(async () => {
    await server?.kill('SIGKILL');
    await db?.destroy();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('imports the client (merchant-normalizer/client) in a script that submits a batch and reads its results', async () => {
    await fs.writeFile(path.join(project, 'use-client.mjs'), SCRIPT);
    const { stdout } = await run(process.execPath, ['use-client.mjs'], {
      cwd: project,
      env: cleanEnv({ MN_URL: server?.url ?? '', MN_KEY: server?.apiKey ?? '' }),
    });
    const out = JSON.parse(stdout) as {
      jobIds: string[];
      items: {
        index: number;
        job_id: string;
        reference: string;
        status: string;
        result: unknown;
      }[];
      missing: unknown;
      status: unknown;
      sameExport: boolean;
    };
    expect(out.items.map((i) => [i.index, i.reference, i.status, i.result])).to.deep.equal([
      [0, 'a', 'succeeded', { merchant: { name: 'Netflix', id: 'netflix' }, intermediaries: [] }],
      [
        1,
        'b',
        'succeeded',
        {
          merchant: { name: 'Blue Bottle Coffee', id: 'blue-bottle-coffee' },
          intermediaries: [{ id: 'square', name: 'Square', kind: 'processor' }],
        },
      ],
    ]);
    expect(out.items.map((i) => i.job_id)).to.deep.equal(out.jobIds);
    expect(out.missing, 'a 404 reads as no value').to.equal(null);
    expect(out.status, 'a wrong key is an ApiError with its status').to.equal(401);
    expect(out.sameExport, 'the package root exports the client too').to.equal(true);
  });

  it('ships declarations that type-check a strict TypeScript consumer', async () => {
    await fs.writeFile(path.join(project, 'typed.ts'), TYPED);
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const { stdout } = await run(
      process.execPath,
      [
        tsc,
        '--noEmit',
        '--strict',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--target',
        'es2022',
        '--lib',
        'es2023,dom,dom.asynciterable',
        '--types',
        'node',
        '--typeRoots',
        path.join(ROOT, 'node_modules/@types'),
        '--skipLibCheck',
        'typed.ts',
      ],
      { cwd: project, env: cleanEnv() },
    ).catch((err: Error & { stdout?: string }) => {
      throw new Error(`tsc failed:\n${err.stdout ?? err.message}`);
    });
    expect(stdout).to.equal('');
  });

  it('runs the CLI with npx: --version, status, and keys create inside $(…)', async () => {
    const npx = (args: string[], extra: Record<string, string> = {}) =>
      run('npx', ['--no', '--', 'merchant-normalizer', ...args], {
        cwd: project,
        env: cleanEnv({ MERCHANT_API_URL: server?.url ?? '', ...extra }),
      });
    expect((await npx(['--version'])).stdout.trim()).to.equal(VERSION);

    const res = await server?.post('/normalize_merchant', {
      date: '2026-04-03',
      description: 'NETFLIX.COM',
      amount: 1,
    });
    const job = (await res?.json()) as { id: string };
    const status = await npx(['status', job.id, '--wait', '10'], {
      MERCHANT_API_KEY: server?.apiKey ?? '',
    });
    expect(JSON.parse(status.stdout)).to.include({ id: job.id, status: 'succeeded' });

    // What `KEY=$(npx merchant-normalizer keys create --client ci)` captures: the key alone.
    const created = await run(
      'sh',
      ['-c', 'KEY=$(npx --no -- merchant-normalizer keys create --client ci) && echo "[$KEY]"'],
      { cwd: project, env: cleanEnv({ DATABASE_URL: databaseUrl(db) }) },
    );
    expect(created.stdout).to.match(/^\[mn_[0-9a-f]{12}_[\w-]{43}\]\n$/);
    const key = created.stdout.slice(1, -2);
    const jobs = await fetch(`${server?.url}/jobs`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(jobs.status).to.equal(200);
  });
});
