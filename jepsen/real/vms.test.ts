// The vms workload on real processes, as root: 3 nodes with real QEMU guests (the test VM's runner
// closure, built with the real Nix), clients running, stopping and removing VM groups while
// partitions cut the network; the observer reads the VMM processes of each node. The run must be
// valid: no instance ever ran on two nodes at once, and every VM desired running runs on one node
// after the final heal. The checker's teeth are in vm_checker.test.ts (a planted double run).

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../../test/tools.ts';
import { ourNamespaces } from './netns.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CLI = ['--import', 'tsx', join(ROOT, 'jepsen/real/cli.ts')];
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot && process.env.CI === 'true')
  throw new Error('CI=true: the vms Jepsen test needs root');
const base = mkdtempSync(join(tmpdir(), 'jepsen-vms-test-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

interface VmsSummary {
  verdict: string;
  vms: {
    valid: boolean;
    samples: number;
    doubleRuns: unknown[];
    lost: string[];
    notRunning: string[];
    strays: string[];
    recoveryMs: Record<string, number>;
  };
}

const tools = ['ip', 'iptables', 'nix', 'nix-store', 'qemu-system-x86_64', 'busybox'];
function suite(name: string, body: () => void): void {
  if (isRoot) describeWithTools(tools, name, body);
  else describe.skip(`${name} [skipped: needs root]`, body);
}

suite('Jepsen vms workload on real processes (root)', () => {
  it('under partitions, no VM instance runs on two nodes at once and every desired VM runs after the heal', async () => {
    const dir = join(base, 'vms');
    const r = await execa(
      'node',
      [
        ...CLI,
        ...['--nodes', '3', '--time', '35', '--nemesis', 'partition', '--workload', 'vms'],
        ...['--seed', '3', '--quiet-s', '3', '--fault-s', '7', '--results', dir],
      ],
      { cwd: ROOT, reject: false, stdin: 'ignore', timeout: 400_000, killSignal: 'SIGKILL' },
    );
    expect(r.stdout, r.stderr).toContain('verdict: valid');
    expect(r.exitCode).toBe(0);
    const res = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as VmsSummary;
    expect(res.vms).toMatchObject({ valid: true, doubleRuns: [], lost: [], notRunning: [] });
    // The observer sampled through the whole run, and VMs ran: the check was not vacuous.
    expect(res.vms.samples).toBeGreaterThan(100);
    const samples = readFileSync(join(dir, 'vm-samples.jsonl'), 'utf8').trim().split('\n');
    const seen = samples.map((l) => (JSON.parse(l) as { seen: unknown[] }).seen.length);
    expect(Math.max(...seen)).toBeGreaterThanOrEqual(2);
    // Two partitions ran, each longer than node-down-after, and the history has every command.
    const faults = readFileSync(join(dir, 'nemesis.jsonl'), 'utf8').trim().split('\n');
    expect(faults.length).toBeGreaterThanOrEqual(2);
    const fs = readFileSync(join(dir, 'history-vms.jsonl'), 'utf8');
    for (const f of ['"run"', '"stop"', '"rm"']) expect(fs).toContain(`"f":${f}`);
    const page = readFileSync(join(dir, 'index.html'), 'utf8');
    expect((page.match(/class="vmseg"/g) ?? []).length).toBeGreaterThan(3);
    expect(existsSync(join(dir, 'logs/n1.log'))).toBe(true);
    expect(await ourNamespaces()).toEqual([]);
  }, 450_000);
});
