// The real cluster under test: one `pcr node start` per node, each inside its own namespace
// (`ip netns exec NS bin/pcr node start ...`), with its own data dir, listening on its namespace's
// address; the cluster forms through one seed, as a user forms it. The harness talks to the nodes
// with the product's client (node/api/client.ts) from the root namespace, over the bridge.
//
// `ip netns exec` and bin/pcr both exec, so a child's pid is the node's own Node.js process: kill
// -9, SIGSTOP and SIGCONT reach the daemon itself. A node is a machine: kill -9 takes its VMMs
// with it (a crash), SIGSTOP freezes them with it (docs/jepsen.md says why).

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../../node/api/client.ts';
import type { ApiRequest, ApiResponse } from '../../node/api/wire.ts';
import { VM_RUN_DIR } from '../../node/daemon.ts';
import { CLUSTER_SECRET_FILE, NODE_INFO_FILE, readSecret } from '../../node/identity.ts';
import { until } from '../../test/until.ts';
import { HarnessError, NODE_PORT, nsOf } from './netns.ts';
import { scanVmms, type VmRunDir } from './vmms.ts';

const PCR = resolve(fileURLToPath(new URL('../../bin/pcr', import.meta.url)));
/** libfaketime as Debian installs it: preloaded into a node to skew its clocks. */
export const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
/** How long a node has to write its node.json after it was started (2 cores shared by many: a
 * start under load has taken over 30 s here). */
export const NODE_START_TIMEOUT_MS = 120_000;
/** How long the cluster has to list every node as a member after the first start. */
export const CLUSTER_FORM_TIMEOUT_MS = 120_000;
/** A status request while looking for the leader. */
const STATUS_TIMEOUT_MS = 1_000;

export interface RealNode {
  readonly name: string;
  readonly addr: string;
  readonly dataDir: string;
  readonly logPath: string;
  /** The faketime offset file when the node runs under libfaketime. */
  readonly skewFile: string | undefined;
  child: { readonly proc: ChildProcess; readonly exited: Promise<void> } | undefined;
  /** The libp2p peer id (stable across restarts: it is in the data dir). */
  id: string;
  multiaddr: string;
  paused: boolean;
  /** The VMMs SIGSTOPped with the daemon, to SIGCONT with it. */
  frozenVmms: number[];
}

export interface ClusterOptions {
  readonly names: readonly string[];
  readonly addrs: readonly string[];
  readonly workDir: string;
  readonly logDir: string;
  /** Run every node under libfaketime so that the skew nemesis can move its clocks. */
  readonly skew: boolean;
  /** Extra `pcr node start` flags for every node (the vms workload's lifecycle bounds). */
  readonly nodeArgs?: readonly string[];
  readonly log: (line: string) => void;
}

/** A node's environment: log level, TCG (no KVM probe), and libfaketime when it may be skewed. */
function nodeEnv(n: RealNode): Record<string, string> {
  const env: Record<string, string> = { PCR_LOG_LEVEL: 'info', PCR_ACCEL: 'tcg' };
  if (n.skewFile === undefined) return env;
  writeFileSync(n.skewFile, '+0\n');
  return {
    ...env,
    LD_PRELOAD: FAKETIME_LIB,
    FAKETIME_TIMESTAMP_FILE: n.skewFile,
    FAKETIME_CACHE_DURATION: '1',
  };
}

interface NodeInfo {
  readonly id: string;
  readonly addrs: readonly string[];
  readonly pid: number;
}

/** The node.json that process `pid` wrote, or undefined while it has not (a stale one is older). */
async function readNodeInfo(
  dataDir: string,
  pid: number | undefined,
): Promise<NodeInfo | undefined> {
  try {
    const i = JSON.parse(await readFile(join(dataDir, NODE_INFO_FILE), 'utf8')) as NodeInfo;
    return i.pid === pid ? i : undefined;
  } catch {
    return undefined;
  }
}

export class Cluster {
  readonly nodes: RealNode[];
  private seedArgs: string[] = [];
  private secret: Uint8Array | undefined;
  private readonly clients = new Map<string, Promise<ApiClient>>();
  private readonly nodeArgs: readonly string[];

  constructor(o: ClusterOptions) {
    this.nodeArgs = o.nodeArgs ?? [];
    this.nodes = o.names.map((name, i) => ({
      name,
      addr: o.addrs[i]!,
      dataDir: join(o.workDir, name),
      logPath: join(o.logDir, `${name}.log`),
      skewFile: o.skew ? join(o.workDir, `${name}.faketime`) : undefined,
      child: undefined,
      id: '',
      multiaddr: '',
      paused: false,
      frozenVmms: [],
    }));
  }

  /** Where each node's supervisor runs its VMMs (the observer's and the machine nemeses' view). */
  vmRunDirs(): VmRunDir[] {
    return this.nodes.map((n) => ({ node: n.name, runDir: join(n.dataDir, VM_RUN_DIR) }));
  }

  /** The pids of the VMMs running under one node's data dir. */
  vmmsOf(n: RealNode): number[] {
    return scanVmms(this.vmRunDirs().filter((d) => d.node === n.name)).map((v) => v.pid);
  }

  node(name: string): RealNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new HarnessError(`no node ${name}`);
    return n;
  }

  /** The cluster secret's file (in the first node's data dir), for the pcr CLI. */
  secretFile(): string {
    return join(this.nodes[0]!.dataDir, CLUSTER_SECRET_FILE);
  }

  /** Starts the first node, then the others through it as the seed; waits for all members. */
  async start(): Promise<void> {
    const [first, ...rest] = this.nodes;
    await this.startNode(first!);
    this.secret = await readSecret(join(first!.dataDir, CLUSTER_SECRET_FILE));
    this.seedArgs = [
      '--seed',
      first!.multiaddr,
      '--secret-file',
      join(first!.dataDir, CLUSTER_SECRET_FILE),
    ];
    // The others start together (each waits for its own node.json); they join through the seed.
    await Promise.all(rest.map((n) => this.startNode(n)));
    await until(
      async () => {
        const r = await this.request(first!.name, { op: 'members' }, 3000).catch(() => undefined);
        const members = r?.ok === true ? (r.members as { role: string }[]) : [];
        return members.filter((m) => m.role === 'voter').length === this.nodes.length;
      },
      CLUSTER_FORM_TIMEOUT_MS,
      `${this.nodes.length} voters`,
      200,
    );
  }

  /** Starts (or restarts) one node and waits until it wrote its node.json. */
  async startNode(n: RealNode): Promise<void> {
    const fd = openSync(n.logPath, 'a');
    const args = [
      'netns',
      'exec',
      nsOf(n.name),
      PCR,
      'node',
      'start',
      '--data-dir',
      n.dataDir,
      '--listen',
      `/ip4/${n.addr}/tcp/${NODE_PORT}`,
      ...this.nodeArgs,
      // The first node restarts from its data dir: the product refuses itself as its own seed.
      ...(n === this.nodes[0] ? [] : this.seedArgs),
    ];
    const proc = spawn('ip', args, {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...nodeEnv(n) },
    });
    closeSync(fd);
    let exited = false;
    const child = {
      proc,
      exited: new Promise<void>((r) => {
        proc.on('exit', () => {
          exited = true;
          if (n.child === child) n.child = undefined;
          r();
        });
        proc.on('error', () => {
          exited = true;
          if (n.child === child) n.child = undefined;
          r();
        });
      }),
    };
    n.child = child;
    n.paused = false;
    const info = await until(
      async () => {
        if (exited) throw new HarnessError(`${n.name} exited at start; see ${n.logPath}`);
        return readNodeInfo(n.dataDir, proc.pid);
      },
      NODE_START_TIMEOUT_MS,
      `${n.name} to start`,
      100,
    );
    n.id = info.id;
    n.multiaddr =
      info.addrs.find((a) => a.includes(n.addr)) ??
      `/ip4/${n.addr}/tcp/${NODE_PORT}/p2p/${info.id}`;
    if (!n.multiaddr.includes('/p2p/')) n.multiaddr += `/p2p/${info.id}`;
  }

  running(n: RealNode): boolean {
    return n.child !== undefined;
  }

  /** A machine crash: kill -9 of the daemon, then at once of every VMM under its data dir. */
  async kill(n: RealNode): Promise<void> {
    const child = n.child;
    if (child === undefined) return;
    child.proc.kill('SIGKILL');
    for (const pid of this.vmmsOf(n)) signalPid(pid, 'SIGKILL');
    n.frozenVmms = [];
    await child.exited;
    n.child = undefined;
    n.paused = false;
  }

  /** A frozen machine: SIGSTOP (SIGCONT) of the daemon and of every VMM under its data dir. */
  signal(n: RealNode, sig: 'SIGSTOP' | 'SIGCONT'): void {
    if (n.child?.proc.pid === undefined) return;
    process.kill(n.child.proc.pid, sig);
    if (sig === 'SIGSTOP') {
      n.frozenVmms = this.vmmsOf(n);
      for (const pid of n.frozenVmms) signalPid(pid, 'SIGSTOP');
    } else {
      for (const pid of n.frozenVmms) signalPid(pid, 'SIGCONT');
      n.frozenVmms = [];
    }
    n.paused = sig === 'SIGSTOP';
  }

  /** Moves a node's clocks (libfaketime's relative offset, re-read about once a second). */
  skew(n: RealNode, offsetS: number): void {
    if (n.skewFile === undefined) throw new HarnessError(`${n.name} does not run under faketime`);
    writeFileSync(n.skewFile, `${offsetS >= 0 ? '+' : ''}${offsetS}s\n`);
  }

  nameOfId(id: string): string | undefined {
    return this.nodes.find((n) => n.id === id)?.name;
  }

  /** The product's client for one node (one libp2p host each, kept for the run). */
  private client(name: string): Promise<ApiClient> {
    let c = this.clients.get(name);
    if (c === undefined) {
      const secret = this.secret;
      if (secret === undefined) throw new HarnessError('the cluster has not started');
      c = ApiClient.connect(this.node(name).multiaddr, secret);
      this.clients.set(name, c);
    }
    return c;
  }

  async request(name: string, req: ApiRequest, timeoutMs: number): Promise<ApiResponse> {
    return (await this.client(name)).request(req, timeoutMs);
  }

  /** The leader most running, unpaused nodes name (undefined when they do not agree on one). */
  async leader(): Promise<string | undefined> {
    const live = this.nodes.filter((n) => this.running(n) && !n.paused);
    const answers = await Promise.all(
      live.map((n) =>
        this.request(n.name, { op: 'status' }, STATUS_TIMEOUT_MS).catch(() => undefined),
      ),
    );
    const votes = new Map<string, number>();
    for (const a of answers) {
      if (a?.ok === true && typeof a.leader === 'string' && a.leader !== '') {
        votes.set(a.leader, (votes.get(a.leader) ?? 0) + 1);
      }
    }
    const best = [...votes.entries()].sort((a, b) => b[1] - a[1])[0];
    return best === undefined ? undefined : this.nameOfId(best[0]);
  }

  /** Every node back: resumed, restarted if dead, clocks reset. */
  async healProcesses(): Promise<void> {
    for (const n of this.nodes) {
      if (n.paused) this.signal(n, 'SIGCONT');
      if (n.skewFile !== undefined) this.skew(n, 0);
      if (!this.running(n)) await this.startNode(n);
    }
  }

  async stop(): Promise<void> {
    for (const c of this.clients.values())
      await (await c.catch(() => undefined))?.close().catch(() => {});
    this.clients.clear();
    for (const n of this.nodes) {
      if (n.paused) this.signal(n, 'SIGCONT');
      await this.kill(n).catch(() => {});
      // A VMM the daemon started after its last kill (the cleanup kills any left too).
      for (const pid of this.vmmsOf(n)) signalPid(pid, 'SIGKILL');
    }
  }
}

/** Signals a pid that may have exited meanwhile. */
function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {}
}
