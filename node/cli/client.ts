// How `pcr` finds a member, runs requests, and turns the outcome into output (a table for people,
// --json for machines) and a distinct exit code. The local node is reached over its unix socket
// (node/api/local_socket.ts), which loads no libp2p; a member named by --addr or PCR_ADDR (or a
// local node without a socket) over libp2p with the cluster secret (./remote.ts, loaded only then).

import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LocalApiClient } from '../api/local_socket.ts';
import type { Request } from '../api/requests.ts';
import type { ApiResponse } from '../api/wire.ts';
import { NODE_INFO_FILE } from '../data_dir_files.ts';
import { ERRORS, isErrorCode } from '../errors.ts';
import { type ApiTransport, CliError, EXIT } from './exit.ts';

export { type ApiTransport, CliError, EXIT, errorCodeName } from './exit.ts';

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

/** What node.json of a running node says (node/daemon.ts writes it). */
export interface NodeInfo {
  readonly id?: string;
  readonly addrs?: string[];
  readonly socket?: string;
  readonly pid?: number;
}

export async function readNodeInfo(dataDir: string): Promise<NodeInfo> {
  try {
    return JSON.parse(await readFile(join(dataDir, NODE_INFO_FILE), 'utf8')) as NodeInfo;
  } catch {
    throw new CliError(`no running node found in ${dataDir}`, EXIT.unreachable, {
      hint: 'start one (pcr node start), or point at a member with --addr or PCR_ADDR',
    });
  }
}

async function openLocal(dataDir: string, socket: string): Promise<ApiTransport> {
  let client: LocalApiClient;
  try {
    client = await LocalApiClient.connect(socket);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES') {
      throw new CliError(`not allowed to open ${socket}`, EXIT.unauthorized, {
        hint: 'run pcr as the user that runs the node, or use --addr and --secret-file',
      });
    }
    throw new CliError(
      `the node of ${dataDir} is not running (${code ?? 'no socket'})`,
      EXIT.unreachable,
      {
        hint: `start it: pcr node start --data-dir ${dataDir}`,
      },
    );
  }
  return {
    request: (req, timeoutMs) => client.request(req, timeoutMs),
    close: () => client.close(),
    explain: (e, timeoutMs) =>
      /no answer within/.test(e.message)
        ? new CliError(`no answer from the local node within ${timeoutMs / 1000} s`, EXIT.timeout)
        : new CliError(`the local node dropped the request: ${e.message}`, EXIT.unreachable, {
            hint: 'is the node still running? see its log',
          }),
  };
}

async function openTransport(o: ConnectOptions): Promise<ApiTransport> {
  const dataDir = o.dataDir ?? defaultDataDir();
  let addr = o.addr ?? process.env.PCR_ADDR;
  if (addr === undefined) {
    const info = await readNodeInfo(dataDir);
    if (typeof info.socket === 'string') return openLocal(dataDir, info.socket);
    addr = info.addrs?.find((a) => a.includes('/127.0.0.1/')) ?? info.addrs?.[0];
    if (addr === undefined)
      throw new CliError(`${join(dataDir, NODE_INFO_FILE)} lists no address`, EXIT.unreachable);
  }
  const { openRemote } = await import('./remote.ts');
  return openRemote(addr, dataDir, o.secretFile ?? process.env.PCR_SECRET_FILE);
}

/** A connection to one member for several requests (e.g. `vm logs --follow`, `vm run` waiting). */
export interface Connection {
  /** Sends one request and returns the successful answer, or throws a CliError with its code. */
  request(req: Request): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export function timeoutMsOf(o: ConnectOptions): number {
  const timeoutMs = o.timeout !== undefined ? Number(o.timeout) * 1000 : 15_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new CliError('--timeout must be a positive number of seconds', EXIT.usage);
  return timeoutMs;
}

export async function connect(o: ConnectOptions): Promise<Connection> {
  const timeoutMs = timeoutMsOf(o);
  const transport = await openTransport(o);
  return {
    request: async (req) => {
      let resp: ApiResponse;
      try {
        resp = await transport.request(req, timeoutMs);
      } catch (e) {
        throw transport.explain(e as Error, timeoutMs);
      }
      if (!resp.ok) {
        const { code, message } = resp.error;
        // A code this client does not know (a newer member) is a plain failure.
        const kind = isErrorCode(code) ? ERRORS[code] : undefined;
        throw new CliError(`${code}: ${message}`, kind?.exit ?? EXIT.failed, {
          code,
          ...(kind?.hint !== undefined ? { hint: kind.hint } : {}),
        });
      }
      return resp as Record<string, unknown>;
    },
    close: () => transport.close().catch(() => {}),
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
