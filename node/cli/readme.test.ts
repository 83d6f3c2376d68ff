// The README's first commands, run as written (in the checkout, through sh): `npm start`'s
// command starts a node, `bin/pcr status` and the kv line answer, the README's join command (its
// placeholders filled in) and the join line the node prints each add a member.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../../test/until.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The shell lines of the README's second code block (continuations joined, comments dropped). */
async function readmeLines(): Promise<string[]> {
  const text = await readFile(join(ROOT, 'README.md'), 'utf8');
  const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks[1]!
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '');
}

describe('README', () => {
  const base = mkdtemp(join(tmpdir(), 'pcr-readme-'));
  const children: ResultPromise[] = [];
  afterAll(async () => {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children);
    await rm(await base, { recursive: true, force: true });
  });

  it('its first commands work as written on a fresh data dir', { timeout: 240_000 }, async () => {
    const dir = await base;
    const env = { PCR_DATA_DIR: join(dir, 'n1'), PCR_ACCEL: 'tcg', PCR_LOG_LEVEL: 'warn' };
    const sh = (line: string, extra: Record<string, string> = {}) =>
      execa('sh', ['-c', line], { cwd: ROOT, env: { ...env, ...extra }, reject: false });
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: { start: string };
    };
    // `exec`: the node replaces the shell, so that SIGTERM reaches it.
    const first = sh(`exec ${pkg.scripts.start}`);
    children.push(first);
    let banner = '';
    first.stderr?.on('data', (d: Buffer) => {
      banner += d.toString();
    });
    const joinLine = await until(
      () => /^join it: (.*)$/m.exec(banner)?.[1],
      60_000,
      'the join line',
    );

    const lines = await readmeLines();
    const status = lines.find((l) => l.startsWith('bin/pcr status'))!;
    const kv = lines.find((l) => l.startsWith('bin/pcr kv put greeting'))!;
    const second = lines.find((l) => l.startsWith('bin/pcr node start'))!;
    const st = await until(
      async () => {
        const r = await sh(status);
        return r.exitCode === 0 && /^state\s+leader$/m.test(String(r.stdout)) ? r : undefined;
      },
      30_000,
      'bin/pcr status to answer',
    );
    // The leader by name and short ID (by short ID alone until its name is committed).
    expect(String(st.stdout)).toMatch(/^leader\s+(\S+ \(\w{8}\)|\w{8})$/m);
    const got = await sh(kv);
    expect(got.exitCode, String(got.stderr)).toBe(0);
    expect(String(got.stdout).trim().split('\n').at(-1)).toBe('hello');

    // The README's join command, placeholders filled in; and the join line the node printed.
    const seed = /--seed (\S+)/.exec(joinLine)![1]!;
    const readmeJoin = second
      .replace('<address printed by the first node>', seed)
      .replace('/tmp/n2', join(dir, 'n2'))
      .replace('~/.local/share/pcr', join(dir, 'n1'));
    children.push(sh(`exec ${readmeJoin}`, { PCR_DATA_DIR: join(dir, 'n2') }));
    children.push(sh(`exec ${joinLine.replace('<another dir>', join(dir, 'n3'))}`));
    const joined = await until(
      async () => {
        const r = await sh('bin/pcr members --json');
        const n = r.exitCode === 0 ? (JSON.parse(String(r.stdout)) as unknown[]).length : 0;
        return n === 3 || children.some((c) => c.exitCode !== null) ? n : undefined;
      },
      180_000,
      'three members',
    );
    expect(
      joined,
      (await Promise.all(children.filter((c) => c.exitCode !== null)))
        .map((r) => String(r.stderr))
        .join('\n'),
    ).toBe(3);
  });
});
