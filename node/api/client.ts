// The client side of /pcr/api/1.0.0: an ephemeral libp2p host (a fresh key, no listening
// address) inside the cluster's private network, dialing one member.

import '../polyfill.ts';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { createHost, type Host } from '../p2p/host.ts';
import { type ApiRequest, type ApiResponse, apiRequest } from './wire.ts';

export class ApiClient {
  private readonly host: Host;
  private readonly addr: Multiaddr;

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
  request(req: ApiRequest, timeoutMs = 10_000): Promise<ApiResponse> {
    return apiRequest(this.host, this.addr, req, timeoutMs);
  }

  async close(): Promise<void> {
    await this.host.stop();
  }
}
