// One live process per node identity. A data dir copied while its node runs holds the same peer
// key, hence the same peer ID and Raft ID: two such processes would both vote as one member and
// break Raft's safety. Each process draws a random instance nonce at start and answers it on
// /pcr/instance/1.0.0. Before a node takes part in Raft it asks the members it can reach to look
// at their *other* connections to its peer ID: one that answers a different nonce is another live
// process with this identity, and the node refuses to start (docs/protocols.md).

import { randomBytes } from 'node:crypto';
import type { Connection, Libp2p } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { varintLength } from './length_prefix.ts';

export const INSTANCE_PROTOCOL = '/pcr/instance/1.0.0';
/** An instance nonce is 16 random bytes, hex. */
export const INSTANCE_NONCE_BYTES = 16;
/** How long a member waits for another connection of the same peer to name its nonce. */
export const INSTANCE_ASK_TIMEOUT_MS = 1500;
/**
 * How long a starting node waits for the members' answers (dial, their asks, the reply): above
 * INSTANCE_ASK_TIMEOUT_MS, and short, since it delays every start while members are down.
 */
export const INSTANCE_CHECK_TIMEOUT_MS = 3000;

export function newInstanceNonce(): string {
  return randomBytes(INSTANCE_NONCE_BYTES).toString('hex');
}

export function isInstanceNonce(x: unknown): x is string {
  return typeof x === 'string' && /^[0-9a-f]+$/.test(x) && x.length === 2 * INSTANCE_NONCE_BYTES;
}

export class DuplicateInstanceError extends Error {
  readonly code = 'DUPLICATE_INSTANCE';
}

/** Answers this process's nonce to whoever asks (members checking a newcomer with our ID). */
export async function serveInstance(host: Libp2p, nonce: string): Promise<void> {
  await host.handle(INSTANCE_PROTOCOL, (stream) => {
    const lp = lpStream(stream, { maxDataLength: 64, lengthDecoder: varintLength });
    lp.write(new TextEncoder().encode(nonce))
      .then(() => stream.close())
      .catch((e: Error) => stream.abort(e));
  });
}

/**
 * The nonce of the process at the other end of `connection`, or undefined when it does not
 * answer in time (a connection to a process that died: not evidence of a duplicate).
 */
export async function askInstance(
  connection: Connection,
  timeoutMs = INSTANCE_ASK_TIMEOUT_MS,
): Promise<string | undefined> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const stream = await connection.newStream(INSTANCE_PROTOCOL, { signal });
    const lp = lpStream(stream, { maxDataLength: 64, lengthDecoder: varintLength });
    const nonce = new TextDecoder().decode((await lp.read({ signal })).subarray());
    await stream.close().catch(() => {});
    return isInstanceNonce(nonce) ? nonce : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A member's side of `instance.check`: among its open connections to the asker's peer, other
 * than the one the question came on, is there one whose process names a different nonce?
 * Returns that connection's remote address, or undefined.
 */
export async function findOtherInstance(
  host: Libp2p,
  asking: Connection,
  nonce: string,
): Promise<string | undefined> {
  const others = host
    .getConnections(asking.remotePeer)
    .filter((c) => c.id !== asking.id && c.status === 'open');
  const answers = await Promise.all(others.map(async (c) => [c, await askInstance(c)] as const));
  for (const [c, theirs] of answers) {
    if (theirs !== undefined && theirs !== nonce) return c.remoteAddr.toString();
  }
  return undefined;
}
