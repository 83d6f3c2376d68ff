// node/sched is a pure core: its modules import only each other and the pure PRNG, so no I/O can
// reach placement, even transitively. A new import elsewhere fails here first.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ALLOWED = /^(\.\/[a-z_]+\.ts|\.\.\/\.\.\/consensus\/rand\.ts)$/;

describe('node/sched imports', () => {
  it('only its own modules and consensus/rand.ts (type-only imports aside)', () => {
    const dir = import.meta.dirname;
    const product = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    expect(product.length).toBeGreaterThan(5);
    for (const f of product) {
      const src = readFileSync(join(dir, f), 'utf8');
      for (const m of src.matchAll(/^import (type )?[^;]*? from '([^']+)';/gms)) {
        if (m[1] === 'type ') continue;
        expect(`${f}: ${m[2]}`).toMatch(new RegExp(`: ${ALLOWED.source.slice(1)}`));
      }
    }
  });
});
