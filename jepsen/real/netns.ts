// The harness's network: one namespace per node, joined by veth pairs to a bridge in the root
// namespace on a private subnet that only the harness uses (10.77.0.0/24), and the iptables chains
// inside each node's namespace that the nemeses fill. Everything is named with one prefix so that
// a run after a crashed harness finds and removes what the crashed one left. No rule is ever added
// to the root namespace: the partitions and the loss live inside the nodes' namespaces and vanish
// with them.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { which } from '../../node/which.ts';

/** Every namespace, link and temp dir of the harness starts with this. */
export const PREFIX = 'pcrj';
export const BRIDGE = `${PREFIX}-br0`;
/** The /24 of the bridge; the bridge is .1, node i (1-based) is .(10 + i). */
export const SUBNET = '10.77.0';
export const BRIDGE_ADDR = `${SUBNET}.1`;
/** Nodes at most: addresses .11 to .(10 + NODES_MAX) stay inside the /24. */
export const NODES_MAX = 9;
/** The TCP port every node listens on, inside its own namespace. */
export const NODE_PORT = 7000;
/** Our chains inside each node namespace, jumped to from INPUT. */
export const CHAIN_PARTITION = 'PCRJ-PART';
export const CHAIN_LOSS = 'PCRJ-LOSS';
/** One harness at a time on a machine: its pid is here while it runs. */
export const LOCK_DIR = '/run/pcr-jepsen';
const LOCK_FILE = join(LOCK_DIR, 'lock');
/** Data dirs of a run (removed at the end; a crashed run's are removed by the next). */
export const WORK_DIR_PREFIX = join(tmpdir(), `${PREFIX}-work-`);

export class HarnessError extends Error {}

export const nsOf = (node: string): string => `${PREFIX}-${node}`;
export const addrOf = (index: number): string => `${SUBNET}.${10 + index + 1}`;

export async function sh(cmd: string, args: readonly string[]): Promise<string> {
  const r = await execa(cmd, args, { reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) {
    throw new HarnessError(`${cmd} ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}`);
  }
  return String(r.stdout);
}

/** iptables inside a node's namespace; -w waits for the xtables lock instead of failing. */
export function iptablesIn(node: string, args: readonly string[]): Promise<string> {
  return sh('ip', ['netns', 'exec', nsOf(node), 'iptables', '-w', ...args]);
}

/** Refuses clearly without root or without the tools the harness drives. */
export function preflight(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new HarnessError(
      'the Jepsen harness needs root: it creates network namespaces, veth pairs, a bridge and ' +
        'iptables rules (run it as root, e.g. with sudo)',
    );
  }
  const missing = ['ip', 'iptables'].filter((t) => which(t) === undefined);
  if (missing.length > 0) {
    throw new HarnessError(
      `the Jepsen harness needs ${missing.join(' and ')} on PATH ` +
        '(apt-get install iproute2 iptables)',
    );
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Takes the machine-wide lock; a lock left by a dead harness is taken over (after cleanup). */
export function takeLock(): void {
  mkdirSync(LOCK_DIR, { recursive: true });
  if (existsSync(LOCK_FILE)) {
    const pid = Number(readFileSync(LOCK_FILE, 'utf8'));
    if (Number.isSafeInteger(pid) && pid !== process.pid && pidAlive(pid)) {
      throw new HarnessError(
        `another Jepsen harness (pid ${pid}) is running on this machine; wait for it or stop it`,
      );
    }
  }
  writeFileSync(LOCK_FILE, String(process.pid));
}

export function releaseLock(): void {
  try {
    if (Number(readFileSync(LOCK_FILE, 'utf8')) === process.pid) rmSync(LOCK_FILE);
  } catch {
    // No lock: nothing to release.
  }
}

/** The harness's namespaces that exist now. */
export async function ourNamespaces(): Promise<string[]> {
  const out = await sh('ip', ['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`${PREFIX}-`));
}

/** The harness's links in the root namespace (the bridge and the host ends of veth pairs). */
export async function ourLinks(): Promise<string[]> {
  const out = await sh('ip', ['-br', 'link']);
  return out
    .split('\n')
    .map((l) => l.split(/\s+/)[0]!.split('@')[0]!)
    .filter((n) => n.startsWith(`${PREFIX}-`));
}

/** Kills every process in the namespace (kill -9; SIGCONT first is not needed for SIGKILL). */
async function killNamespacePids(ns: string): Promise<void> {
  const out = await sh('ip', ['netns', 'pids', ns]).catch(() => '');
  for (const pid of out.split('\n').filter((l) => l.trim() !== '')) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

/**
 * Removes everything the harness creates: processes in its namespaces, the namespaces (with their
 * veth ends and iptables rules), the bridge, work dirs. Safe to run at any time when no harness
 * holds the lock; idempotent.
 */
export async function removeAll(workDir?: string): Promise<void> {
  for (const ns of await ourNamespaces()) {
    await killNamespacePids(ns);
    await sh('ip', ['netns', 'del', ns]);
  }
  for (const link of await ourLinks()) {
    await sh('ip', ['link', 'del', link]).catch(() => undefined);
  }
  const dirs =
    workDir !== undefined
      ? [workDir]
      : readdirSync(tmpdir())
          .map((d) => join(tmpdir(), d))
          .filter((d) => d.startsWith(WORK_DIR_PREFIX));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

/** Fails if anything else on the machine already uses the harness's subnet. */
async function checkSubnetFree(): Promise<void> {
  const out = await sh('ip', ['-4', '-o', 'addr']);
  const clash = out.split('\n').find((l) => l.includes(` ${SUBNET}.`));
  if (clash !== undefined) {
    throw new HarnessError(
      `the harness's subnet ${SUBNET}.0/24 is already in use on this machine: ${clash.trim()}`,
    );
  }
}

/** Builds the bridge and one namespace per node; returns each node's address. */
export async function createNetwork(nodes: readonly string[]): Promise<string[]> {
  if (nodes.length > NODES_MAX) {
    throw new HarnessError(`at most ${NODES_MAX} nodes (NODES_MAX), got ${nodes.length}`);
  }
  await checkSubnetFree();
  await sh('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  await sh('ip', ['addr', 'add', `${BRIDGE_ADDR}/24`, 'dev', BRIDGE]);
  await sh('ip', ['link', 'set', BRIDGE, 'up']);
  const addrs: string[] = [];
  for (const [i, node] of nodes.entries()) {
    const ns = nsOf(node);
    const hostEnd = `${PREFIX}-${node}`;
    await sh('ip', ['netns', 'add', ns]);
    await sh('ip', ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await sh('ip', ['link', 'set', hostEnd, 'master', BRIDGE, 'up']);
    await sh('ip', ['-n', ns, 'addr', 'add', `${addrOf(i)}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    for (const chain of [CHAIN_PARTITION, CHAIN_LOSS]) {
      await iptablesIn(node, ['-N', chain]);
      await iptablesIn(node, ['-A', 'INPUT', '-j', chain]);
    }
    addrs.push(addrOf(i));
  }
  return addrs;
}
