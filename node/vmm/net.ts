// Tap devices for `network.mode = 'tap'`: created with `ip tuntap` before the VMM starts, put on
// the operator's bridge, removed when the VM ends. Needs root (CAP_NET_ADMIN). The bridge itself is
// never created or removed here: it is the operator's.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { VmmError } from './backend.ts';

const exec = promisify(execFile);
/** A tap is named after the VM's name hash: `pcr` + 10 hex digits, within IFNAMSIZ. */
export const TAP_PREFIX = 'pcr';

export function tapName(vmName: string): string {
  return TAP_PREFIX + createHash('sha256').update(vmName).digest('hex').slice(0, 10);
}

async function ip(args: readonly string[]): Promise<void> {
  try {
    await exec('ip', args as string[], { timeout: 10_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new VmmError(
      'VMM_NETWORK_FAILED',
      `ip ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`,
    );
  }
}

export async function linkExists(name: string): Promise<boolean> {
  try {
    await exec('ip', ['link', 'show', 'dev', name], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Creates `tap` on `bridge` and brings it up. A leftover tap of the same name is replaced. */
export async function createTap(tap: string, bridge: string): Promise<void> {
  if (!(await linkExists(bridge))) {
    throw new VmmError(
      'VMM_NETWORK_FAILED',
      `bridge ${bridge} does not exist on this node (create it, e.g. ip link add ${bridge} type bridge)`,
    );
  }
  if (await linkExists(tap)) await deleteTap(tap);
  await ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  try {
    await ip(['link', 'set', 'dev', tap, 'master', bridge]);
    await ip(['link', 'set', 'dev', tap, 'up']);
  } catch (e) {
    await deleteTap(tap).catch(() => undefined);
    throw e;
  }
}

/** Removes `tap`; absent is fine (clean-up is idempotent). */
export async function deleteTap(tap: string): Promise<void> {
  if (!(await linkExists(tap))) return;
  await ip(['link', 'delete', 'dev', tap]);
}
