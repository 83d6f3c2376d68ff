// The `pcr` dispatcher in process (help, version, usage errors and their exit code, `sim` pointing
// to `npm run sim`), and bin/pcr as a real executable: from another directory and through symlinks.

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { CliIo } from './context.ts';
import { main } from './pcr.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PCR = join(ROOT, 'bin/pcr');
const VERSION = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

function capture(): CliIo & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    stdout: () => out,
    stderr: () => err,
  };
}

describe('pcr (in process)', () => {
  it('prints the version of package.json', async () => {
    const io = capture();
    expect(await main(['--version'], io)).toBe(0);
    expect(io.stdout().trim()).toBe(VERSION);
  });

  it('lists its commands on --help', async () => {
    const io = capture();
    expect(await main(['--help'], io)).toBe(0);
    expect(io.stdout()).toMatch(/Usage: pcr/);
    for (const noun of ['node', 'status', 'kv', 'operator', 'maelstrom']) {
      expect(io.stdout()).toMatch(new RegExp(`\\n  ${noun} `));
    }
    expect(io.stdout()).not.toMatch(/\n {2}sim /);
  });

  it('refuses bad numbers for node start before starting anything (usage, exit 2)', async () => {
    for (const bad of [
      ['--max-voters', '0'],
      ['--snapshot-entries', 'many'],
      ['--keep-entries', '-3'],
    ]) {
      const io = capture();
      expect(
        await main(
          ['node', 'start', '--data-dir', join(tmpdir(), 'pcr-never-created'), ...bad],
          io,
        ),
      ).toBe(2);
      expect(io.stderr()).toMatch(new RegExp(`${bad[0]} <n>' argument`));
    }
  });

  it('refuses a bad VM spec before contacting anyone, naming the fields (exit 2)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pcr-spec-'));
    try {
      const cases: [string, RegExp][] = [
        ['{"version":1,"name":"x","memoryMiB":99999999,"colour":1}', /memoryMiB: .*above/],
        ['{"version":1,"name":"x","memoryMiB":512}', /runner|kernel/],
        ['{"version":1,', /is not JSON/],
      ];
      for (const [text, why] of cases) {
        const file = join(dir, 'spec.json');
        writeFileSync(file, text);
        const io = capture();
        const args = ['vm', 'run', file, '--on', 'n1', '--addr', '/ip4/127.0.0.1/tcp/1'];
        expect(await main(args, io)).toBe(2);
        expect(io.stderr()).toMatch(why);
      }
      const io = capture();
      expect(await main(['vm', 'run', join(dir, 'missing.json'), '--on', 'n1'], io)).toBe(2);
      expect(io.stderr()).toMatch(/cannot read the spec/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits with the code an error of a command carries, and prints its message', async () => {
    const io = capture();
    const dataDir = join(tmpdir(), 'pcr-never-created');
    const addr = process.env.PCR_ADDR;
    delete process.env.PCR_ADDR;
    try {
      const code = await main(['status', '--data-dir', dataDir], io);
      expect(code).toBe(4);
      expect(io.stderr()).toBe(
        `pcr: no running node found in ${dataDir}\nhint: start one (pcr node start), or point at a member with --addr or PCR_ADDR\n`,
      );
    } finally {
      if (addr !== undefined) process.env.PCR_ADDR = addr;
    }
  });

  it.each([
    [[], /Usage: pcr/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['--frobnicate'], /unknown option '--frobnicate'/],
    [['maelstrom', '--tick-ms', '0'], /--tick-ms.*expected an integer from 1/],
    [['maelstrom', '--election-ticks', 'ten'], /expected an integer/],
    [['maelstrom', 'extra'], /too many arguments/],
  ])('exits 2 with a message for wrong usage: %j', async (argv, message) => {
    const io = capture();
    expect(await main(argv, io)).toBe(2);
    expect(io.stderr()).toMatch(message);
  });

  it.each([
    [['sim', 'run', '--seed', '3', 'x']],
    [['sim', '--seed', '3', '--nodes=5']],
    [['sim', '--help']],
    [['sim', '-h']],
    [['sim', '--version']],
    [['sim', '--', '--x', 'y']],
    [['sim']],
    [['help', 'sim']],
  ])('points to npm run sim (the simulator is not a pcr command; exit 2): %j', async (argv) => {
    const io = capture();
    expect(await main(argv, io)).toBe(2);
    expect(io.stderr()).toBe(
      'pcr: the simulator is not a pcr command: run `npm run sim -- --help` in a checkout\n',
    );
    expect(io.stdout()).toBe('');
  });
});

describe('bin/pcr (a real process)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs from another directory through a symlink, with the exit code of the command', async () => {
    symlinkSync(PCR, join(dir, 'pcr'));
    const ok = await run(join(dir, 'pcr'), ['--version'], { cwd: dir });
    expect(ok.stdout.trim()).toBe(VERSION);
    const bad = await run(join(dir, 'pcr'), ['frobnicate'], { cwd: dir }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect('code' in bad && bad.code).toBe(2);
    expect((bad as { stderr: string }).stderr).toMatch(/unknown command/);
  });

  it('bin/pcr-maelstrom (through a symlink) answers init with init_ok on stdout', async () => {
    symlinkSync(join(ROOT, 'bin/pcr-maelstrom'), join(dir, 'node-bin'));
    const child = spawn(join(dir, 'node-bin'), [], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    const firstLine = new Promise<string>((resolve) => {
      createInterface({ input: child.stdout }).once('line', resolve);
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.stdin.write(
      `${JSON.stringify({ src: 'c0', dest: 'n1', body: { type: 'init', msg_id: 1, node_id: 'n1', node_ids: ['n1'] } })}\n`,
    );
    expect(JSON.parse(await firstLine)).toEqual({
      src: 'n1',
      dest: 'c0',
      body: { type: 'init_ok', in_reply_to: 1, msg_id: 1 },
    });
    child.stdin.end();
    expect(await exited).toBe(0);
  });
});
