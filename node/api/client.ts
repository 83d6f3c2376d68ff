// The client side of the API: an ephemeral libp2p host (a fresh key, no listening address) inside
// the cluster's private network, dialing one member. Requests are pipelined on one session stream
// (/pcr/api-session/1.0.0); a session that failed is replaced on the next request.

import '../polyfill.ts';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { createHost, type Host } from '../p2p/host.ts';
import { API_SESSION_PROTOCOL, ApiSession } from './session.ts';
import { API_STREAMS_PER_CONNECTION_MAX, type ApiRequest, type ApiResponse } from './wire.ts';

export class ApiClient {
  private readonly host: Host;
  private readonly addr: Multiaddr;
  private session: Promise<ApiSession> | undefined;

  private constructor(host: Host, addr: Multiaddr) {
    this.host = host;
    this.addr = addr;
  }

  static async connect(addr: string, secret: Uint8Array): Promise<ApiClient> {
    const host = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      psk: secret,
      listen: [],
    });
    return new ApiClient(host, multiaddr(addr));
  }

  /** One request; rejects when no answer came within timeoutMs (dial and exchange together). */
  async request(req: ApiRequest, timeoutMs = 10_000): Promise<ApiResponse> {
    const deadline = Date.now() + timeoutMs;
    const session = await this.open(timeoutMs);
    return session.request(req, Math.max(1, deadline - Date.now()));
  }

  private open(timeoutMs: number): Promise<ApiSession> {
    const current = this.session;
    if (current !== undefined) {
      return current.then(
        (s) => (s.closed === undefined ? s : this.dial(timeoutMs)),
        () => this.dial(timeoutMs),
      );
    }
    return this.dial(timeoutMs);
  }

  private dial(timeoutMs: number): Promise<ApiSession> {
    const opening = this.host
      .dialProtocol(this.addr, API_SESSION_PROTOCOL, {
        signal: AbortSignal.timeout(timeoutMs),
        maxOutboundStreams: API_STREAMS_PER_CONNECTION_MAX,
      })
      .then((stream) => new ApiSession(stream));
    this.session = opening;
    return opening;
  }

  async close(): Promise<void> {
    const s = await this.session?.catch(() => undefined);
    s?.close();
    await this.host.stop();
  }
}
