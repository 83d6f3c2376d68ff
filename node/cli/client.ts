// How `pcr` finds a member and the cluster secret, runs one request, and turns the outcome into
// output (a table for people, --json for machines) and a distinct exit code.

import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../api/client.ts';
import type { Request } from '../api/requests.ts';
import type { ApiResponse } from '../api/wire.ts';
import { ERROR_EXIT, ERRORS, isErrorCode } from '../errors.ts';
import { CLUSTER_SECRET_FILE, NODE_INFO_FILE, readSecret, SecretError } from '../identity.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './context.ts';

/** Exit codes of `pcr` (docs/operations.md); 0, 1 and 2 are the dispatcher's (context.ts). */
export const EXIT = {
  ok: EXIT_OK,
  /** The request was carried out and the answer is "no" (e.g. a CAS whose expected value differed). */
  failed: EXIT_FAILURE,
  usage: EXIT_USAGE,
  noLeader: ERROR_EXIT.noLeader,
  unreachable: ERROR_EXIT.unreachable,
  unauthorized: 5,
  timeout: ERROR_EXIT.timeout,
  notFound: ERROR_EXIT.notFound,
  /** `pcr vm run` / `vm stop`: the VM failed (to start, or while stopping); the reason is printed. */
  vmFailed: 8,
  /** Data refused as corrupt or untrusted (a NAR's hash, size or signature); damage remains. */
  corrupt: ERROR_EXIT.corrupt,
  /** `pcr node start`: the cluster removed this node (docs/membership.md); --rejoin starts afresh. */
  removed: ERROR_EXIT.removed,
} as const;

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

export interface ConnectOptions {
  readonly addr?: string;
  readonly dataDir?: string;
  readonly secretFile?: string;
  readonly json?: boolean;
  readonly timeout?: string;
}

export function defaultDataDir(): string {
  return (
    process.env.PCR_DATA_DIR ??
    join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'pcr')
  );
}

async function resolveTarget(o: ConnectOptions): Promise<{ addr: string; secret: Uint8Array }> {
  const dataDir = o.dataDir ?? defaultDataDir();
  let addr = o.addr ?? process.env.PCR_ADDR;
  if (addr === undefined) {
    let info: { addrs?: string[] };
    try {
      info = JSON.parse(await readFile(join(dataDir, NODE_INFO_FILE), 'utf8')) as {
        addrs?: string[];
      };
    } catch {
      throw new CliError(
        `no running node found in ${dataDir}: start one (pcr node start), or point at a member with --addr or PCR_ADDR`,
        EXIT.unreachable,
      );
    }
    addr = info.addrs?.find((a) => a.includes('/127.0.0.1/')) ?? info.addrs?.[0];
    if (addr === undefined)
      throw new CliError(`${join(dataDir, NODE_INFO_FILE)} lists no address`, EXIT.unreachable);
  }
  const secretFile =
    o.secretFile ?? process.env.PCR_SECRET_FILE ?? join(dataDir, CLUSTER_SECRET_FILE);
  try {
    return { addr, secret: await readSecret(secretFile) };
  } catch (e) {
    if (e instanceof SecretError) {
      throw new CliError(
        `${e.message}: pass --secret-file (a member's ${CLUSTER_SECRET_FILE})`,
        EXIT.unauthorized,
      );
    }
    throw e;
  }
}

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

/** A connection to one member for several requests (e.g. `vm logs --follow`, `vm run` waiting). */
export interface Connection {
  /** Sends one request and returns the successful answer, or throws a CliError with its code. */
  request(req: Request): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export async function connect(o: ConnectOptions): Promise<Connection> {
  const { addr, secret } = await resolveTarget(o);
  const timeoutMs = o.timeout !== undefined ? Number(o.timeout) * 1000 : 15_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new CliError('--timeout must be a positive number of seconds', EXIT.usage);
  let client: ApiClient;
  try {
    client = await ApiClient.connect(addr, secret);
  } catch (e) {
    throw new CliError(`bad member address ${addr}: ${(e as Error).message}`, EXIT.usage);
  }
  return {
    request: async (req) => {
      let resp: ApiResponse;
      try {
        resp = await client.request(req, timeoutMs);
      } catch (e) {
        const err = e as Error;
        const text = `${err.name} ${err.message}`;
        if (isWrongSecret(err)) {
          throw new CliError(
            `not authorized by ${addr}: the cluster secret does not match (${err.name})`,
            EXIT.unauthorized,
          );
        }
        if (/abort|timeout|no answer within/i.test(text))
          throw new CliError(`no answer from ${addr} within ${timeoutMs / 1000} s`, EXIT.timeout);
        throw new CliError(
          `member unreachable at ${addr}: ${err.message}; is the node running?`,
          EXIT.unreachable,
        );
      }
      if (!resp.ok) {
        const { code, message } = resp.error;
        // A code this client does not know (a newer member) is a plain failure.
        const kind = isErrorCode(code) ? ERRORS[code] : undefined;
        const hint = kind?.hint;
        throw new CliError(
          `${code}: ${message}${hint !== undefined ? ` (${hint})` : ''}`,
          kind?.exit ?? EXIT.failed,
        );
      }
      return resp as Record<string, unknown>;
    },
    close: () => client.close().catch(() => {}),
  };
}

/** Sends one request and returns the successful answer, or throws a CliError with the right code. */
export async function call(o: ConnectOptions, req: Request): Promise<Record<string, unknown>> {
  const c = await connect(o);
  try {
    return await c.request(req);
  } finally {
    await c.close();
  }
}

/** Prints rows as an aligned table. */
export function table(
  rows: readonly Record<string, unknown>[],
  columns: readonly string[],
): string {
  const cells = rows.map((r) => columns.map((c) => fmt(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (xs: readonly string[]): string =>
    xs
      .map((x, i) => x.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}

function fmt(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (Array.isArray(v)) return v.join(',');
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return String(v);
}

export function print(o: ConnectOptions, value: unknown, human: () => string): void {
  process.stdout.write(`${o.json === true ? JSON.stringify(value) : human()}\n`);
}
