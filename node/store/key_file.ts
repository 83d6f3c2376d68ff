// This node's store signing key on disk: `<dataDir>/store.key`, in Nix's secret key format. The
// formats and the signing itself are keys.ts (pure); this is the one place that reads the file.

import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatSecretKey, generateSecretKey, parseSecretKey, type SecretKey } from './keys.ts';

export const STORE_KEY_FILE = 'store.key';

/** `<dataDir>/store.key`, created on first use as `pcr-<last 8 of the peer id>-1`, mode 0600. */
export async function loadOrCreateStoreKey(dataDir: string, peerId: string): Promise<SecretKey> {
  const path = join(dataDir, STORE_KEY_FILE);
  try {
    return parseSecretKey(await readFile(path, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const key = generateSecretKey(`pcr-${peerId.slice(-8)}-1`);
  await writeFile(path, formatSecretKey(key), { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600);
  return key;
}
