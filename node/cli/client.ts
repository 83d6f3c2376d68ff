// How `pcr` finds a member, runs requests, and turns the outcome into output (a table for people,
// --json for machines) and a distinct exit code. The local node is reached over its unix socket
// (node/api/local_socket.ts), which loads no libp2p; a member named by --addr or PCR_ADDR (or a
// local node without a socket) over libp2p with the cluster secret (./remote.ts, loaded only then).

import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LocalApiClient } from '../api/local_socket.ts';
import type { ApiRequest, ApiResponse } from '../api/wire.ts';
import { NODE_INFO_FILE } from '../data_dir_files.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './context.ts';

/** Exit codes of `pcr` (docs/operations.md); 0, 1 and 2 are the dispatcher's (context.ts). */
export const EXIT = {
  ok: EXIT_OK,
  /** The request was carried out and the answer is "no" (e.g. a CAS whose expected value differed). */
  failed: EXIT_FAILURE,
  usage: EXIT_USAGE,
  noLeader: 3,
  unreachable: 4,
  unauthorized: 5,
  timeout: 6,
  notFound: 7,
  /** `pcr vm run` / `vm stop`: the VM failed (to start, or while stopping); the reason is printed. */
  vmFailed: 8,
  /** `pcr node start`: an argument names something that cannot be used (file, address, dir). */
  badArgument: 9,
  /** `pcr node start`: the address to listen on is taken by another process. */
  addressInUse: 10,
} as const;

/** The error code --json prints for each exit code (one vocabulary with the exit codes). */
const EXIT_CODE_NAME: Record<number, string> = {
  [EXIT.failed]: 'FAILED',
  [EXIT.usage]: 'USAGE',
  [EXIT.noLeader]: 'NO_LEADER',
  [EXIT.unreachable]: 'UNREACHABLE',
  [EXIT.unauthorized]: 'UNAUTHORIZED',
  [EXIT.timeout]: 'TIMEOUT',
  [EXIT.notFound]: 'NOT_FOUND',
  [EXIT.vmFailed]: 'VM_FAILED',
  [EXIT.badArgument]: 'BAD_ARGUMENT',
  [EXIT.addressInUse]: 'ADDRESS_IN_USE',
};

export function errorCodeName(exitCode: number): string {
  return EXIT_CODE_NAME[exitCode] ?? 'FAILED';
}

/** A user-facing error: one line, an exit code, and what to do next when there is something. */
export class CliError extends Error {
  readonly exitCode: number;
  /** The machine-readable code (--json); by default the name of the exit code. */
  readonly code: string;
  readonly hint: string | undefined;
  constructor(message: string, exitCode: number, extra: { code?: string; hint?: string } = {}) {
    super(message);
    this.exitCode = exitCode;
    this.code = extra.code ?? errorCodeName(exitCode);
    this.hint = extra.hint;
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

/** The two ways to a member: both send one request and resolve to its answer. */
export interface ApiTransport {
  request(req: ApiRequest, timeoutMs: number): Promise<ApiResponse>;
  close(): Promise<void>;
  /** Turns a failure of request() (not an error answer) into a CliError. */
  explain(e: Error, timeoutMs: number): CliError;
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

const CODE_EXIT: Record<string, number> = {
  NO_LEADER: EXIT.noLeader,
  TIMEOUT: EXIT.timeout,
  NOT_FOUND: EXIT.notFound,
  CAS_MISMATCH: EXIT.failed,
  INVALID: EXIT.usage,
  UNAVAILABLE: EXIT.unreachable,
  NOT_LEADER: EXIT.noLeader,
};

const CODE_HINT: Record<string, string> = {
  NO_LEADER:
    'retry in a moment; if it lasts, a majority of voters is down or cut off (pcr members)',
  TIMEOUT: 'the outcome is unknown: check with a read before retrying a write',
  NOT_FOUND: 'list what exists: pcr kv list, pcr vm list, pcr members',
};

/** A connection to one member for several requests (e.g. `vm logs --follow`, `vm run` waiting). */
export interface Connection {
  /** Sends one request and returns the successful answer, or throws a CliError with its code. */
  request(req: ApiRequest): Promise<Record<string, unknown>>;
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
        const hint = CODE_HINT[code];
        throw new CliError(`${code}: ${message}`, CODE_EXIT[code] ?? EXIT.failed, {
          code,
          ...(hint !== undefined ? { hint } : {}),
        });
      }
      return resp as Record<string, unknown>;
    },
    close: () => transport.close().catch(() => {}),
  };
}

/** Sends one request and returns the successful answer, or throws a CliError with the right code. */
export async function call(o: ConnectOptions, req: ApiRequest): Promise<Record<string, unknown>> {
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
