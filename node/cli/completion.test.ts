// `pcr completion bash|zsh`: generated from the commands, and working in a real bash.

import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { CliIo } from './context.ts';
import { main } from './pcr.ts';

const run = promisify(execFile);

async function script(shell: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = { out: (t) => void (out += t), err: (t) => void (err += t) };
  const code = await main(['completion', shell], io);
  return { code, out, err };
}

/** What bash completes for the words typed (the last one being completed). */
async function complete(file: string, words: string[]): Promise<string[]> {
  const arr = words.map((w) => `'${w}'`).join(' ');
  const { stdout } = await run('bash', [
    '-c',
    `source ${file}; COMP_WORDS=(${arr}); COMP_CWORD=${words.length - 1}; _pcr; printf '%s\\n' "\${COMPREPLY[@]}"`,
  ]);
  return stdout.split('\n').filter((x) => x !== '');
}

describe('pcr completion', () => {
  it('completes nouns, verbs and the flags of the command typed so far, in bash', async () => {
    const bash = await script('bash');
    expect(bash.code).toBe(0);
    const dir = await mkdtemp(join(tmpdir(), 'pcr-compl-'));
    try {
      const file = join(dir, 'pcr.bash');
      await writeFile(file, bash.out);
      expect(await complete(file, ['pcr', 'st'])).toEqual(['status', 'store']);
      expect(await complete(file, ['pcr', 'kv', 'g'])).toEqual(['get']);
      expect(await complete(file, ['pcr', 'kv', 'get', '--st'])).toEqual(['--stale']);
      expect(await complete(file, ['pcr', 'node', 'start', '--adv'])).toEqual(['--advertise']);
      expect(await complete(file, ['pcr', 'operator', 'raft', 'tr'])).toEqual(['transfer-leader']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prints a zsh script, and refuses another shell (usage, exit 2)', async () => {
    const zsh = await script('zsh');
    expect(zsh.code).toBe(0);
    expect(zsh.out).toMatch(/^#compdef pcr/);
    const fish = await script('fish');
    expect(fish.code).toBe(2);
    expect(fish.err).toMatch(/bash or zsh/);
  });
});
