// The restart policy as a pure function: given the spec's policy, how many restarts in a row were
// made, how the VMM ended and how long it ran, restart (after which delay) or give up. The
// supervisor applies it; docs/vm-spec.md states the rules.

import type { RestartPolicy } from '../state/vm_spec.ts';
import type { ExitReason } from './backend.ts';

/** A VM that ran this long before it ended counts as healthy: its restart counter starts over. */
export const RESTART_STABLE_MS = 60_000;

export type RestartDecision =
  | { readonly restart: true; readonly delayMs: number; readonly attempt: number }
  | { readonly restart: false; readonly why: string };

/** Exits that mean the VM was fine: a guest power-off or a stop the node asked for. */
export function isCleanExit(exit: ExitReason): boolean {
  return exit.kind === 'guest-poweroff' || exit.kind === 'stopped';
}

export function restartDecision(
  policy: RestartPolicy,
  attemptsSoFar: number,
  exit: ExitReason,
  ranForMs: number,
): RestartDecision {
  if (exit.kind === 'stopped') return { restart: false, why: 'stopped by the node' };
  if (policy.policy === 'never')
    return { restart: false, why: `restart policy never; ${exit.detail}` };
  if (policy.policy === 'on-failure' && isCleanExit(exit)) {
    return { restart: false, why: `restart policy on-failure and ${exit.detail}` };
  }
  const attempts = ranForMs >= RESTART_STABLE_MS ? 0 : attemptsSoFar;
  if (policy.maxAttempts !== 0 && attempts >= policy.maxAttempts) {
    return { restart: false, why: `gave up after ${attempts} restarts; last: ${exit.detail}` };
  }
  return { restart: true, delayMs: backoffMs(policy, attempts + 1), attempt: attempts + 1 };
}

/** min(initial * 2^(n-1), max) for the n-th restart in a row (n >= 1). */
export function backoffMs(
  policy: { readonly backoffInitialMs: number; readonly backoffMaxMs: number },
  n: number,
): number {
  // 2^n overflows nothing below 2^1023; the min caps it long before that matters.
  return Math.min(policy.backoffInitialMs * 2 ** Math.min(n - 1, 1000), policy.backoffMaxMs);
}
