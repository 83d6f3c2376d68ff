// `pcr` to a member over libp2p: an ephemeral host with the cluster secret dials the member named
// by --addr or PCR_ADDR. Loaded only for that path (client.ts), so that commands to the local
// node, over its unix socket, load no libp2p.

import { join } from 'node:path';
import { ApiClient } from '../api/client.ts';
import { CLUSTER_SECRET_FILE, readSecret, SecretError } from '../identity.ts';
import { type ApiTransport, CliError, EXIT } from './exit.ts';

/**
 * Whether the connection protector refused the member's proof of the cluster secret
 * (ProtectorError code WRONG_SECRET), looking through libp2p's wrapped and aggregated errors.
 */
function isWrongSecret(e: unknown, depth = 0): boolean {
  if (typeof e !== 'object' || e === null || depth > 8) return false;
  const x = e as { code?: unknown; cause?: unknown; errors?: unknown };
  if (x.code === 'WRONG_SECRET') return true;
  if (Array.isArray(x.errors) && x.errors.some((y) => isWrongSecret(y, depth + 1))) return true;
  return isWrongSecret(x.cause, depth + 1);
}

async function secretOf(dataDir: string, secretFile: string | undefined): Promise<Uint8Array> {
  const file = secretFile ?? join(dataDir, CLUSTER_SECRET_FILE);
  try {
    return await readSecret(file);
  } catch (e) {
    if (e instanceof SecretError) {
      throw new CliError(e.message, EXIT.unauthorized, {
        hint: `pass --secret-file (a member's ${CLUSTER_SECRET_FILE})`,
      });
    }
    throw e;
  }
}

export async function openRemote(
  addr: string,
  dataDir: string,
  secretFile: string | undefined,
): Promise<ApiTransport> {
  const secret = await secretOf(dataDir, secretFile);
  let client: ApiClient;
  try {
    client = await ApiClient.connect(addr, secret);
  } catch (e) {
    throw new CliError(`bad member address ${addr}: ${(e as Error).message}`, EXIT.usage, {
      hint: 'a member address looks like /ip4/10.0.0.1/tcp/4001/p2p/12D3Koo...',
    });
  }
  return {
    request: (req, timeoutMs) => client.request(req, timeoutMs),
    close: () => client.close(),
    explain: (err, timeoutMs) => {
      const text = `${err.name} ${err.message}`;
      if (isWrongSecret(err)) {
        return new CliError(
          `not authorized by ${addr}: the cluster secret does not match (${err.name})`,
          EXIT.unauthorized,
          { hint: "pass the cluster's secret with --secret-file" },
        );
      }
      if (/abort|timeout|no answer within/i.test(text))
        return new CliError(`no answer from ${addr} within ${timeoutMs / 1000} s`, EXIT.timeout);
      return new CliError(`member unreachable at ${addr}: ${err.message}`, EXIT.unreachable, {
        hint: 'is the node running? check the address with pcr members',
      });
    },
  };
}
