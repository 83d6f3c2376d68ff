// `pcr node start` and the client as a user meets them, with real processes (bin/pcr): bad
// arguments fail at once with one line, a distinct exit code and no stack trace; an unreachable
// seed is retried with a bounded back-off and one warning; a running node answers on its local
// socket, names its members, and prints errors as JSON with --json.

import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { generateKey } from '@libp2p/pnet';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { type NodeProc, PCR, pcr, startNode, stop, until } from '../../test/procs.ts';
import { describeWithTools } from '../../test/tools.ts';
import { JOIN_RETRY_MS_MAX } from '../join_backoff.ts';
import { shortId } from '../names.ts';
import { EXIT } from './client.ts';
import { SEED_FORM } from './node_args.ts';

const base = await mkdtemp(join(tmpdir(), 'pcr-start-'));
const running: NodeProc[] = [];
afterAll(async () => {
  for (const p of running) await stop(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

const ID = '12D3KooWLjB3nhgf1kbk1mFPRjCHPGNyjk1jyZ2FacBXG8pJdXSu';
/** A start that should fail before doing anything: bounded, so a hang fails the test. */
const start = (args: string[]) => pcr(['node', 'start', ...args], 30_000);

function expectOneLine(r: { stderr: string; stdout: string }, what: RegExp): void {
  expect(r.stderr).toMatch(what);
  expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
  expect(r.stderr.split('\n').filter((l) => l.startsWith('pcr: ')).length).toBe(1);
}

describe('pcr node start refuses bad arguments at once', () => {
  it.each([
    [`/ip4/127.0.0.1/tcp/4001/p2p/${ID}'`, /not a peer ID/],
    ['/ip4/127.0.0.1/tcp/4001', /does not end with \/p2p/],
    [`/ip4/127.0.0.1/quic/4001/p2p/${ID}`, /not a multiaddr|no \/tcp/],
    ['127.0.0.1:4001', /not a multiaddr/],
  ])('a malformed seed %s (exit 11, the right form shown)', async (seed, why) => {
    const r = await start(['--data-dir', join(base, 'never'), '--seed', seed]);
    expect(r.exitCode, r.stderr).toBe(EXIT.badArgument);
    expectOneLine(r, why);
    expect(r.stderr).toContain(SEED_FORM);
  });

  it('a seed that is the node itself', async () => {
    const dataDir = join(base, 'self');
    await mkdir(dataDir, { recursive: true });
    const key = await generateKeyPair('Ed25519');
    await writeFile(join(dataDir, 'peer.key'), privateKeyToProtobuf(key), { mode: 0o600 });
    const self = peerIdFromPrivateKey(key).toString();
    const r = await start(['--data-dir', dataDir, '--seed', `/ip4/127.0.0.1/tcp/4001/p2p/${self}`]);
    expect(r.exitCode, r.stderr).toBe(EXIT.badArgument);
    expectOneLine(r, /this node itself/);
  });

  it('an unreadable secret file, a data dir that cannot be made, an unknown config key', async () => {
    const noSecret = await start([
      '--data-dir',
      join(base, 'x'),
      '--seed',
      `/ip4/127.0.0.1/tcp/4001/p2p/${ID}`,
      '--secret-file',
      join(base, 'missing.secret'),
    ]);
    expect(noSecret.exitCode, noSecret.stderr).toBe(EXIT.badArgument);
    expectOneLine(noSecret, /--secret-file .*missing\.secret/);

    const file = join(base, 'a-file');
    await writeFile(file, 'x');
    const noDir = await start(['--data-dir', join(file, 'sub')]);
    expect(noDir.exitCode, noDir.stderr).toBe(EXIT.badArgument);
    expectOneLine(noDir, /--data-dir .*a-file\/sub cannot be used/);

    const config = join(base, 'typo.json');
    await writeFile(config, JSON.stringify({ lisen: ['/ip4/127.0.0.1/tcp/0'] }));
    const typo = await start(['--config', config]);
    expect(typo.exitCode, typo.stderr).toBe(EXIT.badArgument);
    expectOneLine(typo, /unknown option "lisen"/);
    expect(typo.stderr).toMatch(/did you mean "listen"/);
  });

  it('an address already in use (exit 12)', async () => {
    const server: Server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const r = await start([
        '--data-dir',
        join(base, 'inuse'),
        '--listen',
        `/ip4/127.0.0.1/tcp/${port}`,
        '--store',
        'local',
      ]);
      expect(r.exitCode, r.stderr).toBe(EXIT.addressInUse);
      expectOneLine(r, new RegExp(`already in use.*127\\.0\\.0\\.1:${port}`));
    } finally {
      server.close();
    }
  });
});

describe('a seed that does not answer', () => {
  it('is retried with a bounded back-off and one warning per state, not a line per attempt', async () => {
    const dataDir = join(base, 'lonely');
    const secret = new Uint8Array(95);
    generateKey(secret);
    await writeFile(join(base, 'lonely.secret'), secret);
    const child = execa(
      PCR,
      [
        'node',
        'start',
        '--data-dir',
        dataDir,
        '--seed',
        `/ip4/127.0.0.1/tcp/1/p2p/${ID}`,
        '--store',
        'local',
        '--cache',
        'off',
        '--log-level',
        'debug',
        '--log-format',
        'json',
        '--secret-file',
        join(base, 'lonely.secret'),
      ],
      { reject: false, stdin: 'ignore', env: { PCR_ACCEL: 'tcg' } },
    );
    let log = '';
    child.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
    });
    try {
      const records = () =>
        log
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { level: number; msg: string; retryMs?: number });
      // Four failed attempts: the first logged at warn, the rest at debug.
      await until(
        () => records().filter((r) => r.msg === 'join not accepted yet').length >= 3,
        60_000,
        'attempts to join',
      );
      const warns = records().filter((r) => r.level === 40);
      expect(warns).toHaveLength(1);
      expect(warns[0]!.msg).toMatch(/waiting for the seed to be reachable/);
      const delays = records()
        .filter((r) => r.retryMs !== undefined)
        .map((r) => r.retryMs!);
      // Growing, within the bound.
      expect(delays).toEqual([...delays].sort((a, b) => a - b));
      expect(Math.max(...delays)).toBeLessThanOrEqual(JOIN_RETRY_MS_MAX);
      expect(delays[1]).toBeGreaterThan(delays[0]!);
    } finally {
      child.kill('SIGTERM');
      await child;
    }
  });
});

describe('a running node and the client', () => {
  it('answers on a 0600 local socket, names members, and prints errors as JSON with --json', async () => {
    const config = join(base, 'n1.json');
    await writeFile(config, JSON.stringify({ name: 'from-config', store: 'local', cache: 'off' }));
    const n = await startNode(base, 'n1', ['--config', config, '--name', 'alpha']);
    running.push(n);
    const info = JSON.parse(await readFile(join(n.dataDir, 'node.json'), 'utf8')) as {
      socket: string;
    };
    const st = await stat(info.socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);

    // The flag overrides the config file; tables show the name and the short ID.
    const members = await until(
      async () => {
        const r = await pcr(['members', '--data-dir', n.dataDir]);
        return r.stdout.includes('alpha') ? r : undefined;
      },
      30_000,
      'the name in the member table',
    );
    expect(members.stdout).toMatch(new RegExp(`^alpha\\s+${shortId(n.id)}\\s+voter`, 'm'));
    expect(members.stdout).not.toContain(n.id);
    const json = await pcr(['members', '--json', '--data-dir', n.dataDir]);
    expect(JSON.parse(json.stdout)).toMatchObject([{ id: n.id, name: 'alpha' }]);

    // Errors: one line and a hint on stderr; with --json an object on stdout, same exit code.
    const missing = await pcr(['kv', 'get', 'nokey', '--data-dir', n.dataDir]);
    expect(missing.exitCode).toBe(EXIT.notFound);
    expectOneLine(missing, /NOT_FOUND/);
    const missingJson = await pcr(['kv', 'get', 'nokey', '--json', '--data-dir', n.dataDir]);
    expect(missingJson.exitCode).toBe(EXIT.notFound);
    expect(JSON.parse(missingJson.stdout)).toMatchObject({
      error: { code: 'NOT_FOUND', exitCode: EXIT.notFound, hint: expect.any(String) },
    });
    const usageJson = await pcr(['kv', 'get', '--jsn', 'x', '--json']);
    expect(usageJson.exitCode).toBe(EXIT.usage);
    expect(JSON.parse(usageJson.stdout)).toMatchObject({ error: { code: 'USAGE' } });
    expect(usageJson.stderr).toMatch(/did you mean --json/i);

    // A node named by name works where a node is taken.
    const transfer = await pcr([
      'operator',
      'raft',
      'transfer-leader',
      'nobody',
      '--data-dir',
      n.dataDir,
    ]);
    expect(transfer.exitCode).toBe(EXIT.notFound);
    expectOneLine(transfer, /no member "nobody"/);

    // The same request over libp2p, as from another machine.
    const remote = await pcr([
      'status',
      '--json',
      '--addr',
      n.addr,
      '--secret-file',
      join(n.dataDir, 'cluster.secret'),
    ]);
    expect(remote.exitCode, remote.stderr).toBe(0);
    expect(JSON.parse(remote.stdout)).toMatchObject({ id: n.id });
  });
});

describe('pcr node start --json', () => {
  it('prints its banner as one JSON object on stdout; the logs stay on stderr', async () => {
    const dataDir = join(base, 'json');
    const child = execa(
      PCR,
      ['node', 'start', '--json', '--data-dir', dataDir, '--store', 'local'],
      { reject: false, stdin: 'ignore', env: { PCR_ACCEL: 'tcg', PCR_LOG_LEVEL: 'info' } },
    );
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    try {
      await until(() => out.includes('\n'), 60_000, 'the JSON banner');
      const info = JSON.parse(out) as Record<string, unknown> & {
        addrs: string[];
        cache: { url: string; publicKey: string };
      };
      const written = JSON.parse(await readFile(join(dataDir, 'node.json'), 'utf8')) as {
        id: string;
        addrs: string[];
      };
      expect(info).toMatchObject({
        id: written.id,
        name: expect.any(String),
        dataDir,
        addrs: written.addrs,
        loopbackOnly: true,
        seed: written.addrs[0],
        secretFile: join(dataDir, 'cluster.secret'),
      });
      expect(info.join).toMatch(
        new RegExp(`node start --data-dir <another dir> --seed ${written.addrs[0]} --secret-file `),
      );
      // The URLs it names answer.
      expect((await fetch(String(info.metrics))).status).toBe(200);
      expect(await (await fetch(`${info.cache.url}/nix-cache-info`)).text()).toMatch(/StoreDir/);
      expect(info.cache.publicKey).toMatch(/^[^:]+:[A-Za-z0-9+/=]+$/);
      // Logs on stderr (JSON lines: not a terminal), and no human banner anywhere.
      await until(() => /"msg":"node started"/.test(err), 10_000, 'a log line on stderr');
      expect(err).not.toMatch(/join it:|listening on loopback only/);
    } finally {
      child.kill('SIGTERM');
    }
    const r = await child;
    expect(r.exitCode, err).toBe(0);
    // Still exactly one line on stdout after the stop.
    expect(out.trimEnd().split('\n')).toHaveLength(1);
  });
});

describeWithTools(['script'], 'pcr node start on a terminal', () => {
  it('prints readable log lines, not JSON, and its join line; Ctrl-C stops it', async () => {
    const dataDir = join(base, 'tty');
    const child = execa(
      'script',
      [
        '-q',
        '-e',
        '-c',
        // `exec`: the shell script runs its command under ($SHELL) must not stay between the
        // terminal and pcr. dash (SHELL=/bin/sh, as on a CI machine) waits for its child and then
        // reports the Ctrl-C as its own 130, even when pcr stopped gracefully with 0.
        `exec ${PCR} node start --data-dir ${dataDir} --store local --cache off`,
        '/dev/null',
      ],
      { reject: false, stdin: 'pipe', env: { PCR_ACCEL: 'tcg', SHELL: '/bin/sh' } },
    );
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    // Colours depend on the terminal: compare without them.
    const plain = (): string => stripVTControlCharacters(out).replace(/\r/g, '');
    await until(() => /^join it: /m.test(plain()), 60_000, 'the start banner');
    await until(
      () => /^\d\d:\d\d:\d\d\.\d{3} {2}INFO {3}node started {2}id=/m.test(plain()),
      10_000,
      'a log line',
    );
    expect(plain()).not.toMatch(/^\{"level"/m);
    child.stdin?.write('\x03');
    const r = await child;
    expect(r.exitCode, plain()).toBe(0);
    expect(plain()).toMatch(/INFO {3}node stopped/);
  });
});
