// The harness against real processes, as root: a short run under partitions and kill -9 is valid
// and leaves nothing behind; a planted stale read is caught by both checkers; Ctrl-C and a killed
// harness leave nothing that the next run (or --clean) does not remove; the report renders its
// plots in a real browser (headless Chromium).

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../../test/tools.ts';
import { until } from '../../test/until.ts';
import { LOCK_DIR, ourLinks, ourNamespaces, PREFIX, WORK_DIR_PREFIX } from './netns.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CLI = ['--import', 'tsx', join(ROOT, 'jepsen/real/cli.ts')];
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot && process.env.CI === 'true')
  throw new Error('CI=true: the Jepsen harness test needs root');
const base = mkdtempSync(join(tmpdir(), 'jepsen-test-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

function jepsen(args: string[], timeoutMs = 300_000) {
  return execa('node', [...CLI, ...args], {
    cwd: ROOT,
    reject: false,
    stdin: 'ignore',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
}

async function leftovers(): Promise<string[]> {
  const dirs = readdirSync(tmpdir())
    .map((d) => join(tmpdir(), d))
    .filter((d) => d.startsWith(WORK_DIR_PREFIX));
  const procs = (await execa('ps', ['-eo', 'args'])).stdout
    .split('\n')
    .filter((l) => l.includes(`--data-dir ${WORK_DIR_PREFIX}`));
  return [...(await ourNamespaces()), ...(await ourLinks()), ...dirs, ...procs];
}

function results(dir: string): { verdict: string; set: { lost: number; stale: number } } {
  return JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
}

function suite(tools: string[], name: string, body: () => void): void {
  if (isRoot) describeWithTools(tools, name, body);
  else describe.skip(`${name} [skipped: needs root]`, body);
}

suite(['ip', 'iptables', 'chromium', 'faketime'], 'Jepsen harness on real processes (root)', () => {
  it('a short run under partitions and kill -9 is valid, leaves nothing behind, and its report renders', async () => {
    const dir = join(base, 'valid');
    const r = await jepsen([
      ...['--nodes', '3', '--time', '20', '--nemesis', 'partition,kill', '--workload', 'kv,set'],
      ...['--seed', '5', '--quiet-s', '2', '--fault-s', '4', '--results', dir],
    ]);
    expect(r.stdout).toContain('verdict: valid');
    expect(r.exitCode).toBe(0);
    const res = results(dir);
    expect(res.verdict).toBe('valid');
    expect(res.set.lost).toBe(0);
    expect(await leftovers()).toEqual([]);
    expect(existsSync(join(LOCK_DIR, 'lock'))).toBe(false);
    for (const f of ['history-kv.jsonl', 'history-set.jsonl', 'nemesis.jsonl', 'logs/n1.log']) {
      expect(existsSync(join(dir, f))).toBe(true);
    }
    // A real browser runs the page's script: the plots exist in the DOM only if it drew them.
    const dom = await execa(
      'chromium',
      [
        ...['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
        ...['--disable-component-update', '--disable-sync', '--no-first-run'],
        `--user-data-dir=${join(base, 'chromium')}`,
        '--dump-dom',
        `file://${join(dir, 'index.html')}`,
      ],
      { reject: false, timeout: 60_000 },
    );
    const html = String(dom.stdout);
    const rendered = /<svg[^>]*id="latency"[^>]*data-rendered="(\d+)"/.exec(html);
    expect(Number(rendered?.[1])).toBeGreaterThan(100);
    expect((html.match(/<circle class="pt o0"/g) ?? []).length).toBeGreaterThan(100);
    expect((html.match(/<rect class="band"/g) ?? []).length).toBeGreaterThanOrEqual(3);
    expect(html).toMatch(/<svg[^>]*id="throughput"[^>]*data-rendered="3"/);
    expect(html).toMatch(/<svg[^>]*id="availability"[^>]*data-rendered="1"/);
  }, 400_000);

  it('pause, packet loss and clock skew (libfaketime) on real processes: valid, every fault logged', async () => {
    const dir = join(base, 'others');
    const r = await jepsen([
      ...['--nodes', '3', '--time', '30', '--nemesis', 'pause,loss,skew', '--workload', 'kv,set'],
      ...['--seed', '8', '--quiet-s', '1', '--fault-s', '3', '--results', dir],
    ]);
    expect(r.stdout).toContain('verdict: valid');
    expect(r.exitCode).toBe(0);
    const faults = readFileSync(join(dir, 'nemesis.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { nemesis: string; start: number; end: number });
    expect(faults.map((f) => f.nemesis)).toEqual(expect.arrayContaining(['pause', 'loss', 'skew']));
    for (const f of faults) expect(f.end).toBeGreaterThan(f.start);
    expect(await leftovers()).toEqual([]);
  }, 400_000);

  it('a planted stale read (reads from local state) is caught by the kv and set checkers', async () => {
    const dir = join(base, 'planted');
    const r = await jepsen([
      ...['--nodes', '3', '--time', '20', '--nemesis', 'partition', '--workload', 'kv,set'],
      ...['--seed', '6', '--quiet-s', '2', '--fault-s', '5', '--planted', 'stale-reads'],
      ...['--results', dir],
    ]);
    expect(r.stdout).toContain('verdict: invalid');
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/kv: violation/);
    expect(results(dir).set.stale).toBeGreaterThan(0);
    const page = readFileSync(join(dir, 'index.html'), 'utf8');
    expect(page).toContain('id="failing-window"');
    expect(await leftovers()).toEqual([]);
  }, 400_000);

  it('refuses clearly without ip and iptables', async () => {
    const r = await execa(process.execPath, [...CLI, '--time', '10'], {
      cwd: ROOT,
      reject: false,
      stdin: 'ignore',
      env: { PATH: join(base, 'no-tools') },
      extendEnv: false,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('needs ip and iptables on PATH');
    expect(await ourNamespaces()).toEqual([]);
  }, 60_000);

  it('Ctrl-C mid-run stops, heals and removes everything', async () => {
    const child = jepsen(['--nodes', '3', '--time', '120', '--results', join(base, 'sigint')]);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await until(() => out.includes('cluster formed'), 200_000, 'the cluster to form');
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode).toBe(2);
    expect(await leftovers()).toEqual([]);
  }, 300_000);

  it('after a harness killed with -9, --clean (and any next run) starts from nothing', async () => {
    const child = jepsen(['--nodes', '3', '--time', '120', '--results', join(base, 'crash')]);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await until(() => out.includes('cluster formed'), 200_000, 'the cluster to form');
    child.kill('SIGKILL');
    await child;
    expect((await ourNamespaces()).filter((n) => n.startsWith(PREFIX))).toHaveLength(3);
    const clean = await jepsen(['--clean']);
    expect(clean.exitCode).toBe(0);
    expect(await leftovers()).toEqual([]);
  }, 300_000);
});
