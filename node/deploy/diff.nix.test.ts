// The closure diff held to Nix's own: two closures built here with the real Nix (no nixpkgs:
// test/deploy/closures.nix), their path infos from `nix path-info --json -r`, our diff of them,
// and `nix store diff-closures` on the same pair: every package line must be the same (Nix's
// colours aside), in both directions, and an unchanged pair has none.
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { diffClosures, formatClosureDiff } from './diff.ts';
import { localClosure, nixRunner } from './nix_cli.ts';

const closures = fileURLToPath(new URL('../../test/deploy/closures.nix', import.meta.url));
const nix = nixRunner(nixEnv());

async function build(side: string): Promise<string> {
  const r = await execa('nix-build', ['--no-out-link', closures, '--argstr', 'side', side], {
    env: nixEnv(),
  });
  return r.stdout.trim();
}

async function nixDiff(before: string, after: string): Promise<string[]> {
  const r = await execa('nix', ['store', 'diff-closures', before, after], { env: nixEnv() });
  // Nix colours the size deltas (ESC [ ... m), even into a pipe.
  return r.stdout
    .replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '')
    .split('\n')
    .filter((l) => l !== '');
}

async function ourDiff(before: string, after: string) {
  return diffClosures(await localClosure(nix, [before]), await localClosure(nix, [after]));
}

describeWithTools(['nix', 'nix-build'], 'the closure diff against nix store diff-closures', () => {
  let a = '';
  let b = '';
  beforeAll(async () => {
    a = await build('a');
    b = await build('b');
  }, 120_000);

  it('agrees on every package line, both ways', async () => {
    const forward = await nixDiff(a, b);
    // The pair covers each kind of line (a check on the fixture, so the comparison means something).
    expect(forward).toEqual(
      expect.arrayContaining([
        'data: ε → 2',
        'fresh: ∅ → 0.1',
        'gone: 3.0 → ∅',
        'libbar: +8.2 KiB',
        'libfoo: 2.0 → 2.1, +19.5 KiB',
        'libm: 1.0 → ∅',
        'shrink: -19.5 KiB',
        'tool: 1.0 → 1.1',
      ]),
    );
    expect(formatClosureDiff(await ourDiff(a, b))).toEqual(forward);
    expect(formatClosureDiff(await ourDiff(b, a))).toEqual(await nixDiff(b, a));
  });

  it('has no line for a closure against itself', async () => {
    expect(await nixDiff(a, a)).toEqual([]);
    const d = await ourDiff(a, a);
    expect(d.changes).toEqual([]);
    expect(d.differs).toBe(false);
  });
});
