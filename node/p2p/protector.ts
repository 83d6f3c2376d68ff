// The cluster's private network (D11, D15): every connection is encrypted with a key derived from
// the cluster secret before noise runs, so a process without the secret cannot get a single byte
// to a protocol handler. The libp2p `ConnectionProtector` slot, on node:crypto's AES-256-CTR
// instead of @libp2p/pnet's pure-JS XSalsa20 (6x faster here, and it costs on every byte).
//
// Handshake: each side sends `nonce || proof` (16 + 16 bytes, in the clear) and reads the other's.
// The proof, HMAC-SHA256(psk, "pcr/protector/1/proof" || nonce) cut to 16 bytes, only makes a
// wrong secret fail here with a clear error instead of as garbage inside noise; it is not the
// security boundary (a replayed hello passes it and then cannot decrypt or encrypt anything).
// Each direction is then AES-256-CTR with key SHA-256("pcr/protector/1" || psk || sender's nonce)
// and a zero IV: a fresh key per direction per connection, so no keystream is ever reused.
// Confidentiality and "no secret, no connection" come from here; integrity and peer
// authentication from noise inside. Not wire-compatible with @libp2p/pnet (24-byte nonces).

import { createCipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type {
  AbortOptions,
  ConnectionProtector,
  Logger,
  MessageStream,
  MultiaddrConnection,
  StreamMessageEvent,
} from '@libp2p/interface';
import { AbstractMultiaddrConnection, type SendResult } from '@libp2p/utils';
import { parseSecret } from '../identity.ts';

/** Random bytes each side contributes per connection; its direction's key depends on them. */
export const PROTECTOR_NONCE_BYTES = 16;
/** Truncated HMAC proving the sender holds the secret (a clear error for a wrong one). */
export const PROTECTOR_PROOF_BYTES = 16;
/** A peer that has not sent its nonce and proof within this time is dropped. */
export const PROTECTOR_HANDSHAKE_TIMEOUT_MS = 5_000;
/** What each side sends first. @libp2p/pnet sends 24 bytes; the difference is used in errors. */
const HELLO_BYTES = PROTECTOR_NONCE_BYTES + PROTECTOR_PROOF_BYTES;
const PNET_NONCE_BYTES = 24;
/** A 128-bit counter (big-endian over the whole IV): no wrap within any connection's life. */
const CIPHER = 'aes-256-ctr';
const ZERO_IV = Buffer.alloc(16);
const KEY_LABEL = Buffer.from('pcr/protector/1');
const PROOF_LABEL = Buffer.from('pcr/protector/1/proof');

export type ProtectorErrorCode =
  | 'WRONG_SECRET' // the peer's proof does not verify: another cluster, or a pnet node
  | 'HANDSHAKE_TIMEOUT' // no complete hello in time
  | 'HANDSHAKE_CLOSED' // the connection ended during the handshake
  | 'REFLECTED'; // our own nonce came back

export class ProtectorError extends Error {
  override readonly name = 'ProtectorError';
  readonly code: ProtectorErrorCode;
  constructor(code: ProtectorErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export interface ProtectorOptions {
  /** The cluster secret in the swarm-key format (node/identity.ts parseSecret, 95 bytes). */
  readonly psk: Uint8Array;
  /** Default PROTECTOR_HANDSHAKE_TIMEOUT_MS; the upgrader's own signal applies as well. */
  readonly handshakeTimeoutMs?: number;
}

/** The 32-byte key inside a swarm key file (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex). */
export function decodeSwarmKey(psk: Uint8Array): Buffer {
  const lines = Buffer.from(parseSecret(psk, 'the cluster secret')).toString('utf8').split('\n');
  return Buffer.from(lines[2]!, 'hex');
}

/** For libp2p's `connectionProtector` option. */
export function clusterProtector(o: ProtectorOptions): () => ConnectionProtector {
  const key = decodeSwarmKey(o.psk);
  const timeoutMs = o.handshakeTimeoutMs ?? PROTECTOR_HANDSHAKE_TIMEOUT_MS;
  return () => ({
    protect: (connection, options) => protect(connection, key, timeoutMs, options),
  });
}

function proofOf(key: Buffer, nonce: Uint8Array): Buffer {
  return createHmac('sha256', key)
    .update(PROOF_LABEL)
    .update(nonce)
    .digest()
    .subarray(0, PROTECTOR_PROOF_BYTES);
}

function directionKey(key: Buffer, senderNonce: Uint8Array): Buffer {
  return createHash('sha256').update(KEY_LABEL).update(key).update(senderNonce).digest();
}

async function protect(
  connection: MessageStream,
  key: Buffer,
  timeoutMs: number,
  options?: AbortOptions,
): Promise<MessageStream> {
  const maConn = connection as MultiaddrConnection;
  const log = connection.log.newScope('protector');
  const localNonce = randomBytes(PROTECTOR_NONCE_BYTES);
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal =
    options?.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout]);
  try {
    connection.send(Buffer.concat([localNonce, proofOf(key, localNonce)]));
    const hello = await readHello(connection, signal, timeout, timeoutMs);
    const remoteNonce = hello.subarray(0, PROTECTOR_NONCE_BYTES);
    if (localNonce.equals(remoteNonce)) {
      throw new ProtectorError('REFLECTED', 'the peer sent back our own handshake nonce');
    }
    if (!timingSafeEqual(proofOf(key, remoteNonce), hello.subarray(PROTECTOR_NONCE_BYTES))) {
      throw new ProtectorError(
        'WRONG_SECRET',
        `${maConn.remoteAddr?.toString() ?? 'the peer'} does not hold this cluster's secret ` +
          '(its proof of the PSK does not verify; or it runs a pcr from before D15, which used ' +
          '@libp2p/pnet): check its cluster.secret',
      );
    }
    log('handshake done');
    return new ProtectedConnection(
      maConn,
      log,
      directionKey(key, localNonce),
      directionKey(key, remoteNonce),
    );
  } catch (e) {
    maConn.abort(e as Error);
    throw e;
  }
}

/** The peer's hello; bytes after it stay queued on the connection for the next layer. */
function readHello(
  stream: MessageStream,
  signal: AbortSignal,
  timeout: AbortSignal,
  timeoutMs: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (): void => {
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('close', onClose);
      signal.removeEventListener('abort', onAbort);
    };
    const onMessage = (evt: StreamMessageEvent): void => {
      const bytes = evt.data.subarray();
      chunks.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      got += bytes.byteLength;
      if (got < HELLO_BYTES) return;
      done();
      const all = Buffer.concat(chunks);
      if (got > HELLO_BYTES) stream.unshift(all.subarray(HELLO_BYTES));
      resolve(all.subarray(0, HELLO_BYTES));
    };
    const onClose = (): void => {
      done();
      reject(
        new ProtectorError(
          'HANDSHAKE_CLOSED',
          `the connection closed after ${got} of ${HELLO_BYTES} handshake bytes${pnetHint(got)}`,
        ),
      );
    };
    const onAbort = (): void => {
      done();
      const when = timeout.aborted ? `within ${timeoutMs} ms` : 'before the dial was aborted';
      reject(
        new ProtectorError(
          'HANDSHAKE_TIMEOUT',
          `no protector handshake from the peer ${when} (${got} of ${HELLO_BYTES} bytes)` +
            pnetHint(got),
        ),
      );
    };
    if (signal.aborted) return onAbort();
    stream.addEventListener('message', onMessage);
    stream.addEventListener('close', onClose);
    signal.addEventListener('abort', onAbort);
  });
}

function pnetHint(got: number): string {
  return got === PNET_NONCE_BYTES
    ? ': 24 bytes is what @libp2p/pnet sends, so the peer probably runs a pcr from before D15'
    : '';
}

type ByteList = Parameters<AbstractMultiaddrConnection['sendData']>[0];

/** The connection seen by noise: bytes XORed with each direction's keystream, nothing else. */
class ProtectedConnection extends AbstractMultiaddrConnection {
  readonly #inner: MultiaddrConnection;
  readonly #encrypt: ReturnType<typeof createCipheriv>;
  readonly #decrypt: ReturnType<typeof createCipheriv>;

  constructor(inner: MultiaddrConnection, log: Logger, sendKey: Buffer, receiveKey: Buffer) {
    super({ remoteAddr: inner.remoteAddr, direction: inner.direction, log });
    this.#inner = inner;
    this.#encrypt = createCipheriv(CIPHER, sendKey, ZERO_IV);
    this.#decrypt = createCipheriv(CIPHER, receiveKey, ZERO_IV);
    inner.addEventListener('message', (evt) => {
      const data = evt.data;
      if (data instanceof Uint8Array) {
        this.onData(this.#decrypt.update(data));
      } else {
        for (const chunk of data) this.onData(this.#decrypt.update(chunk));
      }
    });
    inner.addEventListener('drain', () => this.onMuxerDrain());
    inner.addEventListener('close', (evt) => {
      if (evt.error == null) this.onTransportClosed();
      else if (evt.local) this.abort(evt.error);
      else this.onRemoteReset();
    });
  }

  sendData(data: ByteList): SendResult {
    // One cipher call and one socket write per batch (noise hands over length + frame pairs).
    const canSendMore = this.#inner.send(this.#encrypt.update(data.subarray()));
    return { sentBytes: data.byteLength, canSendMore };
  }

  async sendClose(options?: AbortOptions): Promise<void> {
    await this.#inner.close(options);
  }

  sendReset(err: Error): void {
    this.#inner.abort(err);
  }

  sendPause(): void {
    this.#inner.pause();
  }

  sendResume(): void {
    this.#inner.resume();
  }
}
