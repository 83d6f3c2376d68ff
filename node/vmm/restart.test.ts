// The restart policy: which exits restart, the exponential backoff and its cap, the attempt limit,
// and the reset after a stable run.

import { describe, expect, it } from 'vitest';
import type { RestartPolicy } from '../state/vm_spec.ts';
import type { ExitReason } from './backend.ts';
import { backoffMs, RESTART_STABLE_MS, restartDecision } from './restart.ts';

const CRASH: ExitReason = { kind: 'crashed', code: 1, detail: 'VMM exited with code 1' };
const KILLED: ExitReason = { kind: 'killed', signal: 'SIGKILL', detail: 'VMM killed by SIGKILL' };
const POWEROFF: ExitReason = { kind: 'guest-poweroff', code: 0, detail: 'the guest powered off' };
const STOPPED: ExitReason = { kind: 'stopped', code: 0, detail: 'stopped by the node' };
const ON_FAILURE: RestartPolicy = {
  policy: 'on-failure',
  maxAttempts: 3,
  backoffInitialMs: 100,
  backoffMaxMs: 1000,
};
const ALWAYS: RestartPolicy = {
  policy: 'always',
  maxAttempts: 0,
  backoffInitialMs: 100,
  backoffMaxMs: 1000,
};

describe('restartDecision', () => {
  it('never restarts with policy never, nor after a stop the node asked for', () => {
    expect(restartDecision({ policy: 'never' }, 0, CRASH, 0)).toEqual({
      restart: false,
      why: 'restart policy never; VMM exited with code 1',
    });
    expect(restartDecision(ALWAYS, 0, STOPPED, 0)).toEqual({
      restart: false,
      why: 'stopped by the node',
    });
  });

  it('on-failure restarts after a crash or a kill, not after a guest power-off', () => {
    expect(restartDecision(ON_FAILURE, 0, CRASH, 0)).toEqual({
      restart: true,
      delayMs: 100,
      attempt: 1,
    });
    expect(restartDecision(ON_FAILURE, 0, KILLED, 0)).toEqual({
      restart: true,
      delayMs: 100,
      attempt: 1,
    });
    expect(restartDecision(ON_FAILURE, 0, POWEROFF, 0)).toMatchObject({ restart: false });
    expect(restartDecision(ALWAYS, 0, POWEROFF, 0)).toMatchObject({ restart: true });
  });

  it('doubles the backoff per attempt up to its maximum, and gives up after maxAttempts', () => {
    expect(
      [1, 2, 3, 4, 5].map((n) =>
        backoffMs(ON_FAILURE as { backoffInitialMs: number; backoffMaxMs: number }, n),
      ),
    ).toEqual([100, 200, 400, 800, 1000]);
    expect(restartDecision(ON_FAILURE, 2, CRASH, 0)).toEqual({
      restart: true,
      delayMs: 400,
      attempt: 3,
    });
    expect(restartDecision(ON_FAILURE, 3, CRASH, 0)).toEqual({
      restart: false,
      why: 'gave up after 3 restarts; last: VMM exited with code 1',
    });
    expect(restartDecision(ALWAYS, 500, CRASH, 0)).toEqual({
      restart: true,
      delayMs: 1000,
      attempt: 501,
    });
    expect(backoffMs({ backoffInitialMs: 1, backoffMaxMs: 5 }, 10_000)).toBe(5);
  });

  it('starts counting again after a run of RESTART_STABLE_MS', () => {
    expect(restartDecision(ON_FAILURE, 3, CRASH, RESTART_STABLE_MS - 1)).toMatchObject({
      restart: false,
    });
    expect(restartDecision(ON_FAILURE, 3, CRASH, RESTART_STABLE_MS)).toEqual({
      restart: true,
      delayMs: 100,
      attempt: 1,
    });
  });
});
