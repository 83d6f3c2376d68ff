// `pcr deploy` without a cluster: argument errors (usage, exit 2, before any member is dialed),
// the texts of status and history from a deployment as the contract shapes it, and how each
// client-side failure becomes an exit code. deploy_cmds.nix.test.ts runs the real Nix and a node.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DeployError } from '../deploy/flake.ts';
import { CliError, EXIT } from './client.ts';
import type { CliIo } from './context.ts';
import { cliErrorOf, historyRows, statusText } from './deploy_cmds.ts';
import { main } from './pcr.ts';

function capture(): CliIo & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    stdout: () => out,
    stderr: () => err,
  };
}

// A data dir without a node: a command that dialed would exit 4 (unreachable), not 2.
const empty = mkdtempSync(join(tmpdir(), 'pcr-deploy-nonode-'));
afterAll(() => rmSync(empty, { recursive: true, force: true }));

describe('pcr deploy: argument errors', () => {
  it('refuses each with the usage exit code before dialing a member', async () => {
    const cases: [string[], RegExp][] = [
      [['deploy'], /needs a REF/],
      [['deploy', 'web'], /expected FLAKE#NAME/],
      [['deploy', '.#Web'], /not a VM name/],
      [['deploy', '.#'], /after #/],
      [['deploy', 'rollback', 'web', '--to', '0'], /expected an integer from 1/],
      [['deploy', 'rollback', 'web', '--to', 'two'], /expected an integer/],
      [['deploy', 'status'], /missing required argument 'name'/],
      [['deploy', 'history'], /missing required argument 'name'/],
      [['deploy', 'promote'], /missing required argument 'name'/],
      [['deploy', 'plan'], /missing required argument 'ref'/],
      [['deploy', 'plan', 'web'], /expected FLAKE#NAME/],
    ];
    for (const [args, why] of cases) {
      const io = capture();
      expect(await main([...args, '--data-dir', empty], io), args.join(' ')).toBe(EXIT.usage);
      expect(io.stderr(), args.join(' ')).toMatch(why);
    }
  });

  it('--json errors are one object on stdout with the code', async () => {
    const io = capture();
    expect(await main(['deploy', 'web', '--json', '--data-dir', empty], io)).toBe(EXIT.usage);
    expect(JSON.parse(io.stdout()).error).toMatchObject({ code: 'USAGE', exitCode: EXIT.usage });
  });

  it('a good REF dials the member first: no node is unreachable (4), nothing evaluated', async () => {
    const io = capture();
    expect(await main(['deploy', '.#web', '--data-dir', empty], io)).toBe(EXIT.unreachable);
    expect(io.stderr()).not.toMatch(/evaluating/);
  });
});

describe('how a failed step exits', () => {
  it('maps each kind to its code; a push keeps the member error code', () => {
    const of = (e: DeployError) => {
      const c = cliErrorOf(e);
      return [c.exitCode, c.code];
    };
    expect(of(new DeployError('ref', 'm'))).toEqual([EXIT.usage, 'USAGE']);
    expect(of(new DeployError('invalid', 'm'))).toEqual([EXIT.usage, 'SPEC_INVALID']);
    expect(of(new DeployError('missing', 'm'))).toEqual([EXIT.notFound, 'NOT_FOUND']);
    expect(of(new DeployError('eval', 'm', 'error: boom'))).toEqual([EXIT.failed, 'EVAL_FAILED']);
    expect(of(new DeployError('build', 'm', 'x'))).toEqual([EXIT.failed, 'BUILD_FAILED']);
    const member = new CliError('NO_LEADER: no leader', EXIT.noLeader, { code: 'NO_LEADER' });
    expect(of(new DeployError('push', 'm', '', member))).toEqual([EXIT.noLeader, 'NO_LEADER']);
    expect(of(new DeployError('push', 'm', '', new Error('x')))).toEqual([EXIT.failed, 'FAILED']);
    expect(cliErrorOf(new DeployError('eval', 'evaluating failed', 'error: boom')).message).toBe(
      'evaluating failed:\nerror: boom',
    );
  });
});

const runner = (h: string) => `/nix/store/${h.repeat(32)}-microvm-run-web`;
const deployment = {
  name: 'web',
  versions: [
    {
      n: 1,
      spec: { runner: runner('a') },
      source: { flake: 'git+file:///src?rev=1', commit: '1111111111111111', atMs: 0 },
    },
    {
      n: 2,
      spec: { runner: runner('b') },
      source: { flake: 'git+file:///src?rev=2', commit: '2222222222222222', atMs: 60_000 },
    },
    { n: 3, spec: { runner: runner('a') }, source: { revertOf: 2, atMs: 120_000 } },
  ],
  knownGood: 1,
  rollout: { from: 2, to: 3, state: 'running', startedAtMs: 120_000 },
};

describe('status and history texts', () => {
  it('status: the newest version, the known-good one, the rollout, the source', () => {
    expect(statusText(deployment).split('\n')).toEqual([
      'deployment   web',
      'version      3 (3 versions kept)',
      'known good   1',
      'rollout      version 2 -> 3: running',
      'started      1970-01-01 00:02:00',
      'source       revert of version 2',
    ]);
    const paused = { ...deployment, rollout: { to: 1, state: 'paused', startedAtMs: 0 } };
    expect(statusText(paused)).toContain('pcr deploy promote web continues it');
  });

  it('history: newest first, the rollout state on its target, the known-good mark', () => {
    expect(historyRows(deployment)).toEqual([
      {
        version: 3,
        state: 'running',
        runner: 'microvm-run-web',
        source: 'revert of version 2',
        submitted: '1970-01-01 00:02:00',
      },
      {
        version: 2,
        state: '-',
        runner: 'microvm-run-web',
        source: 'git+file:///src @ 222222222222',
        submitted: '1970-01-01 00:01:00',
      },
      {
        version: 1,
        state: 'known-good',
        runner: 'microvm-run-web',
        source: 'git+file:///src @ 111111111111',
        submitted: '1970-01-01 00:00:00',
      },
    ]);
  });
});
