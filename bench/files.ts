/**
 * File batches, both ways: rows per second for uploading 100,000 transactions as one CSV body
 * (`POST /normalize_merchant/batch`, streamed from disk) and for downloading their results as
 * one CSV and one NDJSON file (`GET /batches/{id}/results` with Accept), against the real server
 * (spawned as `npm start` runs it), with the server's RSS after each.
 *
 * On its own: `node --import tsx bench/files.ts` (a throwaway embedded Postgres unless
 * BENCH_DATABASE_URL is set; its jobs and batches are truncated). bench/main.ts calls
 * `benchFiles` on its own database.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { issueKey } from '../src/auth/keys.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { createKnex, migrateLatest } from '../src/db/knex.js';
import { createLogger } from '../src/log.js';
import { freePort } from '../src/net.js';
import { serviceCommand } from './service-build.js';

const ROWS = Number(process.env.BENCH_FILE_ROWS ?? 100_000);

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const say = (line: string) => console.log(`bench: ${line}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function rssMb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024);
}

/** The service on `databaseUrl`, its runner held up (jobs stay pending or running). */
async function startService(databaseUrl: string): Promise<{ base: string; child: ChildProcess }> {
  const port = await freePort();
  const { args, cwd } = await serviceCommand();
  const child = spawn(process.execPath, args, {
    cwd,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      LOG_LEVEL: 'warn',
      HEURISTIC_DELAY_MS: '600000',
      RESULT_CACHE_TTL_MS: '0',
      CLIENT_MAX_PENDING: '1000000',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  while (
    !(await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}`);
    await sleep(100);
  }
  return { base, child };
}

/** A CSV file of `rows` transactions, as a bank export would hold them. */
async function writeCsv(file: string, rows: number): Promise<number> {
  const lines = ['date,description,amount,reference'];
  for (let i = 0; i < rows; i++) {
    lines.push(
      `2026-04-${String(1 + (i % 28)).padStart(2, '0')},"NETFLIX.COM ${i}",${i % 100}.49,r${i}`,
    );
  }
  const text = lines.join('\n') + '\n';
  await fs.writeFile(file, text);
  return Buffer.byteLength(text);
}

/** Reads a response body to its end; answers its size and line count. */
async function drain(body: ReadableStream<Uint8Array>): Promise<{ bytes: number; lines: number }> {
  let bytes = 0;
  let lines = 0;
  for await (const chunk of Readable.fromWeb(body as never) as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    for (const byte of chunk) if (byte === 10) lines += 1;
  }
  return { bytes, lines };
}

/**
 * Uploads ROWS transactions as one CSV body and downloads their results as CSV and NDJSON;
 * answers rows per second each way. Leaves the database's jobs and batches empty.
 */
export async function benchFiles(databaseUrl: string): Promise<Record<string, number>> {
  const db = createKnex(databaseUrl, 2);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-files-'));
  const result: Record<string, number> = {};
  let child: ChildProcess | undefined;
  try {
    await migrateLatest(db);
    await db.raw('TRUNCATE jobs, batches');
    const auth = { authorization: `Bearer ${(await issueKey(db, 'bench-files')).key}` };
    const service = await startService(databaseUrl);
    child = service.child;
    const pid = child.pid ?? 0;
    const file = path.join(dir, 'transactions.csv');
    const bytes = await writeCsv(file, ROWS);
    result.file_rows = ROWS;
    result.file_upload_mb = round(bytes / 1024 / 1024);
    result.file_rss_before_mb = await rssMb(pid);

    say(`file upload: ${ROWS} rows as one CSV body (${result.file_upload_mb} MB)`);
    let t0 = performance.now();
    const res = await fetch(`${service.base}/normalize_merchant/batch`, {
      method: 'POST',
      headers: { 'content-type': 'text/csv', ...auth },
      body: Readable.toWeb(createReadStream(file)) as ReadableStream,
      duplex: 'half',
    });
    const batch = (await res.json()) as { id: string; size: number };
    if (res.status !== 202 || batch.size !== ROWS) {
      throw new Error(`upload: ${res.status} ${JSON.stringify(batch)}`);
    }
    result.file_upload_rows_per_s = Math.round(ROWS / ((performance.now() - t0) / 1000));
    result.file_rss_after_upload_mb = await rssMb(pid);

    for (const [format, accept] of [
      ['csv', 'text/csv'],
      ['ndjson', 'application/x-ndjson'],
    ] as const) {
      say(`results download: ${ROWS} items as ${format}`);
      t0 = performance.now();
      const got = await fetch(`${service.base}/batches/${batch.id}/results`, {
        headers: { accept, ...auth },
      });
      if (got.status !== 200 || !got.body) throw new Error(`download: ${got.status}`);
      const { lines } = await drain(got.body);
      const items = format === 'csv' ? lines - 1 : lines;
      if (items !== ROWS) throw new Error(`download ${format}: ${items} items, not ${ROWS}`);
      result[`file_download_${format}_rows_per_s`] = Math.round(
        ROWS / ((performance.now() - t0) / 1000),
      );
      result[`file_rss_after_${format}_download_mb`] = await rssMb(pid);
    }
    return result;
  } finally {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await db.raw('TRUNCATE jobs, batches').catch(() => {});
    await db.destroy();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function main() {
  let databaseUrl = process.env.BENCH_DATABASE_URL;
  let stop = async () => {};
  let dataDir: string | undefined;
  if (!databaseUrl) {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-bench-'));
    const pg = await startEmbeddedPostgres({ dataDir, port: 0, log: createLogger('warn') });
    databaseUrl = pg.url;
    stop = () => pg.stop();
  }
  try {
    const result = await benchFiles(databaseUrl);
    console.log('\n| metric | value |\n|---|---|');
    for (const [k, v] of Object.entries(result)) console.log(`| ${k} | ${v} |`);
    console.log(`\n${JSON.stringify(result)}`);
  } finally {
    await stop();
    if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
