// npm run bench:cli: how long a `pcr` command takes, as a user feels it (wall time of the whole
// process), against the local node: `pcr status` and `pcr kv get`, median and p99 of --runs runs,
// beside `etcdctl get` against a local one-member etcd in the same run (when etcd and etcdctl are
// installed), as a ratio. Also the daemon's start-up time: from the spawn of `pcr node start` on a
// fresh data dir until it wrote node.json (median of --starts). PCR_BIN points at another pcr (an
// older checkout's bin/pcr) to compare. Usage: npm run bench:cli -- [--runs 20] [--starts 5]

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { until } from '../test/until.ts';
import { formatTable, machine, machineLine, parseOptions } from './common.ts';

const { runs: RUNS, starts: STARTS } = parseOptions(process.argv.slice(2), {
  runs: { default: 20, min: 1, integer: true },
  starts: { default: 5, min: 1, integer: true },
});
const PCR = process.env.PCR_BIN ?? resolve(fileURLToPath(new URL('../bin/pcr', import.meta.url)));

interface Figures {
  readonly medianMs: number;
  readonly p99Ms: number;
}

function figures(samplesMs: number[]): Figures {
  const s = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
  return { medianMs: at(0.5), p99Ms: at(0.99) };
}

/** Wall time of `runs` runs of one command, each to completion; a failed run fails the bench. */
async function timeCommand(file: string, args: readonly string[], runs: number): Promise<Figures> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await execa(file, args, { reject: false, stdin: 'ignore' });
    samples.push(performance.now() - t0);
    if (r.exitCode !== 0) {
      throw new Error(`${file} ${args.join(' ')} exited ${r.exitCode}: ${String(r.stderr)}`);
    }
  }
  return figures(samples);
}

interface Started {
  readonly child: ResultPromise;
  readonly ms: number;
}

/** Starts a node on a fresh data dir; resolves when it wrote node.json, with the time it took. */
async function startNode(dataDir: string): Promise<Started> {
  const t0 = performance.now();
  const child = execa(PCR, ['node', 'start', '--data-dir', dataDir, '--store', 'local'], {
    reject: false,
    stdin: 'ignore',
    env: { PCR_LOG_LEVEL: 'warn', PCR_ACCEL: 'tcg' },
  });
  await until(
    async () => {
      const text = await readFile(join(dataDir, 'node.json'), 'utf8').catch(() => '');
      try {
        return (JSON.parse(text) as { pid?: number }).pid === child.pid ? true : undefined;
      } catch {
        return undefined; // not written yet
      }
    },
    60_000,
    'the node to start',
  );
  return { child, ms: performance.now() - t0 };
}

async function stopNode(s: Started): Promise<void> {
  s.child.kill('SIGTERM');
  await s.child;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

/** A one-member etcd on loopback in `dir`, with etcdctl's arguments to reach it; or undefined. */
async function startEtcd(
  dir: string,
): Promise<{ child: ResultPromise; endpoint: string } | undefined> {
  const which = await execa('sh', ['-c', 'command -v etcd && command -v etcdctl'], {
    reject: false,
  });
  if (which.exitCode !== 0) return undefined;
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = execa(
    'etcd',
    [
      '--data-dir',
      dir,
      '--listen-client-urls',
      endpoint,
      '--advertise-client-urls',
      endpoint,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `default=${peer}`,
      '--log-level',
      'error',
    ],
    { reject: false, stdio: 'ignore' },
  );
  await until(
    async () => {
      const r = await execa('etcdctl', ['--endpoints', endpoint, 'put', 'greeting', 'hello'], {
        reject: false,
      });
      return r.exitCode === 0 ? true : undefined;
    },
    30_000,
    'etcd to start',
  );
  return { child, endpoint };
}

const ms = (x: number): string => x.toFixed(0);

async function main(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'pcr-bench-cli-'));
  const started: Started[] = [];
  let etcd: Awaited<ReturnType<typeof startEtcd>>;
  try {
    // Start-up: fresh data dirs, one at a time; the last one stays up for the commands.
    for (let i = 0; i < STARTS; i++) {
      const s = await startNode(join(base, `n${i}`));
      started.push(s);
      if (i < STARTS - 1) await stopNode(s);
    }
    const dataDir = join(base, `n${STARTS - 1}`);
    const at = ['--data-dir', dataDir];
    await until(
      async () =>
        (await execa(PCR, ['kv', 'put', 'greeting', 'hello', ...at], { reject: false }))
          .exitCode === 0 || undefined,
      30_000,
      'a leader',
    );
    const rows: [string, Figures][] = [
      ['pcr status', await timeCommand(PCR, ['status', ...at], RUNS)],
      ['pcr kv get', await timeCommand(PCR, ['kv', 'get', 'greeting', ...at], RUNS)],
      ['node -e 0 (floor)', await timeCommand(process.execPath, ['-e', '0'], RUNS)],
    ];
    etcd = await startEtcd(join(base, 'etcd'));
    const anchor =
      etcd === undefined
        ? undefined
        : await timeCommand('etcdctl', ['--endpoints', etcd.endpoint, 'get', 'greeting'], RUNS);
    if (anchor !== undefined) rows.push(['etcdctl get', anchor]);
    const startMs = started.map((s) => s.ms).sort((a, b) => a - b);
    console.log(machineLine(machine(), `${RUNS} runs each, pcr: ${PCR}`));
    console.log(
      formatTable(
        ['command', 'median ms', 'p99 ms', ...(anchor ? ['median / etcdctl get'] : [])],
        rows.map(([name, f]) => [
          name,
          ms(f.medianMs),
          ms(f.p99Ms),
          ...(anchor ? [`${(f.medianMs / anchor.medianMs).toFixed(2)}x`] : []),
        ]),
      ),
    );
    if (anchor === undefined) console.log('etcd/etcdctl: not installed; no comparison');
    console.log(
      `daemon start-up (spawn to node.json), median of ${STARTS}: ${ms(startMs[Math.floor(startMs.length / 2)]!)} ms  [${startMs.map(ms).join(', ')}]`,
    );
  } finally {
    for (const s of started) if (s.child.exitCode === null) await stopNode(s);
    if (etcd !== undefined) {
      etcd.child.kill('SIGKILL');
      await etcd.child;
    }
    await rm(base, { recursive: true, force: true });
  }
}

await main();
