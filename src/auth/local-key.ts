/**
 * The zero-setup path: with the embedded database, the first start creates a client named
 * "local" and writes a key for it to `<DATA_DIR>/api-key` (mode 0600), where the CLI finds it.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Knex } from 'knex';
import type { Logger } from '../log.js';
import { activeKey, issueKey } from './keys.js';

export const LOCAL_CLIENT = 'local';
export const KEY_FILE_NAME = 'api-key';

/** Path of the local key file under a data directory. */
export function localKeyFile(dataDir: string): string {
  return path.join(path.resolve(dataDir), KEY_FILE_NAME);
}

/**
 * Makes sure the local key file holds a working key: creates it on first start, and replaces a
 * key this database does not accept (revoked, or the database was reset). Returns its path.
 */
export async function ensureLocalKey(db: Knex, dataDir: string, log: Logger): Promise<string> {
  const file = localKeyFile(dataDir);
  const existing = await fsp.readFile(file, 'utf8').then(
    (text) => text.trim(),
    () => undefined,
  );
  if (existing !== undefined) {
    if (await activeKey(db, existing)) {
      log.info({ keyFile: file }, 'the API key of the local client is in the key file');
      return file;
    }
    log.warn(
      { keyFile: file },
      'the key file holds a key this database does not accept (revoked, or the database was ' +
        'reset); writing a new one',
    );
    await fsp.rm(file, { force: true });
  }
  const issued = await issueKey(db, LOCAL_CLIENT);
  await fsp.writeFile(file, `${issued.key}\n`, { mode: 0o600, flag: 'wx' });
  log.info(
    {
      keyFile: file,
      client: issued.client.name,
      keyId: issued.keyId,
      usage: `curl -H "Authorization: Bearer $(cat ${file})" …; the CLI reads the file by itself`,
    },
    'created an API key for the local client',
  );
  return file;
}
