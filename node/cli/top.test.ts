// `pcr top`: the frame as a pure function, and the live view driven through a pseudo-terminal
// (util-linux `script`): it draws, switches view on a key, quits on q and leaves the terminal as
// it found it (cursor shown, alternate screen left).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { type NodeProc, PCR, startNode, stop, until } from '../../test/procs.ts';
import { describeWithTools } from '../../test/tools.ts';
import { onKey, renderFrame, type Sample } from './top.ts';

const A = '12D3KooWAAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKKK';
const B = '12D3KooWQQQQbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKKK';

function sampleAt(atMs: number, commit: number): Sample {
  return {
    atMs,
    status: { id: A, leader: A, term: 3, commit },
    members: [
      { id: A, name: 'alpha' },
      { id: B, name: 'beta' },
    ],
    nodes: [
      {
        id: A,
        health: 'alive',
        cpus: 2,
        load1: 0.5,
        memTotal: 2 ** 32,
        memFree: 2 ** 31,
        uptimeS: 90,
      },
      {
        id: B,
        health: 'suspect',
        cpus: 4,
        load1: 1.5,
        memTotal: 2 ** 32,
        memFree: 2 ** 30,
        uptimeS: 5,
      },
    ],
    vms: [{ name: 'web', version: 3, node: B, desired: 'running', state: 'running' }],
    store: { hits: 10, bytesServed: 1000 },
  };
}

describe('renderFrame', () => {
  it('shows leader, term, commit rate, and the nodes with names and short IDs', () => {
    const f = renderFrame(sampleAt(2000, 30), sampleAt(1000, 10), { view: 'nodes', sort: 'name' });
    const text = f.join('\n');
    expect(text).toContain('leader alpha (AAAAbbbb)  term 3  commit 30  commits 20.0/s');
    expect(text).toContain('nodes 1/2 alive  vms 1 (1 running)');
    expect(text).toMatch(/^alpha\s+AAAAbbbb\s+alive\s+2\s+0\.50\s+2048\/4096 MiB\s+0\s+1m 30s$/m);
    expect(text).toMatch(/^beta\s+QQQQbbbb\s+suspect/m);
  });
  it('sorts by the chosen column, and fits the rows it is given', () => {
    const byLoad = renderFrame(sampleAt(0, 0), undefined, { view: 'nodes', sort: 'load' });
    expect(byLoad.findIndex((l) => l.startsWith('beta'))).toBeLessThan(
      byLoad.findIndex((l) => l.startsWith('alpha')),
    );
    expect(renderFrame(sampleAt(0, 0), undefined, { view: 'nodes', sort: 'name' }, 8)).toHaveLength(
      8,
    );
  });
  it('shows VMs with their node, and store counters with rates', () => {
    const vms = renderFrame(sampleAt(0, 0), undefined, { view: 'vms', sort: 'name' }).join('\n');
    expect(vms).toMatch(/^NAME\s+VERSION\s+NODE\s+DESIRED/m);
    expect(vms).toMatch(/^web\s+3\s+beta \(QQQQbbbb\)\s+running\s+running$/m);
    const later = { ...sampleAt(2000, 0), store: { hits: 30, bytesServed: 1000 } };
    const store = renderFrame(later, sampleAt(0, 0), { view: 'store', sort: 'counter' }).join('\n');
    expect(store).toMatch(/^hits\s+30\s+10\.0\/s$/m);
  });
  it('keys switch views, cycle sorts, and quit', () => {
    const s = { view: 'nodes' as const, sort: 'name' };
    expect(onKey(s, 'v')).toEqual({ view: 'vms', sort: 'name' });
    expect(onKey(s, 'o')).toEqual({ view: 'nodes', sort: 'load' });
    expect(onKey(s, '\t')).toEqual({ view: 'vms', sort: 'name' });
    expect(onKey(s, 'q')).toBe('quit');
    expect(onKey(s, '\u0003')).toBe('quit');
    expect(onKey(s, 'x')).toBe(s);
  });
});

describeWithTools(['script'], 'pcr top in a pseudo-terminal', () => {
  const running: NodeProc[] = [];
  let base = '';
  afterAll(async () => {
    for (const p of running) await stop(p).catch(() => {});
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  it('draws a frame, switches view on a key, and leaves the terminal clean on q', async () => {
    base = await mkdtemp(join(tmpdir(), 'pcr-top-'));
    const n = await startNode(base, 'n1', [
      '--name',
      'alpha',
      '--store',
      'local',
      '--cache',
      'off',
    ]);
    running.push(n);
    const top = execa(
      'script',
      ['-q', '-e', '-c', `stty rows 30 cols 120; ${PCR} top --data-dir ${n.dataDir}`, '/dev/null'],
      { reject: false, stdin: 'pipe' },
    );
    let screen = '';
    top.stdout?.on('data', (d: Buffer) => {
      screen += d.toString();
    });
    const frame = (): string => screen.slice(screen.lastIndexOf('\x1b[2J'));
    await until(
      () => /view: nodes/.test(frame()) && /leader alpha/.test(frame()),
      30_000,
      'a frame',
    );
    expect(screen.startsWith('\x1b[?1049h') || screen.includes('\x1b[?1049h')).toBe(true);
    top.stdin?.write('v');
    await until(() => /view: vms/.test(frame()), 10_000, 'the VM view');
    expect(frame()).toContain('no VMs');
    top.stdin?.write('q');
    const r = await top;
    expect(r.exitCode).toBe(0);
    // Cursor shown again and the alternate screen left, as the last thing written.
    expect(screen.trimEnd().endsWith('\x1b[?25h\x1b[?1049l')).toBe(true);
  });
});
