// The product's version, read once from the checkout's package.json. Found by walking up from this
// module, so that it holds both when run from source (node/version.ts) and compiled
// (dist/node/version.js).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Directories walked up at most looking for package.json (source: 1, dist/: 2). */
const PACKAGE_SEARCH_DEPTH_MAX = 4;

function findVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < PACKAGE_SEARCH_DEPTH_MAX; i++) {
    dir = dirname(dir);
    const path = join(dir, 'package.json');
    if (!existsSync(path)) continue;
    const pkg = JSON.parse(readFileSync(path, 'utf8')) as { name?: unknown; version?: unknown };
    if (pkg.name === 'procurator' && typeof pkg.version === 'string') return pkg.version;
  }
  return 'unknown';
}

export const PCR_VERSION: string = findVersion();
