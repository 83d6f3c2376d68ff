// Yamux window updates, sent the way Go's yamux (hashicorp/yamux) sends them. @chainsafe/libp2p-yamux
// 8 answers every data frame it receives with a window update frame, so each small message (a
// Raft heartbeat and its answer, an API request) costs two frames, two encryptions and two socket
// writes instead of one: in an idle cluster, half of what the Raft stream sends are these updates
// (docs/operations.md, "Idle cost"). The yamux spec leaves it to the receiver when to grant credit;
// here a stream grants it once at least half of its receive window is used, as Go's yamux does. The
// sender can then still send at least half a window (128 KiB at the least) without waiting, so bulk
// transfers are not held back. Frames carrying flags (SYN, ACK) and a paused stream go through the
// library's own method unchanged.
//
// This replaces one method of the library's stream class (there is no option for it): the test
// (yamux_window.test.ts) counts window update frames on a real pair of muxers, so a library
// update that renames what this relies on fails there, not silently.

import { YamuxStream } from '@chainsafe/libp2p-yamux/stream';

/** The fields of YamuxStream this relies on (private in its type declarations). */
interface StreamWindow {
  state: number;
  recvWindow: number;
  recvWindowCapacity: number;
}

/** The library's StreamState values this reads (enum StreamState in its stream.js). */
const STATE_INIT = 0;
const STATE_SYN_RECEIVED = 2;
const STATE_PAUSED = 5;

const INSTALLED = Symbol.for('pcr.yamuxHalfWindowUpdates');

/** Installs the half-window rule once per process; later calls do nothing. */
export function installHalfWindowUpdates(): void {
  const proto = YamuxStream.prototype as unknown as Record<PropertyKey, unknown> & {
    sendWindowUpdate: (this: StreamWindow) => void;
  };
  if (proto[INSTALLED] === true) return;
  const original = proto.sendWindowUpdate;
  if (typeof original !== 'function') {
    throw new Error('@chainsafe/libp2p-yamux: YamuxStream.sendWindowUpdate is gone');
  }
  proto.sendWindowUpdate = function sendWindowUpdate(this: StreamWindow): void {
    const flags = this.state === STATE_INIT || this.state === STATE_SYN_RECEIVED;
    const used = this.recvWindow - this.recvWindowCapacity;
    if (!flags && this.state !== STATE_PAUSED && used < this.recvWindow / 2) return;
    original.call(this);
  };
  proto[INSTALLED] = true;
}
