// The pure decisions of `pcr deploy watch`: what to do given the last deployed commit, the failed
// ones and the head; the head from `git ls-remote`; the repository and branch checks; the pinned
// flake reference; and the interval's bounds as the CLI parses them.

import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { durationOption } from '../cli/context.ts';
import { DEPLOY_REF_BYTES_MAX } from './flake.ts';
import {
  headOfLsRemote,
  pinnedFlake,
  remember,
  WATCH_BRANCH_BYTES_MAX,
  WATCH_FAILED_COMMITS_MAX,
  WATCH_INTERVAL_MS_MAX,
  WATCH_INTERVAL_MS_MIN,
  WATCH_URL_BYTES_MAX,
  type WatchMemory,
  watchAction,
  watchSource,
} from './watch_decision.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);
const commit = (i: number) => i.toString(16).padStart(40, '0');

describe('watchAction and remember', () => {
  it('deploys a head never seen, at start too (a re-submission is a no-op on the member)', () => {
    expect(watchAction({ failed: [] }, A)).toEqual({ kind: 'deploy', commit: A });
  });

  it('is idle on the deployed head and deploys the next commit', () => {
    const m = remember({ failed: [] }, A, 'deployed');
    expect(watchAction(m, A)).toEqual({ kind: 'idle', why: 'deployed' });
    expect(watchAction(m, B)).toEqual({ kind: 'deploy', commit: B });
  });

  it('does not try a failed commit again; a new commit is tried, and the failed one after it', () => {
    let m: WatchMemory = remember({ failed: [] }, A, 'deployed');
    m = remember(m, B, 'failed');
    expect(m.deployed).toBe(A);
    expect(watchAction(m, B)).toEqual({ kind: 'idle', why: 'failed-before' });
    expect(watchAction(m, C)).toEqual({ kind: 'deploy', commit: C });
    m = remember(m, C, 'deployed');
    // The branch reset to the failed commit: still not tried again.
    expect(watchAction(m, B)).toEqual({ kind: 'idle', why: 'failed-before' });
  });

  it('tries an unreachable member again next interval (nothing of the commit was tried)', () => {
    const m = remember({ failed: [] }, A, 'unreachable');
    expect(m).toEqual({ failed: [] });
    expect(watchAction(m, A)).toEqual({ kind: 'deploy', commit: A });
  });

  it('remembers at most WATCH_FAILED_COMMITS_MAX failed commits, dropping the oldest', () => {
    let m: WatchMemory = { failed: [] };
    for (let i = 1; i <= WATCH_FAILED_COMMITS_MAX; i++) m = remember(m, commit(i), 'failed');
    expect(m.failed).toHaveLength(WATCH_FAILED_COMMITS_MAX);
    expect(watchAction(m, commit(1)).kind).toBe('idle');
    m = remember(m, commit(WATCH_FAILED_COMMITS_MAX + 1), 'failed');
    expect(m.failed).toHaveLength(WATCH_FAILED_COMMITS_MAX);
    expect(watchAction(m, commit(1))).toEqual({ kind: 'deploy', commit: commit(1) });
    expect(watchAction(m, commit(2)).kind).toBe('idle');
  });

  it('a commit that deploys after failing (a restart of watch, a fixed member) leaves the list', () => {
    const m = remember(remember({ failed: [] }, A, 'failed'), A, 'deployed');
    expect(m).toEqual({ deployed: A, failed: [] });
  });
});

describe('headOfLsRemote', () => {
  it('finds refs/heads/BRANCH and nothing else', () => {
    const out = `${A}\trefs/heads/main-old\n${B}\trefs/heads/main\n${C}\trefs/tags/main\n`;
    expect(headOfLsRemote(out, 'main')).toBe(B);
    expect(headOfLsRemote(out, 'dev')).toBeUndefined();
    expect(headOfLsRemote('', 'main')).toBeUndefined();
    expect(headOfLsRemote(`${'d'.repeat(64)}\trefs/heads/main`, 'main')).toBe('d'.repeat(64));
    expect(headOfLsRemote(`xyz\trefs/heads/main`, 'main')).toBeUndefined();
  });
});

describe('watchSource and pinnedFlake', () => {
  it('takes git URLs and absolute paths, and pins the flake to the commit', () => {
    const s = watchSource('/srv/repo', 'main');
    expect(s).toEqual({ gitUrl: 'file:///srv/repo', branch: 'main' });
    expect(pinnedFlake(s as never, A)).toBe(`git+file:///srv/repo?ref=main&rev=${A}`);
    expect(watchSource('https://git.example.org/o/r.git', 'release/1.2')).toEqual({
      gitUrl: 'https://git.example.org/o/r.git',
      branch: 'release/1.2',
    });
    expect(() => pinnedFlake(s as never, 'abc')).toThrow(/full commit/);
  });

  it('refuses what Nix or git would not take, saying why', () => {
    expect(watchSource('git@host:o/r.git', 'main')).toMatch(/not a URL/);
    expect(watchSource('ftp://host/r', 'main')).toMatch(/scheme ftp:/);
    expect(watchSource('https://h/r?ref=x', 'main')).toMatch(/query or fragment/);
    for (const b of ['', '-x', 'a..b', 'a/', '.a', 'a/.b', 'a.lock', 'a b', 'a&b', 'a//b']) {
      expect(watchSource('/r', b), b).toMatch(/^--branch/);
    }
  });

  it('bounds the URL and the branch at their edges (the pinned ref stays under DEPLOY_REF_BYTES_MAX)', () => {
    const url = `file:///${'u'.repeat(WATCH_URL_BYTES_MAX - 8)}`;
    expect(Buffer.byteLength(url)).toBe(WATCH_URL_BYTES_MAX);
    expect(typeof watchSource(url, 'main')).toBe('object');
    expect(watchSource(`${url}u`, 'main')).toMatch(/WATCH_URL_BYTES_MAX/);
    const branch = 'b'.repeat(WATCH_BRANCH_BYTES_MAX);
    const s = watchSource(url, branch);
    expect(typeof s).toBe('object');
    expect(watchSource(url, `${branch}b`)).toMatch(/WATCH_BRANCH_BYTES_MAX/);
    const ref = `${pinnedFlake(s as never, 'd'.repeat(64))}#procurator.deployments.${'n'.repeat(63)}`;
    expect(Buffer.byteLength(ref)).toBeLessThanOrEqual(DEPLOY_REF_BYTES_MAX);
  });

  it('--interval is bounded by WATCH_INTERVAL_MS_MIN and WATCH_INTERVAL_MS_MAX', () => {
    const parse = durationOption(WATCH_INTERVAL_MS_MIN, WATCH_INTERVAL_MS_MAX);
    expect(parse('1s')).toBe(WATCH_INTERVAL_MS_MIN);
    expect(() => parse('999ms')).toThrow(InvalidArgumentError);
    expect(parse('24h')).toBe(WATCH_INTERVAL_MS_MAX);
    expect(() => parse('86401s')).toThrow(InvalidArgumentError);
    expect(parse('60s')).toBe(60_000);
  });
});
