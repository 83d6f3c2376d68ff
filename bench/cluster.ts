// npm run bench:cluster: 3 real node processes on loopback (bin/pcr node start, LevelDB, libp2p).
// Figures: write throughput and p50/p99 latency at 1, 16 and 256 concurrent clients, and the
// elections those loads caused (should be 0); failover time until the next acknowledged write,
// median of several runs, after kill -9 of the leader (its connections close: the followers know
// at once) and after SIGSTOP of the leader (nothing closes: the election timeout decides, as for a
// partition or a lost machine). --soak S runs 256 clients for S more seconds and counts elections;
// --no-etcd runs pcr alone. The clients start at the leader in both systems (the one client
// writes to the leader; more spread over all three members).
// If etcd is installed (Debian: etcd-server), the same runs against a 3-member etcd on loopback
// in the same run, and the ratios are printed.
// Usage: npm run bench:cluster -- [--seconds 5] [--warmup 5] [--failovers 7] [--soak 0] [--no-etcd]

import '../node/polyfill.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { ApiClient } from '../node/api/client.ts';
import { readSecret } from '../node/identity.ts';
import { kill9, type NodeProc, startNode, until } from '../test/procs.ts';
import { machine, machineLine, parseOptions } from './common.ts';

const {
  seconds: SECONDS,
  failovers: FAILOVERS,
  soak: SOAK_SECONDS,
  warmup: WARMUP_SECONDS,
  'no-etcd': NO_ETCD,
} = parseOptions(process.argv.slice(2), {
  seconds: { default: 5, min: 0.5 },
  failovers: { default: 7, min: 1, integer: true },
  soak: { default: 0, min: 0 },
  // Writes at 16 clients before the measured levels, for both systems and not counted: a fresh
  // Node process spends its first seconds compiling (V8 optimizes the hot paths, about 340
  // TurboFan compilations per member, tapering off over 30 s), which Go does ahead of time.
  warmup: { default: 5, min: 0 },
  // pcr alone (a soak to count elections takes as long again for etcd)
  'no-etcd': { flag: true },
});
const CONCURRENCY = [1, 16, 256];

interface LoadResult {
  clients: number;
  ops: number;
  perSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

interface Target {
  name: string;
  /** One write; resolves true when acknowledged. */
  put(worker: number, key: string, value: string, timeoutMs: number): Promise<boolean>;
  leaderIndex(): Promise<number | undefined>;
  kill(i: number): Promise<void>;
  restart(i: number): Promise<void>;
  /** SIGSTOP (true) or SIGCONT (false) of member i. */
  pause(i: number, paused: boolean): void;
  /** Elections so far, summed over the members that answer (etcd: leader changes seen). */
  elections(): Promise<number>;
  healthy(): Promise<boolean>;
  describe(): Promise<string>;
  close(): Promise<void>;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Client w writes to member (first + w) % 3. */
async function load(t: Target, clients: number, seconds: number, first = 0): Promise<LoadResult> {
  const lat: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, w) => {
      for (let i = 0; performance.now() < end; i++) {
        const t0 = performance.now();
        const ok = await t
          .put(first + w, `bench/${w}/${i % 64}`, 'x'.repeat(128), 5000)
          .catch(() => false);
        if (ok) lat.push(performance.now() - t0);
        else errors++;
      }
    }),
  );
  lat.sort((a, b) => a - b);
  return {
    clients,
    ops: lat.length,
    perSecond: lat.length / seconds,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    errors,
  };
}

type FailoverKind = 'kill' | 'pause';

async function failover(t: Target, runs: number, kind: FailoverKind): Promise<number[]> {
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    await until(
      async () => ((await t.healthy()) ? true : undefined),
      60_000,
      `${t.name} healthy`,
    ).catch(async (e) => {
      console.error(await t.describe());
      throw e;
    });
    const leader = await until(() => t.leaderIndex(), 20_000, `${t.name} leader`);
    const t0 = performance.now();
    if (kind === 'kill') await t.kill(leader);
    else t.pause(leader, true);
    // Writers on the survivors until one write is acknowledged.
    let done = false;
    await Promise.race(
      [0, 1, 2]
        .filter((i) => i !== leader)
        .map(async (i) => {
          for (let k = 0; !done; k++) {
            if (await t.put(i, `failover/${r}/${k}`, 'v', 1000).catch(() => false)) done = true;
            else await new Promise((res) => setTimeout(res, 5));
          }
        }),
    );
    times.push(performance.now() - t0);
    if (kind === 'kill') await t.restart(leader);
    else t.pause(leader, false);
  }
  return times;
}

/** Sums a counter of Prometheus text over the URLs that answer. */
async function sumCounter(urls: readonly string[], name: string): Promise<number> {
  let total = 0;
  for (const url of urls) {
    const text = await fetch(url, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.text())
      .catch(() => '');
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    if (line !== undefined) total += Number(line.split(' ')[1]);
  }
  return total;
}

// --- Procurator -------------------------------------------------------------------------------

async function procurator(base: string): Promise<Target> {
  const first = await startNode(base, 'n0', []);
  const seed = ['--seed', first.addr, '--secret-file', join(first.dataDir, 'cluster.secret')];
  const nodes: NodeProc[] = [
    first,
    ...(await Promise.all([startNode(base, 'n1', seed), startNode(base, 'n2', seed)])),
  ];
  const secret = await readSecret(join(first.dataDir, 'cluster.secret'));
  let clients = await Promise.all(nodes.map((n) => ApiClient.connect(n.addr, secret)));
  const status = async (i: number): Promise<Record<string, unknown> | undefined> => {
    const r = await clients[i]!.request({ op: 'status' }, 1000).catch(() => undefined);
    return r?.ok === true ? r : undefined;
  };
  return {
    name: 'procurator',
    async put(w, key, value, timeoutMs) {
      const r = await clients[w % 3]!.request({ op: 'kv.put', key, value }, timeoutMs);
      return r.ok;
    },
    async leaderIndex() {
      for (let i = 0; i < 3; i++) {
        const s = await status(i);
        if (s?.state === 'leader') return i;
      }
      return undefined;
    },
    async kill(i) {
      await kill9(nodes[i]!);
    },
    pause(i, paused) {
      nodes[i]!.child.kill(paused ? 'SIGSTOP' : 'SIGCONT');
    },
    elections() {
      return sumCounter(
        nodes.map((n) => n.metrics),
        'pcr_raft_elections_total',
      );
    },
    async restart(i) {
      nodes[i] = await startNode(base, `n${i}`, []);
      await clients[i]!.close();
      clients[i] = await ApiClient.connect(nodes[i]!.addr, secret);
    },
    async healthy() {
      const s = await Promise.all([0, 1, 2].map(status));
      if (s.some((x) => x === undefined || x.leader === '')) return false;
      const members = s[0]!.members as { role: string }[];
      return (
        members.filter((m) => m.role === 'voter').length === 3 &&
        new Set(s.map((x) => x!.leader)).size === 1
      );
    },
    async describe() {
      const s = await Promise.all([0, 1, 2].map(status));
      return JSON.stringify(
        s.map(
          (x) =>
            x && {
              id: x.id,
              state: x.state,
              leader: x.leader,
              term: x.term,
              commit: x.commit,
              members: x.members,
            },
        ),
        null,
        1,
      );
    },
    async close() {
      for (const c of clients) await c.close();
      clients = [];
      for (const n of nodes) if (n.child.exitCode === null) await kill9(n).catch(() => {});
    },
  };
}

// --- etcd (if installed) ------------------------------------------------------------------------

async function etcd(base: string): Promise<Target | undefined> {
  const bin = await execa('sh', ['-c', 'command -v etcd || ls /usr/bin/etcd'], { reject: false });
  const path = String(bin.stdout).trim().split('\n')[0];
  if (bin.exitCode !== 0 || path === undefined || path === '') return undefined;
  const peer = (i: number): string => `http://127.0.0.1:${23800 + i}`;
  const client = (i: number): string => `http://127.0.0.1:${23790 + i}`;
  const cluster = [0, 1, 2].map((i) => `e${i}=${peer(i)}`).join(',');
  const procs: ResultPromise[] = [];
  const start = (i: number, state: 'new' | 'existing'): ResultPromise =>
    execa(
      path,
      [
        '--name',
        `e${i}`,
        '--data-dir',
        join(base, `etcd${i}`),
        '--listen-peer-urls',
        peer(i),
        '--initial-advertise-peer-urls',
        peer(i),
        '--listen-client-urls',
        client(i),
        '--advertise-client-urls',
        client(i),
        '--initial-cluster',
        cluster,
        '--initial-cluster-state',
        state,
        '--log-level',
        'error',
      ],
      { reject: false, stdio: 'ignore' },
    );
  for (let i = 0; i < 3; i++) procs[i] = start(i, 'new');
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const post = async (
    i: number,
    path: string,
    body: unknown,
    timeoutMs: number,
  ): Promise<Record<string, unknown>> => {
    const r = await fetch(`${client(i)}${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!r.ok) throw new Error(`etcd ${r.status}`);
    return (await r.json()) as Record<string, unknown>;
  };
  const t: Target = {
    name: 'etcd',
    async put(w, key, value, timeoutMs) {
      await post(w % 3, '/v3/kv/put', { key: b64(key), value: b64(value) }, timeoutMs);
      return true;
    },
    async leaderIndex() {
      for (let i = 0; i < 3; i++) {
        const s = await post(i, '/v3/maintenance/status', {}, 1000).catch(() => undefined);
        if (s !== undefined && s.leader === (s.header as { member_id: string }).member_id) return i;
      }
      return undefined;
    },
    async kill(i) {
      procs[i]!.kill('SIGKILL');
      await procs[i];
    },
    pause(i, paused) {
      procs[i]!.kill(paused ? 'SIGSTOP' : 'SIGCONT');
    },
    elections() {
      return sumCounter(
        [0, 1, 2].map((i) => `${client(i)}/metrics`),
        'etcd_server_leader_changes_seen_total',
      );
    },
    async restart(i) {
      procs[i] = start(i, 'existing');
    },
    async healthy() {
      const s = await Promise.all(
        [0, 1, 2].map((i) => post(i, '/v3/maintenance/status', {}, 1000).catch(() => undefined)),
      );
      return s.every((x) => x !== undefined && x.leader !== undefined && x.leader !== '0');
    },
    async describe() {
      return 'etcd';
    },
    async close() {
      for (const p of procs) p.kill('SIGKILL');
      await Promise.all(procs);
    },
  };
  await until(async () => ((await t.healthy()) ? true : undefined), 30_000, 'etcd to start');
  return t;
}

// --- report ------------------------------------------------------------------------------------

const fmt = (n: number, d = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
    : '-';

interface Result {
  loads: LoadResult[];
  soak: LoadResult | undefined;
  /** Elections (etcd: leader changes) while the loads ran: each one is spurious. */
  loadElections: number;
  kill: number[];
  pause: number[];
}

const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function printFailovers(pcr: Result, et: Result | undefined): void {
  const what = {
    kill: 'kill -9 of the leader (its connections close)',
    pause: 'SIGSTOP of the leader (nothing closes: the election timeout)',
  } as const;
  for (const kind of ['kill', 'pause'] as const) {
    console.log('');
    console.log(`failover, ${what[kind]} -> next acknowledged write, ${FAILOVERS} runs:`);
    const p = pcr[kind];
    console.log(
      `  procurator median ${fmt(med(p))} ms  [${p.map((x) => fmt(x)).join(', ')}]` +
        (kind === 'kill' ? `  target 300 ms  ratio ${(med(p) / 300).toFixed(2)}x` : ''),
    );
    if (et)
      console.log(
        `  etcd       median ${fmt(med(et[kind]))} ms  [${et[kind].map((x) => fmt(x)).join(', ')}]  ratio pcr/etcd ${(med(p) / med(et[kind])).toFixed(2)}x`,
      );
  }
}

async function main(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'pcr-bench-cluster-'));
  console.log(
    `${machineLine(machine(), '3 members on loopback')}; 128-byte values; ${SECONDS} s per load level after ${WARMUP_SECONDS} s of warm-up at 16 clients`,
  );
  const results = new Map<string, Result>();
  const targets: (() => Promise<Target | undefined>)[] = [
    () => procurator(join(base, 'pcr')),
    ...(NO_ETCD ? [] : [() => etcd(join(base, 'etcd'))]),
  ];
  try {
    for (const make of targets) {
      const t = await make();
      if (t === undefined) {
        console.log('etcd: not installed (Debian: apt-get install etcd-server); no comparison');
        continue;
      }
      try {
        await until(
          async () => ((await t.healthy()) ? true : undefined),
          60_000,
          `${t.name} healthy`,
        );
        const loads: LoadResult[] = [];
        if (WARMUP_SECONDS > 0) await load(t, 16, WARMUP_SECONDS);
        // The clients start at the leader (client w writes to member (leader + w) % 3), in both
        // systems: a single client on a follower pays one hop more (its write is forwarded), so
        // the one-client level compares the same path. The busier levels spread over all three.
        const leaderAt = await t.leaderIndex();
        console.log(
          `${t.name}: the one-client level writes to the leader (member ${leaderAt ?? 'unknown: member 0'})`,
        );
        const before = await t.elections();
        for (const c of CONCURRENCY) loads.push(await load(t, c, SECONDS, leaderAt ?? 0));
        const soak = SOAK_SECONDS > 0 ? await load(t, 256, SOAK_SECONDS) : undefined;
        const loadElections = (await t.elections()) - before;
        const kill = await failover(t, FAILOVERS, 'kill');
        const pause = await failover(t, FAILOVERS, 'pause');
        results.set(t.name, { loads, soak, loadElections, kill, pause });
      } finally {
        await t.close();
      }
    }
  } finally {
    await rm(base, { recursive: true, force: true });
  }
  const pcr = results.get('procurator')!;
  const et = results.get('etcd');
  console.log('');
  console.log(
    'clients  pcr writes/s  pcr p50 ms  pcr p99 ms  errors' +
      (et ? '  etcd writes/s  etcd p50 ms  etcd p99 ms  throughput ratio' : ''),
  );
  pcr.loads.forEach((l, i) => {
    const e = et?.loads[i];
    console.log(
      `${String(l.clients).padStart(7)}  ${fmt(l.perSecond).padStart(12)}  ${fmt(l.p50, 1).padStart(10)}  ${fmt(l.p99, 1).padStart(10)}  ${String(l.errors).padStart(6)}` +
        (e
          ? `  ${fmt(e.perSecond).padStart(13)}  ${fmt(e.p50, 1).padStart(11)}  ${fmt(e.p99, 1).padStart(11)}  ${(l.perSecond / e.perSecond).toFixed(2).padStart(15)}x`
          : ''),
    );
  });
  if (pcr.soak !== undefined) {
    const e = et?.soak;
    console.log(
      `soak, 256 clients for ${SOAK_SECONDS} s: pcr ${fmt(pcr.soak.perSecond)} writes/s, ${pcr.soak.errors} errors` +
        (e ? `; etcd ${fmt(e.perSecond)} writes/s, ${e.errors} errors` : ''),
    );
  }
  console.log(
    `elections during the loads (spurious; target 0): pcr ${pcr.loadElections}` +
      (et ? `, etcd (leader changes) ${et.loadElections}` : ''),
  );
  printFailovers(pcr, et);
  const last = pcr.loads.at(-1)!;
  if (et)
    console.log(
      `target: throughput at 256 clients >= etcd's: ${(last.perSecond / et.loads.at(-1)!.perSecond).toFixed(2)}x`,
    );
  process.exit(0);
}

await main();
