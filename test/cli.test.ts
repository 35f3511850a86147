/**
 * The CLI as a batch script runs it: spawned as a process against a spawned server.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { parse } from 'csv-parse/sync';
import type { Knex } from 'knex';
import { v7 } from 'uuid';
import { recognise, recogniseMerchant } from '../src/heuristic/recognise.js';
import { freePort } from '../src/net.js';
import { eventually, freshDatabase, jobStatuses, rowCount, databaseUrl } from './support/db.js';
import { ServerProcess } from './support/server-process.js';
import { issueKey } from '../src/auth/keys.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SAMPLE = path.resolve(ROOT, 'test/fixtures/transactions-2k.csv');

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<number | null>;
}

/** Client "a"'s key, made by startServer: what `cli` sends unless `env` says otherwise. */
let apiKey = '';

function cli(args: string[], url: string, env: Record<string, string> = {}): Run {
  const base = { ...process.env };
  delete base.DATABASE_URL;
  // As `npm run cli` runs it; the built `bin` entry is run by test/package.test.ts.
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: {
      ...base,
      MERCHANT_API_URL: url,
      MERCHANT_API_KEY: apiKey,
      MERCHANT_API_KEY_FILE: path.join(os.tmpdir(), 'mn-no-such-key-file'),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: Run = {
    child,
    stdout: '',
    stderr: '',
    exited: once(child, 'exit').then(([code]) => code as number | null),
  };
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (run.stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (run.stderr += s));
  return run;
}

describe('CLI (merchant-normalizer)', function () {
  this.timeout(120_000);
  let db: Knex;
  let server: ServerProcess | undefined;
  let dir: string;

  beforeEach(async () => {
    db = await freshDatabase();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mn-cli-'));
  });
  afterEach(async () => {
    await server?.kill('SIGKILL');
    server = undefined;
    await db.destroy();
    await fs.rm(dir, { recursive: true, force: true });
  });

  const startServer = async (delay: string, env: Record<string, string> = {}) => {
    server = ServerProcess.spawn({
      DATABASE_URL: databaseUrl(db),
      HEURISTIC_DELAY_MS: delay,
      RUNNER_CONCURRENCY: '16',
      ...env,
    });
    const listening = await server.waitForLog((l) => l.msg === 'listening', 30_000);
    apiKey = (await issueKey(db, 'a')).key;
    return String(listening.url);
  };
  const count = (table: string) => rowCount(db, table);

  it('submits transactions-2k.csv and writes 2,000 results in input order', async () => {
    const url = await startServer('0');
    const out = path.join(dir, 'results.csv');
    const run = cli(['submit', SAMPLE, '--out', out, '--batch-size', '500'], url);
    expect(await run.exited, run.stderr).to.equal(0);

    const input = parse<{ description: string; amount: string }>(
      await fs.readFile(SAMPLE, 'utf8'),
      { columns: true },
    );
    const output = parse<{
      line: string;
      description: string;
      amount: string;
      status: string;
      merchant: string;
      merchant_id: string;
      intermediaries: string;
    }>(await fs.readFile(out, 'utf8'), { columns: true });
    expect(output).to.have.length(2000);
    for (const [i, row] of output.entries()) {
      expect(row.line).to.equal(String(i + 2));
      expect(row.description).to.equal(input[i]?.description);
      expect(Number(row.amount)).to.equal(Number(input[i]?.amount));
      expect(row.status).to.equal('succeeded');
      expect(row.merchant).to.equal(recogniseMerchant(row.description) ?? '');
      const { merchant, intermediaries } = recognise(row.description);
      expect(row.merchant_id).to.equal(merchant?.id ?? '');
      expect(row.intermediaries).to.equal(intermediaries.map((i) => i.id).join(';'));
    }
    expect(await count('batches')).to.equal(4);
    expect(await count('jobs')).to.equal(2000);
    // Not a terminal: plain progress lines, and a summary.
    expect(run.stderr).to.match(/^progress \d+\/2000 /m);
    expect(run.stderr).to.contain('2000 row(s): 2000 succeeded');
    expect(existsSync(`${out}.state.json`), 'state file removed when done').to.equal(false);
  });

  it('resumes an interrupted run without submitting anything twice', async () => {
    // ~2000 x 75 ms / 16 slots: about 10 s of work, long enough to interrupt the wait (with
    // the result cache off: it would answer most rows at once).
    const url = await startServer('50-100', { RESULT_CACHE_TTL_MS: '0' });
    const out = path.join(dir, 'results.jsonl');
    const args = ['submit', SAMPLE, '--out', out, '--batch-size', '250'];
    const first = cli(args, url);
    const statePath = `${out}.state.json`;
    const state = await eventually(
      async () => {
        if (!existsSync(statePath)) return false;
        const s = JSON.parse(await fs.readFile(statePath, 'utf8').catch(() => '{}')) as {
          batches?: string[];
        };
        return (s.batches?.length ?? 0) === 8 && s;
      },
      30_000,
      'all 8 batches in the state file',
    );
    // Some jobs done, so the rerun has progress to count from.
    await eventually(async () => ((await jobStatuses(db)).succeeded ?? 0) >= 50, 30_000, '50 done');
    first.child.kill('SIGKILL');
    await first.exited;
    const doneAtKill = (await jobStatuses(db)).succeeded ?? 0;
    expect(await count('batches')).to.equal(8);
    const unfinished = Number(
      (
        await db('jobs').whereIn('status', ['pending', 'running']).count<{ count: number }[]>('*')
      )[0]?.count,
    );
    expect(unfinished, 'interrupted while jobs were still running').to.be.above(0);

    // As if the kill had come right after the server committed batches 4..8 but before the
    // state file recorded them: the rerun must send them again and get the same batches back.
    await fs.writeFile(
      statePath,
      JSON.stringify({ ...state, batches: state.batches?.slice(0, 3) }),
    );

    const second = cli(args, url);
    expect(await second.exited, second.stderr).to.equal(0);
    expect(second.stderr).to.match(
      /resuming run \S+: 3 of 8 batch\(es\) already submitted, \d+ of 2000 transaction\(s\) already finished/,
    );
    expect(second.stderr.match(/were already submitted as/g)).to.have.length(5);
    // Progress starts from the jobs already done, not from 0.
    const firstProgress = Number(/^progress (\d+)\/2000 /m.exec(second.stderr)?.[1]);
    expect(firstProgress, second.stderr).to.be.at.least(doneAtKill);
    expect(doneAtKill).to.be.at.least(50);
    expect(await count('batches')).to.equal(8);
    expect(await count('jobs')).to.equal(2000);

    const lines = (await fs.readFile(out, 'utf8')).trim().split('\n');
    expect(lines).to.have.length(2000);
    const records = lines.map((l) => JSON.parse(l) as { line: number; status: string });
    expect(records.map((r) => r.line)).to.deep.equal(records.map((_, i) => i + 2));
    expect(records.every((r) => r.status === 'succeeded')).to.equal(true);
  });

  it('reports invalid rows with their line numbers and submits nothing', async () => {
    const url = await startServer('0');
    const file = path.join(dir, 'bad.csv');
    await fs.writeFile(
      file,
      'date,description,amount,reference\n' +
        '2026-04-03,Netflix,15.49,a\n' +
        '2026-02-30,Spotify,9.99,b\n' +
        '2026-04-03,"Multi\nline, quoted",1,c\n' +
        '2026-04-03,,abc,d\n',
    );
    const run = cli(['submit', file], url);
    expect(await run.exited).to.equal(2);
    expect(run.stderr).to.contain(`${file}:3: date must be a real calendar date`);
    expect(run.stderr).to.match(new RegExp(`${file}:6: .*description.*amount`));
    expect(run.stderr).not.to.contain(`${file}:4:`);
    expect(run.stderr).to.contain('2 invalid row(s); nothing was submitted');
    expect(await count('jobs')).to.equal(0);

    // --skip-invalid submits the rest, lists the invalid rows in the output, and exits 1.
    const out = path.join(dir, 'bad.results.jsonl');
    const skipping = cli(['submit', file, '--skip-invalid', '--out', out], url);
    expect(await skipping.exited, skipping.stderr).to.equal(1);
    const records = (await fs.readFile(out, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; status: string; reference: string });
    expect(records.map((r) => [r.line, r.status, r.reference])).to.deep.equal([
      [2, 'succeeded', 'a'],
      [3, 'invalid', 'b'],
      [4, 'succeeded', 'c'],
      [6, 'invalid', 'd'],
    ]);
    expect(await count('jobs')).to.equal(2);
  });

  it('`status ID` prints a job or a batch; an unknown id exits 2', async () => {
    const url = await startServer('0');
    const res = await fetch(`${url}/normalize_merchant/batch`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        prefer: 'wait=10',
        authorization: `Bearer ${apiKey}`,
      },
      body: JSON.stringify({
        transactions: [{ date: '2026-04-03', description: 'NETFLIX.COM', amount: 15.49 }],
      }),
    });
    const batch = (await res.json()) as { id: string; job_ids: string[] };
    const ofJob = cli(['status', batch.job_ids[0] ?? ''], url);
    expect(await ofJob.exited, ofJob.stderr).to.equal(0);
    expect(JSON.parse(ofJob.stdout)).to.include({ id: batch.job_ids[0], status: 'succeeded' });
    const ofBatch = cli(['status', batch.id, '--wait', '5'], url);
    expect(await ofBatch.exited).to.equal(0);
    expect(JSON.parse(ofBatch.stdout)).to.include({ id: batch.id, done: true });
    const unknown = cli(['status', 'nope'], url);
    expect(await unknown.exited).to.equal(2);
    expect(unknown.stderr).to.contain('no job or batch');
  });

  it('`status ID` of an id past retention exits 4 (410 Gone), saying the retention period', async () => {
    const url = await startServer('0', { JOB_RETENTION_DAYS: '2' });
    const expired = v7({ msecs: Date.now() - 3 * 24 * 60 * 60 * 1000 });
    const run = cli(['status', expired], url);
    expect(await run.exited, run.stderr).to.equal(4);
    expect(run.stderr).to.contain('410 Gone');
    expect(run.stderr).to.contain('retention period of 2 days');
    // A recent id that does not exist is still "no such id" (exit 2), not expired.
    const unknown = cli(['status', v7()], url);
    expect(await unknown.exited).to.equal(2);
  });

  it('exits 3 with a resumable message when the service cannot be reached', async () => {
    const url = `http://127.0.0.1:${await freePort()}`; // nothing listens there
    const run = cli(['submit', SAMPLE, '--out', path.join(dir, 'x.csv'), '--retries', '1'], url);
    expect(await run.exited).to.equal(3);
    const tried = `${url}/normalize_merchant/batch`;
    expect(run.stderr).to.contain(
      `retrying in 1 s (attempt 1): network error: ECONNREFUSED at ${tried}`,
    );
    expect(run.stderr).to.contain(`cannot reach the service at ${tried} (ECONNREFUSED)`);
    expect(run.stderr).to.contain('rerun the same command to resume');
  });

  it('refuses a --url that is not http(s), naming it (exit 2)', async () => {
    const run = cli(['submit', SAMPLE, '--url', 'localhost:9898'], 'http://unused');
    expect(await run.exited).to.equal(2);
    expect(run.stderr).to.contain('must be an http:// or https:// URL');
    expect(run.stderr).to.contain('"localhost:9898"');
  });

  it('names the URL of a call the service refused', async () => {
    const url = await startServer('0');
    const input = path.join(dir, 'in.csv');
    await fs.writeFile(input, 'date,description,amount\n2026-04-03,NETFLIX.COM,15.49\n');
    const run = cli(['submit', input], url, { MERCHANT_API_KEY: 'mn_000000000000_wrong' });
    expect(await run.exited).to.equal(3);
    expect(run.stderr).to.contain(`POST ${url}/normalize_merchant/batch answered 401 Unauthorized`);
  });

  it('copies columns the service does not know to the output, in CSV and JSONL', async () => {
    const url = await startServer('0');
    const file = path.join(dir, 'bank.csv');
    await fs.writeFile(
      file,
      'Booking ID,Date,Description,Amount,Status,Category\n' +
        'b-1,2026-04-03,Payment Netflix APRIL***,15.49,posted,"Fun, games"\n' +
        'b-2,2026-04-04,SQ *BLUE BOTTLE COFFEE,-4.50,pending,\n',
    );
    const run = cli(['submit', file], url);
    expect(await run.exited, run.stderr).to.equal(0);
    expect(run.stderr).to.contain(
      'note: column(s) "Booking ID", "Status", "Category" are not sent to the service',
    );
    const text = await fs.readFile(path.join(dir, 'bank.results.csv'), 'utf8');
    expect(text.split('\n')[0]).to.equal(
      'line,reference,date,description,amount,currency,mcc,status,merchant,merchant_id,' +
        'intermediaries,error,job_id,Booking ID,input_Status,Category',
    );
    const out = parse<Record<string, string>>(text, { columns: true });
    expect(
      out.map((r) => [r['Booking ID'], r.input_Status, r.Category, r.status, r.merchant]),
    ).to.deep.equal([
      ['b-1', 'posted', 'Fun, games', 'succeeded', 'Netflix'],
      ['b-2', 'pending', '', 'succeeded', 'Blue Bottle Coffee'],
    ]);
    expect(out.map((r) => r.amount)).to.deep.equal(['15.49', '-4.5']);

    const dropped = cli(
      ['submit', file, '--drop-extra-columns', '--out', path.join(dir, 'd.csv')],
      url,
    );
    expect(await dropped.exited, dropped.stderr).to.equal(0);
    const header = (await fs.readFile(path.join(dir, 'd.csv'), 'utf8')).split('\n')[0];
    expect(header).to.equal(
      'line,reference,date,description,amount,currency,mcc,status,merchant,merchant_id,' +
        'intermediaries,error,job_id',
    );

    const jsonl = path.join(dir, 'bank.jsonl');
    await fs.writeFile(
      jsonl,
      JSON.stringify({ date: '2026-04-03', description: 'NETFLIX.COM', amount: 1, tags: ['tv'] }) +
        '\n',
    );
    const fromJsonl = cli(['submit', jsonl], url);
    expect(await fromJsonl.exited, fromJsonl.stderr).to.equal(0);
    const [record] = (await fs.readFile(path.join(dir, 'bank.results.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(record).to.include({ status: 'succeeded', merchant: 'Netflix' });
    expect(record?.tags).to.deep.equal(['tv']);
  });

  it('says which --amount-format reads a formatted amount, and reads it with that format', async () => {
    const url = await startServer('0');
    const file = path.join(dir, 'formatted.csv');
    await fs.writeFile(
      file,
      'date,description,amount\n' +
        '2026-04-03,NETFLIX.COM,"1,234.50"\n' +
        '2026-04-04,NETFLIX.COM,-12.00\n' +
        '2026-04-05,NETFLIX.COM,twelve\n',
    );
    const refused = cli(['submit', file], url);
    expect(await refused.exited).to.equal(2);
    expect(refused.stderr).to.contain(
      `${file}:2: amount "1,234.50" is a formatted number; to read it, pass --amount-format "1,234.56"`,
    );
    expect(refused.stderr).to.contain(`${file}:4: amount "twelve" is not a number`);
    expect(refused.stderr).not.to.contain('not a string');
    expect(await count('jobs')).to.equal(0);

    await fs.writeFile(
      file,
      'date,description,amount\n2026-04-03,NETFLIX.COM,"1,234.50"\n2026-04-04,NETFLIX.COM,-12\n',
    );
    const read = cli(['submit', file, '--amount-format', '1,234.56'], url);
    expect(await read.exited, read.stderr).to.equal(0);
    const amounts = (await db('jobs').orderBy('seq').select('transaction')).map(
      (r: { transaction: { amount: number } }) => r.transaction.amount,
    );
    expect(amounts).to.deep.equal([1234.5, -12]);

    const german = path.join(dir, 'de.csv');
    await fs.writeFile(german, 'date,description,amount\n2026-04-03,NETFLIX.COM,"-1.234,50"\n');
    const de = cli(['submit', german, '--amount-format', '1.234,56'], url);
    expect(await de.exited, de.stderr).to.equal(0);
    expect(await count('jobs')).to.equal(3);
  });

  it('names the missing columns of a header it cannot use', async () => {
    const file = path.join(dir, 'other.csv');
    await fs.writeFile(file, 'Datum,Buchungstext,Betrag\n2026-04-03,NETFLIX,1\n');
    const run = cli(['submit', file], 'http://unused');
    expect(await run.exited).to.equal(2);
    expect(run.stderr).to.contain('missing column(s) "date", "description", "amount"');
    expect(run.stderr).to.contain('Found: "Datum", "Buchungstext", "Betrag"');
  });

  describe('keys', () => {
    const admin = (args: string[]) =>
      cli(['keys', ...args], 'http://unused', { DATABASE_URL: databaseUrl(db) });

    it('creates, lists and revokes a key; the revoked key gets 401 at once', async () => {
      const url = await startServer('0');
      const created = admin(['create', '--client', 'acme']);
      expect(await created.exited, created.stderr).to.equal(0);
      const key = created.stdout.trim();
      expect(key).to.match(/^mn_[0-9a-f]{12}_[\w-]{43}$/);
      const keyId = key.slice(3, 15);
      expect(created.stderr).to.contain(`Created key ${keyId} for client "acme"`);

      const listed = admin(['list']);
      expect(await listed.exited, listed.stderr).to.equal(0);
      expect(listed.stdout).to.match(new RegExp(`^${keyId}\\s+acme\\s+\\S+\\s+active$`, 'm'));
      expect(listed.stdout, 'a key is shown once, never listed').not.to.contain(key);

      const jobs = () => fetch(`${url}/jobs`, { headers: { authorization: `Bearer ${key}` } });
      expect((await jobs()).status).to.equal(200); // now cached as verified

      const revoked = admin(['revoke', keyId]);
      expect(await revoked.exited, revoked.stderr).to.equal(0);
      // The server heard the revocation (NOTIFY): its cache does not keep the key alive.
      await eventually(async () => (await jobs()).status === 401, 3000, 'a 401 after revoke');
      const after = await jobs();
      expect(after.headers.get('www-authenticate')).to.contain('error="invalid_token"');

      const again = admin(['revoke', keyId]);
      expect(await again.exited).to.equal(1);
      expect(again.stderr).to.contain('No active key');
      const relisted = admin(['list', '--client', 'acme']);
      await relisted.exited;
      expect(relisted.stdout).to.match(new RegExp(`^${keyId}\\s+acme\\s+\\S+\\s+revoked `, 'm'));
    });

    it('`KEY=$(npm run -s cli -- keys create …)`, as the README writes it, captures the key alone', async () => {
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: databaseUrl(db) };
      for (const k of Object.keys(env)) if (/^npm_(package|lifecycle)_/.test(k)) delete env[k];
      const shell = spawn(
        'sh',
        ['-c', 'KEY=$(npm run -s cli -- keys create --client acme) && printf "[%s]" "$KEY"'],
        { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stdout = '';
      let stderr = '';
      shell.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      shell.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      const [code] = (await once(shell, 'exit')) as [number | null];
      expect(code, stderr).to.equal(0);
      expect(stdout).to.match(/^\[mn_[0-9a-f]{12}_[\w-]{43}\]$/);
      expect(stderr).to.contain('Created key');
    });

    it('refuses a bad client name with exit 2', async () => {
      const run = admin(['create', '--client', 'no spaces']);
      expect(await run.exited).to.equal(2);
      expect(run.stderr).to.contain('--client must be');
    });
  });

  it('reads the key from --api-key-file; without a key it exits 3 and says how to send one', async () => {
    const url = await startServer('0');
    const keyFile = path.join(dir, 'api-key');
    await fs.writeFile(keyFile, `${apiKey}\n`, { mode: 0o600 });
    const input = path.join(dir, 'in.csv');
    await fs.writeFile(input, 'date,description,amount\n2026-04-03,NETFLIX.COM,15.49\n');

    const withFile = cli(['submit', input, '--api-key-file', keyFile], url, {
      MERCHANT_API_KEY: '',
    });
    expect(await withFile.exited, withFile.stderr).to.equal(0);

    const without = cli(['submit', input, '--fresh', '--out', path.join(dir, 'o.csv')], url, {
      MERCHANT_API_KEY: '',
    });
    expect(await without.exited).to.equal(3);
    expect(without.stderr).to.contain('401 Unauthorized');
    expect(without.stderr).to.contain('hint: pass --api-key, set MERCHANT_API_KEY');
  });
});
