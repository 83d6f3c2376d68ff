// The command line: bad arguments exit 2 with a message that says what is wrong; a run prints its
// replay command, and replaying it gives the same history hash; a sweep summarises.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { EXIT_FINDING, EXIT_OK, EXIT_USAGE, type Io, main } from './cli.ts';

// The planted bug of sim/rollout.test.ts, through the command line: while `planted.on`, the rollout
// runs the CLI starts ignore maxParallel (the product never does; the CLI has no option for it).
const planted = vi.hoisted(() => ({ on: false }));
vi.mock('./rollout-run.ts', async (importOriginal) => {
  const m = await importOriginal<typeof import('./rollout-run.ts')>();
  return {
    ...m,
    runRolloutSimulation: (o: Parameters<typeof m.runRolloutSimulation>[0]) =>
      m.runRolloutSimulation(planted.on ? { ...o, planted: 'ignoreMaxParallel' } : o),
  };
});

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    errIsTty: false,
  };
  const code = await main(argv, io);
  return { code, out, err };
}

describe('sim CLI', () => {
  it.each([
    [['--seeds', '5..1'], /--seeds 5\.\.1: the range is empty/],
    [['--seeds', '1-5'], /expected A\.\.B/],
    [['--nemesis', 'partition,flood'], /unknown kind 'flood'/],
    [['--nodes', '0'], /--nodes 0: expected an integer from 1 to 25/],
    [['--nodes', 'five'], /--nodes five/],
    [['--time', 'forever'], /--time forever: expected a duration/],
    [['--rate', '0'], /--rate 0: expected operations per second/],
    [['--rate=-3'], /--rate -3/],
    [['--clients', '0'], /--clients 0/],
    [['--seed', '1', '--seeds', '1..2'], /not both/],
    [['--nemesis', 'crash', '--nemesis-file', 'x.json'], /not both/],
    [['--nemesis-file', '/nonexistent/schedule.json'], /--nemesis-file \/nonexistent/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['--seeds', '1..3', '--history', 'h.jsonl'], /--history writes one run/],
    [['--nemesis', 'placement,pause'], /placement combines only with partition, crash, not pause/],
    [['--nemesis', 'placement', '--history', 'h.jsonl'], /--history is not written by placement/],
    [['--nemesis', 'rollout,pause'], /rollout combines only with partition, crash, not pause/],
    [['--nemesis', 'rollout,drift,membership'], /not drift, membership/],
    [['--nemesis', 'rollout,placement'], /placement and rollout are two kinds of runs/],
    [['--nemesis', 'rollout', '--history', 'h.jsonl'], /--history is not written by rollout/],
  ])('%j exits 2: %s', async (argv, message) => {
    const r = await run(argv);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toMatch(message);
    expect(r.err).toMatch(/--help/);
    expect(r.out).toBe('');
  });

  it('a malformed nemesis file exits 2 and names the fault', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-cli-'));
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify([{ at: '1s', kind: 'crash', target: 'n9' }]));
    const r = await run(['--nemesis-file', file, '--nodes', '3']);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toMatch(/fault 1: unknown node "n9"/);
  });

  it('a placement run prints its figures and replay command, and replaying it gives the same hash', async () => {
    const r = await run(['--seed', '2', '--time', '15s', '--nemesis', 'placement,crash']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(/placement +\d+ placed/);
    expect(r.out).toMatch(/safety +no violation/);
    expect(r.out).toMatch(/liveness +ok: every instance ran/);
    const replay = /replay +npm run sim -- (.*)/.exec(r.out)![1]!.split(' ');
    const again = await run(replay);
    expect(/hash +(\S+)/.exec(again.out)![1]).toBe(/hash +(\S+)/.exec(r.out)![1]);
    const sweep = await run(['--seeds', '1..2', '--time', '10s', '--nemesis', 'placement']);
    expect(sweep.code).toBe(EXIT_OK);
    expect(sweep.out).toMatch(
      /placement sweep 1\.\.2: 2 runs; 0 with safety violations; 0 not settled/,
    );
  });

  it('a rollout run prints its figures and replay command, and replaying it gives the same hash', async () => {
    const r = await run(['--seed', '2', '--time', '30s', '--nemesis', 'rollout,crash']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(/nemesis crash,rollout/);
    expect(r.out).toMatch(/rollout +\d+ versions submitted \(\d+ broken\), [1-9]\d* steps/);
    expect(r.out).toMatch(/safety +no violation/);
    expect(r.out).toMatch(/liveness +ok: the newest rollout succeeded on a working version/);
    const replay = /replay +npm run sim -- (.*)/.exec(r.out)![1]!.split(' ');
    expect(replay).toContain('30s');
    const again = await run(replay);
    expect(/hash +(\S+)/.exec(again.out)![1]).toBe(/hash +(\S+)/.exec(r.out)![1]);
    const sweep = await run(['--seeds', '1..2', '--time', '20s', '--nemesis', 'rollout']);
    expect(sweep.code).toBe(EXIT_OK);
    expect(sweep.out).toMatch(
      /rollout sweep 1\.\.2: 2 runs; 0 with safety violations; 0 not settled on a working version/,
    );
    expect(sweep.out).toMatch(/\d+ failovers during a step; \d+ failed rollouts reverted/);
  });

  it('a rollout run with a finding exits 1 and names it (steps that ignore maxParallel)', async () => {
    planted.on = true;
    try {
      const r = await run(['--seed', '1', '--nemesis', 'rollout']);
      expect(r.code).toBe(EXIT_FINDING);
      expect(r.out).toMatch(/FINDINGS\n +safety \(rollout-parallel\)/);
    } finally {
      planted.on = false;
    }
  });

  it('--help prints the options and exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(/--seeds A\.\.B/);
  });

  it.each([[['--help']], [['-h']], [['--seed', '3', '--help']]])(
    '%j prints the usage of npm run sim (the one way to run the simulator) and runs nothing',
    async (argv) => {
      const r = await run(argv);
      expect(r.code).toBe(EXIT_OK);
      expect(r.out).toMatch(/^usage: npm run sim -- \[options\]/);
      expect(r.err).toBe('');
    },
  );

  it('a run prints its figures and replay command; replaying it gives the same hash', async () => {
    const first = await run([
      '--seed',
      '12',
      '--time',
      '2s',
      '--nemesis',
      'partition,crash',
      '--clients',
      '4',
      '--rate',
      '50',
    ]);
    expect(first.code).toBe(EXIT_OK);
    for (const label of [
      'ops',
      'latency',
      'checker',
      'safety',
      'liveness',
      'hash',
      'wall',
      'replay',
    ]) {
      expect(first.out).toMatch(new RegExp(`^  ${label} `, 'm'));
    }
    expect(first.out).toMatch(/availability \d+\.\d%/);
    expect(first.out).toMatch(/p50 .* p95 .* p99 /);
    expect(first.out).toMatch(/checker +valid/);
    expect(first.out).toMatch(/x real time/);
    const replay = /replay +npm run sim -- (.*)$/m.exec(first.out)![1]!;
    expect(replay).toBe(
      '--seed 12 --nodes 5 --time 2s --nemesis partition,crash --clients 4 --rate 50',
    );
    const again = await run(replay.split(' '));
    const hash = (out: string) => /hash +sha256:([0-9a-f]{64})/.exec(out)![1];
    expect(hash(again.out)).toBe(hash(first.out));
  });

  it('--json prints one document; --history writes the history as JSON lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-cli-'));
    const file = join(dir, 'history.jsonl');
    const r = await run([
      '--seed',
      '3',
      '--time',
      '1s',
      '--nemesis',
      'none',
      '--json',
      '--history',
      file,
    ]);
    expect(r.code).toBe(EXIT_OK);
    const doc = JSON.parse(r.out);
    expect(doc.check.verdict).toBe('valid');
    expect(doc.replay).toMatch(/--seed 3 /);
    expect(doc.hash).toMatch(/^[0-9a-f]{64}$/);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(10);
    expect(JSON.parse(lines[0]!)).toMatchObject({ type: 'invoke' });
  });

  it('a sweep prints periodic progress (not a TTY) and a summary, and exits 0 when nothing is found', async () => {
    const r = await run([
      '--seeds',
      '1..3',
      '--time',
      '1s',
      '--nemesis',
      'partition,crash,pause,drift',
    ]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.err).toMatch(/3\/3 seeds, 0 failing/);
    expect(r.out).toMatch(
      /sweep 1\.\.3: 3 runs; checker 3 valid, 0 invalid, 0 unknown; 0 with safety violations; 0 not live/,
    );
    expect(r.out).toMatch(/no failing seed/);
  });

  it('a sweep with the membership nemesis summarises joins, promotions, removals and stops', async () => {
    const r = await run(['--seeds', '1..2', '--time', '5s', '--nemesis', 'crash,membership']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(
      /membership \d+ learners added, \d+ promotions, \d+ removals, \d+ stops of removed nodes/,
    );
    const one = await run(['--seed', '2', '--time', '5s', '--nemesis', 'membership']);
    expect(one.out).toMatch(/^ {2}membership 4 joined, .* final voters n\d n\d n\d,/m);
    expect(one.out).toMatch(
      /replay +npm run sim -- --seed 2 --nodes 5 --time 5s --nemesis membership /,
    );
  });

  it('exit codes are distinct', () => {
    expect(new Set([EXIT_OK, EXIT_FINDING, EXIT_USAGE]).size).toBe(3);
  });
});
