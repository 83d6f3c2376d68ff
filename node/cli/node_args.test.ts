// `pcr node start`'s argument checks and config file, in process; the Raft timing flags from the
// command line to the RaftNode the daemon builds.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { bootstrap, seededRandom } from '../../consensus/index.ts';
import { MemoryDisk } from '../raft/disk.ts';
import { RaftNode } from '../raft/node.ts';
import { DurableStorage } from '../raft/storage.ts';
import {
  daemonRaftTiming,
  ELECTION_TIMEOUT_MS_DEFAULT,
  ELECTION_TIMEOUT_MS_MAX,
  HEARTBEAT_INTERVAL_MS_DEFAULT,
  RAFT_TICK_MS,
  raftNodeTiming,
} from '../raft_timing.ts';
import { EXIT } from './client.ts';
import { CONFIG_BYTES_MAX, checkSeed, closest, readConfig, SEED_FORM } from './node_args.ts';
import { addStartOptions, checkRaftTiming, daemonOptions, type StartOpts } from './node_cmd.ts';
import { main } from './pcr.ts';

const ID = '12D3KooWLjB3nhgf1kbk1mFPRjCHPGNyjk1jyZ2FacBXG8pJdXSu';
const dir = await mkdtemp(join(tmpdir(), 'pcr-args-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('checkSeed', () => {
  it('accepts a TCP multiaddr ending with a peer ID', () => {
    expect(checkSeed(`/ip4/10.0.0.1/tcp/4001/p2p/${ID}`, undefined)).toBe(
      `/ip4/10.0.0.1/tcp/4001/p2p/${ID}`,
    );
    expect(checkSeed(`/dns4/node1.example/tcp/4001/p2p/${ID}`, 'other')).toBeTruthy();
  });
  it.each([
    [`/ip4/10.0.0.1/tcp/4001/p2p/${ID}'`, /not a peer ID/],
    ['/ip4/10.0.0.1/tcp/4001', /does not end with \/p2p/],
    [`/ip4/10.0.0.1/foo/4001/p2p/${ID}`, /not a multiaddr.*foo/],
    ['10.0.0.1:4001', /not a multiaddr/],
    [`/ip4/10.0.0.1/udp/4001/p2p/${ID}`, /no \/tcp/],
    [`/ip4/300.0.0.1/tcp/4001/p2p/${ID}`, /not a multiaddr/],
  ])('refuses %s with the right form and exit code 11', (seed, why) => {
    let err: { message: string; exitCode: number; hint?: string } | undefined;
    try {
      checkSeed(seed, undefined);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.message).toMatch(why);
    expect(err?.exitCode).toBe(EXIT.badArgument);
    expect(err?.hint).toContain(SEED_FORM);
  });
  it('refuses the node itself', () => {
    expect(() => checkSeed(`/ip4/10.0.0.1/tcp/4001/p2p/${ID}`, ID)).toThrow(/this node itself/);
  });
});

describe('config file', () => {
  it('gives each flag its value as the flag would take it', async () => {
    const file = join(dir, 'ok.json');
    await writeFile(
      file,
      JSON.stringify({ name: 'n1', maxVoters: 3, seed: `/ip4/10.0.0.1/tcp/4001/p2p/${ID}` }),
    );
    const c = await readConfig(file);
    expect(c.get('name')).toBe('n1');
    expect(c.get('maxVoters')).toBe('3');
    expect(c.get('seed')).toEqual([`/ip4/10.0.0.1/tcp/4001/p2p/${ID}`]);
  });
  it('refuses an unknown key with the closest one, and wrong types', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ dataDri: '/x' }));
    await expect(readConfig(file)).rejects.toMatchObject({
      exitCode: EXIT.badArgument,
      hint: 'did you mean "dataDir"?',
    });
    await writeFile(file, JSON.stringify({ listen: [1] }));
    await expect(readConfig(file)).rejects.toThrow(/listen is a list of strings/);
    await writeFile(file, '[1]');
    await expect(readConfig(file)).rejects.toThrow(/not a JSON object/);
    await writeFile(file, '{');
    await expect(readConfig(file)).rejects.toThrow(/not JSON/);
    await expect(readConfig(join(dir, 'missing.json'))).rejects.toThrow(/cannot be read/);
  });
  it(`refuses a file larger than CONFIG_BYTES_MAX (${CONFIG_BYTES_MAX} bytes)`, async () => {
    const file = join(dir, 'big.json');
    await writeFile(file, `{"name":"${'x'.repeat(CONFIG_BYTES_MAX)}"}`);
    await expect(readConfig(file)).rejects.toThrow(/CONFIG_BYTES_MAX/);
  });
  it('suggests the closest name', () => {
    expect(closest('lsiten', ['listen', 'seed'])).toBe('listen');
    expect(closest('zzzzzzzz', ['listen', 'seed'])).toBeUndefined();
  });
});

/** `pcr node start ARGS` in process, with a data dir of its own; what it printed and its exit code. */
async function startInProcess(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const io = { out: () => {}, err: (t: string) => void (stderr += t) };
  const dataDir = await mkdtemp(join(dir, 'node-'));
  const code = await main(['node', 'start', '--data-dir', dataDir, ...args], io);
  return { code, stderr };
}

/** `pcr node start`'s options as commander parses ARGS, without running the command. */
function parseStart(args: string[]): StartOpts {
  const cmd = addStartOptions(new Command('start'))
    .exitOverride()
    .configureOutput({ writeErr: () => {} })
    .action(() => {});
  cmd.parse(args, { from: 'user' });
  return cmd.opts<StartOpts>();
}

describe('--heartbeat-interval and --election-timeout', () => {
  it('default to 400 and 1000 ms, and take whole milliseconds', () => {
    expect(parseStart([])).toMatchObject({
      heartbeatInterval: HEARTBEAT_INTERVAL_MS_DEFAULT,
      electionTimeout: ELECTION_TIMEOUT_MS_DEFAULT,
    });
    expect(
      parseStart(['--heartbeat-interval', '100', '--election-timeout', '50000']),
    ).toMatchObject({ heartbeatInterval: 100, electionTimeout: ELECTION_TIMEOUT_MS_MAX });
  });

  it.each([
    [['--heartbeat-interval', 'abc'], /expected whole milliseconds \(e\.g\. 400\), got 'abc'/],
    [['--heartbeat-interval', '400ms'], /expected whole milliseconds/],
    [['--heartbeat-interval', '-50'], /expected whole milliseconds/],
    [['--heartbeat-interval', '0'], /0 ms is shorter than HEARTBEAT_INTERVAL_TICKS_MIN/],
    [
      ['--heartbeat-interval', '120'],
      /120 ms is not a multiple of the Raft tick .*: use 100 or 150/,
    ],
    [
      ['--election-timeout', '1020'],
      /1020 ms is not a multiple of the Raft tick .*: use 1000 or 1050/,
    ],
    [['--election-timeout', '50050'], /50050 ms exceeds ELECTION_TIMEOUT_MS_MAX \(50000 ms\)/],
  ])('refuse %j with the usage exit code (2)', async (args, why) => {
    expect(() => parseStart(args)).toThrow(why);
    const r = await startInProcess(args);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(why);
  });

  it('refuse an election timeout under 2.5 heartbeats, before anything is written (2)', async () => {
    const r = await startInProcess(['--heartbeat-interval', '400', '--election-timeout', '950']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain(
      'pcr: --election-timeout 950 ms must be at least ELECTION_TIMEOUT_HEARTBEATS_MIN 2.5 x --heartbeat-interval 400 ms = 1000 ms',
    );
    // Only the heartbeat given: the default election timeout is checked against it.
    expect((await startInProcess(['--heartbeat-interval', '500'])).stderr).toMatch(
      /--election-timeout 1000 ms must be at least .* 500 ms = 1250 ms/,
    );
    expect(() => checkRaftTiming({ heartbeatInterval: 100, electionTimeout: 250 })).not.toThrow();
  });

  it('are read from the config file (heartbeatInterval, electionTimeout)', async () => {
    const file = join(dir, 'timing.json');
    await writeFile(file, JSON.stringify({ heartbeatInterval: 200, electionTimeout: 450 }));
    const r = await startInProcess(['--config', file]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/--election-timeout 450 ms .* --heartbeat-interval 200 ms = 500 ms/);
  });

  it('the fencing check uses the configured election timeout (exit 11, with what to change)', async () => {
    const r = await startInProcess(['--election-timeout', '2000']);
    expect(r.code).toBe(EXIT.badArgument);
    expect(r.stderr).toMatch(/--node-down-after 10000 ms must exceed .*2 x election timeout 2000/);
    expect(r.stderr).toMatch(/hint: .*--election-timeout/);
  });
});

describe("the Raft timing flags reach the daemon's Raft config", () => {
  const options = (args: string[]) =>
    daemonOptions(parseStart(args), {
      dataDir: dir,
      name: 'n1',
      labels: {},
      logger: pino({ level: 'silent' }),
    });

  it("as ticks of the daemon, its election timeout for placement and fencing, and Raft's own", () => {
    const o = options(['--heartbeat-interval', '200', '--election-timeout', '3000']);
    expect(o).toMatchObject({ tickMs: RAFT_TICK_MS, heartbeatTicks: 4, electionTicks: 60 });
    const timing = daemonRaftTiming(o);
    expect(timing).toMatchObject({ heartbeatIntervalMs: 200, electionTimeoutMs: 3000 });
    // The RaftNode the daemon builds (node/daemon.ts: `...raftNodeTiming(this.timing, fenceAfterMs)`).
    const storage = new DurableStorage();
    bootstrap(storage.mem, ['n1']);
    const node = new RaftNode({
      id: 'n1',
      storage,
      disk: new MemoryDisk(),
      transport: { send: () => {} },
      random: seededRandom(1),
      ...raftNodeTiming(timing, 4000),
    });
    expect(node.rn.raft.heartbeatTimeout).toBe(4);
    expect(node.rn.raft.learnerHeartbeatEvery).toBe(3);
    expect(node.rn.raft.electionTimeout).toBe(60);
  });

  it('unchanged without the flags: DAEMON_DEFAULTS', async () => {
    const { DAEMON_DEFAULTS } = await import('../daemon.ts');
    const o = options([]);
    expect(o).toMatchObject({
      tickMs: DAEMON_DEFAULTS.tickMs,
      heartbeatTicks: DAEMON_DEFAULTS.heartbeatTicks,
      electionTicks: DAEMON_DEFAULTS.electionTicks,
    });
    expect(daemonRaftTiming(o).electionTimeoutMs).toBe(ELECTION_TIMEOUT_MS_DEFAULT);
  });
});
