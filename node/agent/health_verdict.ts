// The verdict of a VM's health checks, from the last outcome of each check, the run's start and
// the time: pure (no clock but nowMs, no I/O), so the agent's monitor (health.ts), its tests and a
// simulator can share it. And what, given the row's committed verdict, the agent should propose:
// only a change, so a steady state costs no Raft entry. docs/deploy.md has the contract.

import { type HealthCheck, healthCheckLabel } from '../state/health_spec.ts';
import { VM_REASON_BYTES_MAX, type VmHealth } from '../state/vms.ts';

/** The last run of a tcp or http check, or a console check's string seen (`ok`). */
export interface CheckOutcome {
  readonly ok: boolean;
  /** Why it failed, short and stable (`503`, `connection refused`): the row keeps it. */
  readonly message?: string;
  readonly atMs: number;
}

/**
 * The outcome that counts for a tcp or http check after one more run: the run itself once it is
 * the `successThreshold`-th passing run in a row (`failureThreshold`-th failing one), else the
 * outcome that counted before. `streak` is how many runs in a row, this one included, had this
 * run's `ok`. With both thresholds 1 (the default) every run counts.
 */
export function settledOutcome(
  check: HealthCheck,
  counted: CheckOutcome | undefined,
  run: CheckOutcome,
  streak: number,
): CheckOutcome | undefined {
  if ('console' in check) return run;
  const needed = run.ok ? (check.successThreshold ?? 1) : (check.failureThreshold ?? 1);
  return streak >= needed ? run : counted;
}

export type CheckStatus =
  | { readonly kind: 'pass' }
  | { readonly kind: 'pending' }
  | { readonly kind: 'fail'; readonly message: string };

export interface HealthVerdict {
  readonly healthy: boolean;
  /** The failing check as text; when healthy, every check. */
  readonly check: string;
  readonly message?: string;
}

/** `check` of a restarted VM's verdict until its checks pass again. */
export const RESTART_CHECK = 'restart';

/**
 * One check's status. A console check passes once its string was seen, and fails when it was not
 * seen within graceMs of the start. A tcp or http check takes its last outcome; a failure that
 * happened within graceMs of the start does not count (pending until the next run).
 */
export function checkStatus(
  check: HealthCheck,
  last: CheckOutcome | undefined,
  startedAtMs: number,
  nowMs: number,
): CheckStatus {
  if (last?.ok === true) return { kind: 'pass' };
  if ('console' in check) {
    return nowMs - startedAtMs >= check.graceMs
      ? { kind: 'fail', message: `not seen within ${check.graceMs} ms of the start` }
      : { kind: 'pending' };
  }
  if (last === undefined || last.atMs - startedAtMs < check.graceMs) return { kind: 'pending' };
  return { kind: 'fail', message: last.message ?? 'failed' };
}

/**
 * The verdict of all checks: unhealthy as soon as one fails (the first in the spec's order),
 * healthy when every one passes, undefined while any is pending and none fails.
 */
export function verdictOf(
  checks: readonly HealthCheck[],
  outcomes: readonly (CheckOutcome | undefined)[],
  startedAtMs: number,
  nowMs: number,
): HealthVerdict | undefined {
  let pending = false;
  for (const [i, c] of checks.entries()) {
    const s = checkStatus(c, outcomes[i], startedAtMs, nowMs);
    if (s.kind === 'fail')
      return { healthy: false, check: bounded(healthCheckLabel(c)), message: bounded(s.message) };
    if (s.kind === 'pending') pending = true;
  }
  if (pending) return undefined;
  return { healthy: true, check: bounded(checks.map(healthCheckLabel).join(', ')) };
}

/**
 * What to propose for one run of one generation, given the row's committed verdict: the verdict
 * when it differs from the row's; nothing when it is the same, or when there is no verdict yet,
 * except that a row still healthy from before this run started (the VM restarted) is proposed
 * unhealthy until this run's checks pass.
 */
export function healthToPropose(
  row: VmHealth | undefined,
  generation: number,
  verdict: HealthVerdict | undefined,
  startedAtMs: number,
): HealthVerdict | undefined {
  const current = row?.generation === generation ? row : undefined;
  if (verdict === undefined) {
    if (current?.healthy !== true || current.sinceMs >= startedAtMs) return undefined;
    return {
      healthy: false,
      check: RESTART_CHECK,
      message: 'the VM started again; its checks have not passed since',
    };
  }
  if (
    current !== undefined &&
    current.healthy === verdict.healthy &&
    current.check === verdict.check &&
    current.message === verdict.message
  ) {
    return undefined;
  }
  return verdict;
}

/** The row's verdict once `v` is committed at `atMs` (as the state machine applies vm.health). */
export function appliedHealth(
  row: VmHealth | undefined,
  generation: number,
  v: HealthVerdict,
  atMs: number,
): VmHealth {
  const prev = row?.generation === generation ? row : undefined;
  return {
    generation,
    healthy: v.healthy,
    sinceMs: prev?.healthy === v.healthy ? prev.sinceMs : atMs,
    check: v.check,
    ...(v.message !== undefined ? { message: v.message } : {}),
  };
}

/** Text cut to VM_REASON_BYTES_MAX bytes (on a character boundary), as vm.health takes it. */
export function bounded(text: string): string {
  if (Buffer.byteLength(text) <= VM_REASON_BYTES_MAX) return text;
  return Buffer.from(text)
    .subarray(0, VM_REASON_BYTES_MAX)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
}
