// The watch loop's shell with recorded effects (git, the deployment names, the member): which
// deploys it makes for a sequence of heads, the events it prints, and that it stops when its
// signal fires. The interval is the minimum and each test drives the heads itself; the real git,
// Nix and node are in node/deploy_watch.test.ts.

import { describe, expect, it } from 'vitest';
import { until } from '../../test/until.ts';
import { DeployError, type DeployOutcome } from './flake.ts';
import { runWatch, type WatchEffects, type WatchEvent, watchEventText } from './watch.ts';
import { WATCH_INTERVAL_MS_MIN, type WatchSource } from './watch_decision.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const SOURCE: WatchSource = { gitUrl: 'file:///r', branch: 'main' };

function outcome(version: number, noop = false): DeployOutcome {
  return {
    request: { op: 'deploy.submit', name: 'x', spec: {}, source: {} },
    closure: [],
    imported: 0,
    answer: { ok: true, noop, version },
  };
}

/** Effects driven by the test: `heads` is read once per interval (the last one repeats). */
function harness(o: {
  heads: string[];
  fail?: (ref: string) => boolean;
  names?: string[];
  /** The member cannot be reached for the first N opens. */
  unreachable?: number;
}) {
  const events: WatchEvent[] = [];
  const deploys: string[] = [];
  let reads = 0;
  let opens = 0;
  let version = 0;
  const fx: WatchEffects = {
    lsRemote: async () => {
      const head = o.heads[Math.min(reads, o.heads.length - 1)]!;
      reads++;
      return head === 'git down'
        ? Promise.reject(new Error('fatal: unreachable'))
        : `${head}\trefs/heads/main\n`;
    },
    names: async () => o.names ?? ['web', 'api'],
    openMember: async () => {
      opens++;
      if (opens <= (o.unreachable ?? 0)) throw new Error('UNAVAILABLE: connection refused');
      return {
        deploy: async (ref) => {
          deploys.push(ref);
          if (o.fail?.(ref) === true)
            throw new DeployError('build', 'building failed', 'error: boom');
          return outcome(++version);
        },
        close: async () => {},
      };
    },
    log: (e) => events.push(e),
  };
  return { fx, events, deploys, reads: () => reads, opens: () => opens };
}

async function runFor(h: ReturnType<typeof harness>, readsWanted: number, names?: string[]) {
  const stop = new AbortController();
  const done = runWatch(
    { source: SOURCE, intervalMs: WATCH_INTERVAL_MS_MIN, ...(names ? { names } : {}) },
    h.fx,
    stop.signal,
  );
  await until(() => (h.reads() >= readsWanted ? true : undefined), 30_000, `${readsWanted} reads`);
  stop.abort();
  return done;
}

describe('runWatch', () => {
  it('deploys every deployment of a new head once, pinned to the commit', {
    timeout: 40_000,
  }, async () => {
    const h = harness({ heads: [A, A, B] });
    const memory = await runFor(h, 4);
    expect(h.deploys).toEqual([
      `git+file:///r?ref=main&rev=${A}#web`,
      `git+file:///r?ref=main&rev=${A}#api`,
      `git+file:///r?ref=main&rev=${B}#web`,
      `git+file:///r?ref=main&rev=${B}#api`,
    ]);
    expect(memory).toEqual({ deployed: B, failed: [] });
    expect(h.events.map((e) => e.event)).toEqual([
      'watching',
      'commit',
      'deployed',
      'deployed',
      'done',
      'commit',
      'deployed',
      'deployed',
      'done',
      'stopped',
    ]);
  });

  it('a failure is printed with Nix text, the others still go, and the commit is not tried again', {
    timeout: 40_000,
  }, async () => {
    const h = harness({ heads: [A], fail: (ref) => ref.endsWith('#web') });
    const memory = await runFor(h, 4, ['web', 'api']);
    expect(h.deploys).toEqual([
      `git+file:///r?ref=main&rev=${A}#web`,
      `git+file:///r?ref=main&rev=${A}#api`,
    ]);
    expect(memory).toEqual({ failed: [A] });
    const failed = h.events.find((e) => e.event === 'failed')!;
    expect(watchEventText(failed)).toBe(
      `${A.slice(0, 12)}: web: failed: building failed\n  error: boom`,
    );
    expect(h.events.filter((e) => e.event === 'done')).toEqual([
      { event: 'done', commit: A, outcome: 'failed' },
    ]);
  });

  it('git failing is printed and the next interval reads again', { timeout: 40_000 }, async () => {
    const h = harness({ heads: ['git down', A] });
    const memory = await runFor(h, 3);
    expect(memory.deployed).toBe(A);
    expect(h.events[1]).toEqual({ event: 'git-failed', message: 'fatal: unreachable' });
  });

  it('an unreachable member: the commit is tried again next interval', {
    timeout: 40_000,
  }, async () => {
    const h = harness({ heads: [A], unreachable: 2 });
    const memory = await runFor(h, 4, ['web']);
    expect(memory.deployed).toBe(A);
    expect(h.opens()).toBe(3);
    expect(h.events.filter((e) => e.event === 'unreachable')).toHaveLength(2);
    expect(h.events.filter((e) => e.event === 'commit')).toHaveLength(1);
    expect(h.deploys).toEqual([`git+file:///r?ref=main&rev=${A}#web`]);
  });

  it('stops at once while it waits', { timeout: 10_000 }, async () => {
    const h = harness({ heads: [A] });
    const stop = new AbortController();
    const done = runWatch({ source: SOURCE, intervalMs: 3_600_000 }, h.fx, stop.signal);
    await until(
      () => (h.events.some((e) => e.event === 'done') ? true : undefined),
      5000,
      'a deploy',
    );
    stop.abort();
    await done;
    expect(h.events.at(-1)).toEqual({ event: 'stopped' });
  });
});
