/**
 * The README's walk-through, run as a reader would run it: its `sh` blocks (between the
 * `<!-- walkthrough` markers) go to bash, one after another, against the real server started
 * as the walk-through says (`HEURISTIC_DELAY_MS=… npm start`'s entry point) on a database of its
 * own; the key in `.data/api-key` is one made by the quick start's `KEY=$(npm run -s cli -- keys
 * create …)`. Each block that the README follows with what it prints (`http` or `json`) must
 * print that: the same status line, headers and JSON, ids and times aside. So when the service
 * or the README changes and they no longer agree, this fails.
 */
import { type SpawnOptions, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { databaseUrl, freshDatabase } from './support/db.js';
import { ServerProcess } from './support/server-process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const README_URL = 'http://localhost:9898';
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

interface Block {
  lang: string;
  text: string;
}

/** The fenced blocks of `markdown`, in order. */
function blocks(markdown: string): Block[] {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({
    lang: m[1] ?? '',
    text: m[2] ?? '',
  }));
}

/** The README between its walk-through markers. */
function walkthrough(): string {
  const start = README.indexOf('<!-- walkthrough');
  const end = README.indexOf('<!-- /walkthrough -->');
  expect(start, 'the walk-through start marker').to.be.above(-1);
  expect(end, 'the walk-through end marker').to.be.above(start);
  return README.slice(start, end);
}

/** `value` with ids and timestamps replaced by placeholders, at any depth. */
function normalized(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalized);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalized(v)]));
  }
  if (typeof value === 'string') {
    return TIME.test(value) ? '<time>' : value.replace(UUID, '<uuid>');
  }
  return value;
}

/** A header value with what varies from run to run replaced by placeholders. */
const headerValue = (value: string) =>
  value
    .trim()
    .replace(UUID, '<uuid>')
    .replace(/^"[\w-]{27}"$/, '<etag>')
    .replace(/^\d+$/, '<number>');

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not JSON:\n${text}`);
  }
}

/** Runs `command` with bash; resolves with what it printed and how it exited. */
async function bash(command: string, opts: SpawnOptions) {
  const child = spawn('bash', ['-c', command], { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

describe('README walk-through, run against a started server', function () {
  this.timeout(180_000);
  let db: Knex;
  let server: ServerProcess | undefined;
  let dir: string;

  before(async () => {
    db = await freshDatabase();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mn-readme-'));
    // The commands run from a copy of the project's examples, as from a checkout.
    await fs.cp(path.join(ROOT, 'examples'), path.join(dir, 'examples'), { recursive: true });
  });
  after(async () => {
    await server?.kill('SIGTERM');
    await db?.destroy();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('makes a key with the quick start’s `KEY=$(npm run -s cli -- keys create …)`', async () => {
    const written = /`KEY=\$\((npm run -s cli -- keys create --client) NAME\)`/.exec(README);
    expect(written, 'the quick start shows how to make a key').to.not.equal(null);
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: databaseUrl(db) };
    // As from a terminal: not inside this npm run's environment.
    for (const k of Object.keys(env)) if (/^npm_(package|lifecycle|config)_/.test(k)) delete env[k];
    const run = await bash(`KEY=$(${written?.[1] ?? ''} readme) && printf '%s' "$KEY"`, {
      cwd: ROOT,
      env,
      timeout: 60_000,
    });
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout, 'the variable holds the key alone').to.match(/^mn_[0-9a-f]{12}_[\w-]{43}$/);
    await fs.mkdir(path.join(dir, '.data'));
    await fs.writeFile(path.join(dir, '.data', 'api-key'), `${run.stdout}\n`, { mode: 0o600 });
  });

  it('prints what the README shows, command by command', async () => {
    const text = walkthrough();
    const delay = /`HEURISTIC_DELAY_MS=(\d+) npm start`/.exec(text)?.[1];
    expect(delay, 'the walk-through says how to start the server').to.be.a('string');
    server = await ServerProcess.start({
      DATABASE_URL: databaseUrl(db),
      HOST: '127.0.0.1',
      HEURISTIC_DELAY_MS: delay ?? '',
    });
    const all = blocks(text);
    const steps = all.flatMap((block, i) =>
      block.lang === 'sh'
        ? [{ command: block.text, shows: all[i + 1]?.lang !== 'sh' ? all[i + 1] : undefined }]
        : [],
    );
    expect(steps.length, 'sh blocks in the walk-through').to.be.at.least(4);
    expect(steps.filter((s) => s.shows).length, 'outputs shown').to.be.at.least(3);

    // The README's job id stands for the one its first command creates.
    const sample = /^Location: \/jobs\/(\S+)$/m.exec(steps[0]?.shows?.text ?? '')?.[1];
    expect(sample, 'the first answer shows a Location').to.be.a('string');
    let real = '';
    const state = path.join(dir, 'state.sh');

    for (const [n, step] of steps.entries()) {
      const what = `walk-through block ${n + 1}:\n${step.command}`;
      for (const id of step.command.match(UUID) ?? [])
        expect(id, `${what}\nuses the sample id`).to.equal(sample);
      const assigned = [...step.command.matchAll(/^\s*([A-Za-z_]\w*)=/gm)].map((m) => m[1]);
      const command = step.command
        .replaceAll(README_URL, server.url)
        .replaceAll(sample ?? '', real || (sample ?? ''));
      // One bash per block; the variables a block sets are kept for the ones after it.
      const script = [
        'set -eu',
        `[ -f '${state}' ] && source '${state}'`,
        command,
        ...(assigned.length > 0 ? [`declare -p ${assigned.join(' ')} >> '${state}'`] : []),
      ].join('\n');
      const run = await bash(script, { cwd: dir, timeout: 60_000 });
      expect(run.code, `${what}\nexits 0; stderr: ${run.stderr}`).to.equal(0);

      if (step.shows?.lang === 'http') {
        const [head = '', body = ''] = run.stdout.split(/\r?\n\r?\n/, 2);
        const [status, ...lines] = head.split(/\r?\n/);
        const [wantHead = '', wantBody = ''] = step.shows.text.split(/\n\n/, 2);
        const [wantStatus, ...wantLines] = wantHead.split('\n');
        expect(status, `${what}\nstatus line`).to.equal(wantStatus);
        const got = new Map(
          lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1)]),
        );
        for (const line of wantLines) {
          const name = line.slice(0, line.indexOf(':'));
          const value = got.get(name.toLowerCase());
          expect(value, `${what}\nsends ${name}`).to.be.a('string');
          expect(headerValue(value ?? ''), `${what}\n${name}`).to.equal(
            headerValue(line.slice(line.indexOf(':') + 1)),
          );
        }
        expect(normalized(parseJson(body, `${what}\nbody`)), `${what}\nbody`).to.deep.equal(
          normalized(parseJson(wantBody, 'the README body')),
        );
        if (!real) real = /^\/jobs\/(\S+)$/.exec(got.get('location')?.trim() ?? '')?.[1] ?? '';
      } else if (step.shows?.lang === 'json') {
        expect(
          normalized(parseJson(run.stdout, what)),
          `${what}\nprinted:\n${run.stdout}`,
        ).to.deep.equal(normalized(parseJson(step.shows.text, 'the README output')));
      } else {
        // Shown without output: it must at least not be refused, and a job it prints is done.
        expect(run.stdout, what).not.to.contain('/problems/');
        for (const status of run.stdout.match(/"status":"\w+"/g) ?? []) {
          expect(status, what).to.equal('"status":"succeeded"');
        }
      }
    }
    expect(real, 'the first command created a job').to.match(UUID);
  });

  it('shows the same validation problem in docs/api.md as the server sends (above)', () => {
    const readme = blocks(walkthrough()).filter((b) => b.lang === 'json');
    const problem = readme.find((b) => b.text.includes('/problems/validation-error'));
    expect(problem, 'the walk-through shows a 422').to.not.equal(undefined);
    const api = readFileSync(path.join(ROOT, 'docs', 'api.md'), 'utf8');
    const shown = blocks(api).find((b) => b.text.includes('/problems/validation-error'));
    expect(shown, 'docs/api.md shows a 422').to.not.equal(undefined);
    expect(parseJson(shown?.text ?? '', 'docs/api.md')).to.deep.equal(
      parseJson(problem?.text ?? '', 'README'),
    );
  });
});
