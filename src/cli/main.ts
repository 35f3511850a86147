#!/usr/bin/env node
/**
 * merchant-normalizer: the command line for batch scripts.
 *
 *   merchant-normalizer submit FILE [--out FILE] ...   send a CSV/JSONL file, write the results
 *   merchant-normalizer status ID [--wait N]           show a job or a batch
 *   merchant-normalizer keys create|list|revoke        API keys (talks to the database)
 *   merchant-normalizer webhooks create|list|…         webhook endpoints and their deliveries
 *   merchant-normalizer events [--after ID]            your events as JSON lines (SSE)
 *
 * The API key comes from --api-key, MERCHANT_API_KEY, or the key file (--api-key-file,
 * MERCHANT_API_KEY_FILE, default DATA_DIR/api-key: what the embedded start writes).
 * Exit codes: 0 all succeeded; 1 some jobs failed or were canceled, or rows were invalid
 * (--skip-invalid); 2 bad usage or input; 3 the service could not be reached or refused;
 * 4 a job or batch expired (410 Gone: deleted after the retention period).
 */
import fs from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { CLIENT_NAME } from '../db/sql/clients.js';
import { localKeyFile } from '../auth/local-key.js';
import { ApiError, MerchantClient, NetworkError } from '../client/client.js';
import { VERSION } from '../version.js';
import { AMOUNT_FORMATS, type AmountFormat } from './amount.js';
import { InputError } from './input.js';
import { createKeyCommand, listKeysCommand, revokeKeyCommand } from './keys.js';
import { EXIT, submitFile } from './submit.js';
import { addWebhookCommands } from './webhooks.js';

function integer(min: number, max: number) {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

/** `--url`: an http(s) base URL, or a usage error naming what was given. */
function baseUrl(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new InvalidArgumentError(
      `must be an http:// or https:// URL such as http://127.0.0.1:9898 (got "${value}")`,
    );
  }
  return value;
}

function program(): Command {
  const cli = new Command()
    .name('merchant-normalizer')
    .description('Submit card transactions to the merchant-normalizer service and get results.')
    .version(VERSION)
    .addOption(
      new Option('--url <url>', 'service base URL')
        .env('MERCHANT_API_URL')
        .default('http://127.0.0.1:9898')
        .argParser(baseUrl),
    )
    .addOption(new Option('--api-key <key>', 'API key').env('MERCHANT_API_KEY'))
    .addOption(
      new Option('--api-key-file <file>', 'file holding the API key (used without --api-key)')
        .env('MERCHANT_API_KEY_FILE')
        .default(localKeyFile(process.env.DATA_DIR ?? '.data'), 'DATA_DIR/api-key'),
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  /** The key from --api-key / MERCHANT_API_KEY, else from the key file if there is one. */
  const apiKey = (): string | undefined => {
    const o = cli.opts<{ apiKey?: string; apiKeyFile: string }>();
    if (o.apiKey) return o.apiKey;
    try {
      return fs.readFileSync(o.apiKeyFile, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  };

  cli
    .command('submit')
    .description(
      'Submit every transaction of a CSV or JSONL file in batches, wait for all of them, and ' +
        'write one result per input row, in input order. Rerun the same command to resume an ' +
        'interrupted run: nothing is submitted twice.',
    )
    .argument(
      '<file>',
      'CSV with a header row naming date, description, amount (optional: currency, mcc, ' +
        'reference; any case; other columns are copied to the output), or JSONL',
    )
    .option('-o, --out <file>', 'where to write results (default: FILE.results.csv|jsonl)')
    .addOption(new Option('-f, --format <format>', 'output format').choices(['csv', 'jsonl']))
    .option('--batch-size <n>', 'transactions per batch (1..1000)', integer(1, 1000), 1000)
    .option('--wait <seconds>', 'long-poll time per status request (1..60)', integer(1, 60), 20)
    .option('--fresh', 'ignore the state of an earlier interrupted run and start over', false)
    .option(
      '--retries <n>',
      'retries per request on network errors, 429 and 503 (with Retry-After or backoff)',
      integer(0, 100),
      8,
    )
    .option('--skip-invalid', 'submit the valid rows; list invalid ones in the output', false)
    .addOption(
      new Option('--amount-format <layout>', 'how the file writes amounts, by example')
        .choices(AMOUNT_FORMATS)
        .default('1234.56'),
    )
    .option(
      '--drop-extra-columns',
      'leave columns (JSONL: fields) that are not transaction fields out of the output',
      false,
    )
    .addOption(
      new Option('--progress <mode>', 'progress on stderr: a bar on a terminal, else lines')
        .choices(['auto', 'bar', 'lines', 'none'])
        .default('auto'),
    )
    .action(async (file: string, o: Record<string, unknown>) => {
      const mode = o.progress === 'auto' ? (process.stderr.isTTY ? 'bar' : 'lines') : o.progress;
      process.exitCode = await submitFile({
        file,
        url: String(cli.opts().url),
        apiKey: apiKey(),
        out: o.out as string | undefined,
        format: o.format as 'csv' | 'jsonl' | undefined,
        batchSize: o.batchSize as number,
        wait: o.wait as number,
        retries: o.retries as number,
        fresh: o.fresh === true,
        skipInvalid: o.skipInvalid === true,
        amountFormat: o.amountFormat as AmountFormat,
        dropExtraColumns: o.dropExtraColumns === true,
        progress: mode as 'bar' | 'lines' | 'none',
        stderr: process.stderr,
      });
    });

  cli
    .command('status')
    .description('Show a job or a batch as JSON.')
    .argument('<id>', 'a job id or a batch id')
    .option('--wait <seconds>', 'long-poll until it is finished (0..60)', integer(0, 60), 0)
    .action(async (id: string, o: { wait: number }) => {
      const client = new MerchantClient({
        baseUrl: String(cli.opts().url),
        apiKey: apiKey(),
        maxRetries: 3,
      });
      const job = await client.getJob(id, { wait: o.wait });
      const found = job.value ?? (await client.getBatch(id, { wait: o.wait })).value;
      if (!found) {
        process.stderr.write(`error: no job or batch with id "${id}"\n`);
        process.exitCode = EXIT.usage;
        return;
      }
      process.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
    });

  addWebhookCommands(cli, {
    client: () =>
      new MerchantClient({ baseUrl: String(cli.opts().url), apiKey: apiKey(), maxRetries: 3 }),
    url: () => String(cli.opts().url),
    apiKey,
  });

  const keys = cli
    .command('keys')
    .description(
      'Create, list and revoke API keys. Works on the database directly: DATABASE_URL, or the ' +
        'embedded one under DATA_DIR (default .data).',
    )
    .addOption(new Option('--database-url <url>', 'Postgres to use').env('DATABASE_URL'))
    .addOption(
      new Option('--data-dir <dir>', 'embedded Postgres data directory')
        .env('DATA_DIR')
        .default('.data'),
    );
  const target = () => {
    const o = keys.opts<{ databaseUrl?: string; dataDir: string }>();
    return { databaseUrl: o.databaseUrl, dataDir: o.dataDir };
  };
  keys
    .command('create')
    .description('Create a key for a client (creating the client on first use); prints the key.')
    .requiredOption('--client <name>', 'client name: letters, digits, ".", "_", "-"')
    .action(async (o: { client: string }) => {
      if (!CLIENT_NAME.test(o.client)) {
        throw new InputError(
          `--client must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`,
        );
      }
      await adminCall(() => createKeyCommand(target(), o.client, process));
    });
  keys
    .command('list')
    .description(
      'List keys: id, client, created, active or revoked. Keys themselves are never shown.',
    )
    .option('--client <name>', 'only this client')
    .action(async (o: { client?: string }) => {
      await adminCall(() => listKeysCommand(target(), o.client, process));
    });
  keys
    .command('revoke')
    .description('Revoke a key by its id: requests with it get 401 from then on.')
    .argument('<key-id>', 'the id shown by "keys list" (12 hex characters)')
    .action(async (keyId: string) => {
      const revoked = await adminCall(() => revokeKeyCommand(target(), keyId, process));
      if (revoked === false) process.exitCode = EXIT.someFailed;
    });

  return cli;
}

/** A database call of the keys commands: a failure is reported, exit code 3. */
async function adminCall<T>(work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await work();
  } catch (err) {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = EXIT.unavailable;
    return undefined;
  }
}

export async function main(argv: string[]): Promise<number> {
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\ninterrupted: rerun the same command to resume where it stopped\n');
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  try {
    await program().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof InputError) {
      process.stderr.write(`error: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof ApiError) {
      const who = err.request ? `${err.request.method} ${err.request.url}` : 'the service';
      process.stderr.write(`\nerror: ${who} answered ${err.message}\n`);
      if (err.status === 401) {
        process.stderr.write(
          'hint: pass --api-key, set MERCHANT_API_KEY, or point --api-key-file at a key file\n',
        );
      }
      if (err.status === 410) {
        process.stderr.write(
          'hint: results are kept for the retention period only; "submit --fresh" sends a file ' +
            'again\n',
        );
        return EXIT.gone;
      }
      return EXIT.unavailable;
    }
    if (err instanceof NetworkError) {
      process.stderr.write(
        `\nerror: cannot reach the service at ${err.request.url} (${err.reason}); check --url ` +
          'or MERCHANT_API_URL, then rerun the same command to resume\n',
      );
      return EXIT.unavailable;
    }
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message;
    process.stderr.write(
      `\nerror: ${why ? `cannot reach the service (${why})` : String(err)}; ` +
        'rerun the same command to resume\n',
    );
    return EXIT.unavailable;
  }
}

process.exitCode = await main(process.argv);
