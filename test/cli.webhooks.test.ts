/**
 * `merchant-normalizer webhooks …` and `merchant-normalizer events`, spawned through the bin
 * entry against a spawned server, as a script runs them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { databaseUrl, eventually, freshDatabase } from './support/db.js';
import { Receiver } from './support/receiver.js';
import { ServerProcess } from './support/server-process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<number | null>;
}

describe('CLI: webhooks and events', function () {
  this.timeout(120_000);
  let db: Knex;
  let server: ServerProcess;
  let receiver: Receiver;

  const cli = (args: string[]): Run => {
    const env = { ...process.env };
    delete env.DATABASE_URL;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), ...args],
      {
        cwd: ROOT,
        env: {
          ...env,
          MERCHANT_API_URL: server.url,
          MERCHANT_API_KEY: server.apiKey,
          MERCHANT_API_KEY_FILE: path.join(os.tmpdir(), 'mn-no-such-key-file'),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const run: Run = {
      child,
      stdout: '',
      stderr: '',
      exited: once(child, 'exit').then(([code]) => code as number | null),
    };
    child.stdout?.setEncoding('utf8').on('data', (s: string) => (run.stdout += s));
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (run.stderr += s));
    return run;
  };
  const ok = async (args: string[]) => {
    const run = cli(args);
    expect(await run.exited, `${args.join(' ')}: ${run.stderr}`).to.equal(0);
    return run.stdout;
  };
  const submit = async (description: string) => {
    const res = await server.post('/normalize_merchant', {
      date: '2026-04-03',
      description,
      amount: 1,
    });
    return ((await res.json()) as { id: string }).id;
  };

  beforeEach(async () => {
    db = await freshDatabase();
    receiver = await Receiver.start();
    server = await ServerProcess.start({
      DATABASE_URL: databaseUrl(db),
      HEURISTIC_DELAY_MS: '0',
      WEBHOOK_ALLOW_PRIVATE: 'true',
    });
    server.apiKey = (await issueKey(db, 'a')).key;
  });
  afterEach(async () => {
    await server.kill('SIGKILL');
    await receiver.close();
    await db.destroy();
  });

  it('creates, lists, shows, updates and deletes an endpoint, and reads its delivery log', async () => {
    const created = JSON.parse(
      await ok(['webhooks', 'create', `${receiver.url}/hook`, '--events', 'job.succeeded']),
    ) as { id: string; secret: string; events: string[] };
    expect(created.secret).to.match(/^whsec_/);
    expect(created.events).to.deep.equal(['job.succeeded']);
    receiver.secrets.push(created.secret);
    const listed = JSON.parse(await ok(['webhooks', 'list'])) as { id: string }[];
    expect(listed.map((w) => w.id)).to.deep.equal([created.id]);
    expect(JSON.stringify(listed)).not.to.contain(created.secret);

    await submit('Netflix');
    await eventually(async () => receiver.received.length === 1);
    await eventually(async () => {
      const log = JSON.parse(await ok(['webhooks', 'deliveries', created.id])) as {
        status: string;
      }[];
      return log.length === 1 && log[0]?.status === 'delivered';
    });
    const rotated = JSON.parse(await ok(['webhooks', 'rotate-secret', created.id])) as {
      secret: string;
    };
    expect(rotated.secret)
      .to.match(/^whsec_/)
      .and.not.equal(created.secret);
    const off = JSON.parse(await ok(['webhooks', 'update', created.id, '--disable'])) as {
      enabled: boolean;
      disabled_reason: string;
    };
    expect(off).to.include({ enabled: false, disabled_reason: 'manual' });
    expect(JSON.parse(await ok(['webhooks', 'show', created.id]))).to.include({ enabled: false });
    await ok(['webhooks', 'delete', created.id]);
    const missing = cli(['webhooks', 'show', created.id]);
    expect(await missing.exited).to.equal(3);
    expect(missing.stderr).to.contain('404 Not Found');
    const bad = cli(['webhooks', 'create', `${receiver.url}/x`, '--events', 'job.exploded']);
    expect(await bad.exited).to.equal(2);
    expect(bad.stderr).to.contain('unknown event type job.exploded');
  });

  it('events prints the events after --after as JSON lines, then exits after --count', async () => {
    const first = await submit('Netflix');
    await eventually(async () => (await db('job_events').where({ job_id: first })).length === 1);
    const after = String(
      (await db('job_events').where({ job_id: first }).first<{ id: string }>()).id,
    );
    const next = [await submit('Spotify'), await submit('Hulu')];
    const run = cli(['events', '--after', after, '--count', '2', '--types', 'job.succeeded']);
    expect(await run.exited, run.stderr).to.equal(0);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            id: string;
            type: string;
            data: { id: string; status: string };
          },
      );
    expect(lines.map((l) => l.data.id).sort()).to.deep.equal([...next].sort());
    expect(
      lines.every((l) => l.type === 'job.succeeded' && l.data.status === 'succeeded'),
    ).to.equal(true);
    expect(Number(lines[0]!.id)).to.be.above(Number(after));
  });
});
