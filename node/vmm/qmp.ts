// A QMP client: QEMU's JSON-lines control protocol on a unix socket. Owns the greeting and
// capabilities negotiation, commands matched to replies by id, asynchronous events, and the rule
// that every pending command fails (VMM_CLOSED) when the socket closes. Nothing QEMU-specific
// beyond the protocol: the qemu backend decides which commands to send.

import { createConnection, type Socket } from 'node:net';
import { VmmError } from './backend.ts';

/** A reply or event line longer than this is a broken peer: the connection is closed. */
export const QMP_LINE_BYTES_MAX = 1024 * 1024;
export const QMP_COMMAND_TIMEOUT_MS = 5000;
export const QMP_CONNECT_TIMEOUT_MS = 5000;

export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
  readonly timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class QmpClient {
  /** The QEMU version from the greeting, e.g. "7.2.22". */
  version = '';
  private readonly socket: Socket;
  private readonly pending = new Map<number, Pending>();
  private readonly eventListeners: ((e: QmpEvent) => void)[] = [];
  private buffer = '';
  private nextId = 1;
  private closedError: VmmError | undefined;
  private greeted: (() => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.fail(new VmmError('VMM_CLOSED', 'the QMP socket closed'));
        resolve();
      });
    });
    socket.on('error', (e) =>
      this.fail(new VmmError('VMM_CLOSED', `QMP socket error: ${e.message}`)),
    );
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs = QMP_CONNECT_TIMEOUT_MS): Promise<QmpClient> {
    const socket = createConnection(path);
    const client = new QmpClient(socket);
    const greeting = new Promise<void>((resolve) => {
      client.greeted = resolve;
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        greeting,
        client.closed.then(() => {
          throw client.closedError ?? new VmmError('VMM_CLOSED', 'QMP closed before its greeting');
        }),
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new VmmError('VMM_API_ERROR', `no QMP greeting on ${path} within ${timeoutMs} ms`),
              ),
            timeoutMs,
          );
        }),
      ]);
      await client.execute('qmp_capabilities');
    } catch (e) {
      client.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  onEvent(listener: (e: QmpEvent) => void): void {
    this.eventListeners.push(listener);
  }

  execute(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = QMP_COMMAND_TIMEOUT_MS,
  ): Promise<unknown> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VmmError('VMM_API_ERROR', `QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > QMP_LINE_BYTES_MAX && !this.buffer.includes('\n')) {
      this.fail(
        new VmmError(
          'VMM_API_ERROR',
          `QMP line above ${QMP_LINE_BYTES_MAX} bytes (QMP_LINE_BYTES_MAX)`,
        ),
      );
      this.socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line !== '') this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // QEMU writes only JSON here; a torn line is not ours to interpret
    }
    if ('QMP' in msg) {
      const v = (
        msg.QMP as { version?: { qemu?: { major: number; minor: number; micro: number } } }
      ).version?.qemu;
      if (v !== undefined) this.version = `${v.major}.${v.minor}.${v.micro}`;
      this.greeted?.();
      return;
    }
    if (typeof msg.event === 'string') {
      for (const l of this.eventListeners) l(msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'number' ? msg.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (p === undefined || id === undefined) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('error' in msg) {
      const err = msg.error as { class?: string; desc?: string };
      p.reject(
        new VmmError('VMM_API_ERROR', `QMP error ${err.class ?? ''}: ${err.desc ?? 'unknown'}`),
      );
    } else p.resolve(msg.return);
  }

  private fail(e: VmmError): void {
    this.closedError ??= e;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(e);
      this.pending.delete(id);
    }
  }
}
