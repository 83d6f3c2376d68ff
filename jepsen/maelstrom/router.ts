// A small stand-in for Maelstrom's network, to test `pcr maelstrom` without the JVM tool: it
// spawns N real node processes, sends each `init`, routes every message between their stdin and
// stdout (with optional latency, reordering included), drops messages between the sides of a
// partition, and lets clients send requests and await their replies. Like Maelstrom, it passes
// messages on untouched, and clients are never partitioned from the nodes (only node-to-node
// links are cut). It does not kill or pause processes (Maelstrom's partition nemesis does not).
// The workload, the nemesis schedule and the check are in harness.ts.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { RandomSource } from '../../consensus/index.ts';
import type { Body } from '../../node/maelstrom/protocol.ts';
import { cryptoRandom } from '../../node/random.ts';

/** bin/pcr of this checkout. */
export const PCR_BIN = fileURLToPath(new URL('../../bin/pcr', import.meta.url));

/** How long init may take (process start-up, with the TypeScript loader, on a loaded machine). */
export const INIT_TIMEOUT_MS = 30_000;
/** How long stop() waits for a node to exit after its stdin closed, before SIGKILL. */
export const STOP_GRACE_MS = 3_000;
/** Lines of each node's stderr kept for diagnostics. */
export const NODE_LOG_LINES_MAX = 200;

export interface RouterOptions {
  readonly nodeCount: number;
  /** The node program and its arguments (default: bin/pcr maelstrom). */
  readonly command?: readonly [string, ...string[]];
  /** Latency of each node-to-node message, drawn uniformly from [min, max] ms (default 0). */
  readonly latencyMs?: { readonly min: number; readonly max: number };
  readonly random?: RandomSource;
  /** Each stderr line of each node, as it comes (default: only kept in `logs`). */
  readonly onNodeLog?: (node: string, line: string) => void;
}

export interface RouterStats {
  /** Node-to-node messages delivered. */
  routed: number;
  /** Node-to-node messages dropped by a partition. */
  dropped: number;
  /** Replies that reached a client request still waiting. */
  replies: number;
  /** Replies to requests that had timed out already (or were never sent). */
  lateReplies: number;
  /** Lines on a node's stdout that are not a Maelstrom message, or to an unknown destination. */
  badOutput: number;
}

export type RequestResult =
  | { readonly ok: true; readonly body: Body; readonly elapsedMs: number }
  | { readonly ok: false; readonly timedOut: true; readonly elapsedMs: number };

interface NodeProcess {
  readonly id: string;
  readonly child: ChildProcessWithoutNullStreams;
  readonly logs: string[];
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;
}

interface Waiting {
  readonly resolve: (r: RequestResult) => void;
  readonly timer: NodeJS.Timeout;
  readonly startedMs: number;
}

export class Router {
  readonly nodeIds: readonly string[];
  readonly stats: RouterStats = { routed: 0, dropped: 0, replies: 0, lateReplies: 0, badOutput: 0 };
  private readonly opts: RouterOptions;
  private readonly random: RandomSource;
  private readonly nodes = new Map<string, NodeProcess>();
  /** Group index of each node while partitioned; empty when the network is whole. */
  private groupOf = new Map<string, number>();
  private readonly waiting = new Map<string, Waiting>();
  private readonly nextMsgId = new Map<string, number>();
  private stopping = false;
  /** Problems worth failing a test over (a node died, wrote garbage). */
  readonly problems: string[] = [];

  private constructor(opts: RouterOptions) {
    this.opts = opts;
    this.random = opts.random ?? cryptoRandom;
    this.nodeIds = Array.from({ length: opts.nodeCount }, (_, i) => `n${i}`);
  }

  /** Spawns the nodes and initializes them; rejects if one does not answer init in time. */
  static async start(opts: RouterOptions): Promise<Router> {
    if (!Number.isSafeInteger(opts.nodeCount) || opts.nodeCount < 1) {
      throw new RangeError(`nodeCount must be a positive integer, got ${opts.nodeCount}`);
    }
    const router = new Router(opts);
    for (const id of router.nodeIds) router.spawnNode(id);
    try {
      const replies = await Promise.all(
        router.nodeIds.map((id) =>
          router.request(
            'c0',
            id,
            { type: 'init', node_id: id, node_ids: [...router.nodeIds] },
            INIT_TIMEOUT_MS,
          ),
        ),
      );
      replies.forEach((r, i) => {
        if (!r.ok || r.body.type !== 'init_ok') {
          const id = router.nodeIds[i]!;
          throw new Error(
            `${id} did not answer init with init_ok: ${r.ok ? JSON.stringify(r.body) : 'timed out'}\n` +
              router.logs(id).slice(-20).join('\n'),
          );
        }
      });
    } catch (e) {
      await router.stop();
      throw e;
    }
    return router;
  }

  private spawnNode(id: string): void {
    const [file, ...args] = this.opts.command ?? [PCR_BIN, 'maelstrom'];
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const logs: string[] = [];
    let resolveExit!: () => void;
    const node: NodeProcess = {
      id,
      child,
      logs,
      exit: undefined,
      exited: new Promise<void>((r) => {
        resolveExit = r;
      }),
    };
    this.nodes.set(id, node);
    child.on('exit', (code, signal) => {
      node.exit = { code, signal };
      if (!this.stopping) this.problems.push(`${id} exited (code ${code}, signal ${signal})`);
      resolveExit();
    });
    child.on('error', (e) => {
      this.problems.push(`${id}: ${e.message}`);
      node.exit ??= { code: null, signal: null };
      resolveExit();
    });
    // A node that died cannot take input; the exit is reported above.
    child.stdin.on('error', () => {});
    createInterface({ input: child.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on(
      'line',
      (line) => this.fromNode(id, line),
    );
    createInterface({ input: child.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on(
      'line',
      (line) => {
        logs.push(line);
        if (logs.length > NODE_LOG_LINES_MAX) logs.shift();
        this.opts.onNodeLog?.(id, line);
      },
    );
  }

  /** The last stderr lines of a node. */
  logs(id: string): readonly string[] {
    return this.nodes.get(id)?.logs ?? [];
  }

  /** Whether a node process is still running. */
  isRunning(id: string): boolean {
    const n = this.nodes.get(id);
    return n !== undefined && n.exit === undefined;
  }

  /**
   * Sends a request from a client (any ID not of a node, e.g. "c1") and resolves with the reply,
   * or with timedOut after timeoutMs (a later reply is counted and ignored).
   */
  request(client: string, node: string, body: Body, timeoutMs: number): Promise<RequestResult> {
    const msgId = (this.nextMsgId.get(client) ?? 0) + 1;
    this.nextMsgId.set(client, msgId);
    const key = `${client}/${msgId}`;
    const startedMs = performance.now();
    return new Promise<RequestResult>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(key);
        resolve({ ok: false, timedOut: true, elapsedMs: performance.now() - startedMs });
      }, timeoutMs);
      this.waiting.set(key, { resolve, timer, startedMs });
      this.writeTo(
        node,
        JSON.stringify({ src: client, dest: node, body: { ...body, msg_id: msgId } }),
      );
    });
  }

  /** Writes a raw line to a node's stdin (tests of malformed input). */
  sendRaw(node: string, line: string): void {
    this.writeTo(node, line);
  }

  /** Cuts the network into these groups: messages between different groups are dropped. */
  partition(groups: readonly (readonly string[])[]): void {
    const groupOf = new Map<string, number>();
    groups.forEach((g, i) => {
      for (const id of g) groupOf.set(id, i);
    });
    this.groupOf = groupOf;
  }

  /** Random halves, as Maelstrom's partition nemesis: a shuffled split into two sides. */
  partitionRandomHalves(): string[][] {
    const ids = [...this.nodeIds];
    for (let i = ids.length - 1; i > 0; i--) {
      const j = this.random.intn(i + 1);
      [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    }
    const half = Math.floor(ids.length / 2);
    const groups = [ids.slice(0, half), ids.slice(half)];
    this.partition(groups);
    return groups;
  }

  heal(): void {
    this.groupOf = new Map();
  }

  /** Closes every node's stdin, waits for them to exit (SIGKILL after STOP_GRACE_MS). */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    for (const [key, w] of this.waiting) {
      this.waiting.delete(key);
      w.resolve({ ok: false, timedOut: true, elapsedMs: performance.now() - w.startedMs });
    }
    await Promise.all(
      [...this.nodes.values()].map(async (n) => {
        if (n.exit !== undefined) return;
        n.child.stdin.end();
        const grace = setTimeout(() => n.child.kill('SIGKILL'), STOP_GRACE_MS);
        await n.exited;
        clearTimeout(grace);
      }),
    );
  }

  private writeTo(node: string, line: string): void {
    const n = this.nodes.get(node);
    if (n === undefined || n.exit !== undefined || n.child.stdin.destroyed) return;
    n.child.stdin.write(`${line}\n`);
  }

  private fromNode(id: string, line: string): void {
    let msg: { src?: unknown; dest?: unknown; body?: Body };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      this.badOutput(`${id} wrote a line that is not JSON: ${line.slice(0, 200)}`);
      return;
    }
    const { src, dest, body } = msg;
    if (src !== id || typeof dest !== 'string' || typeof body !== 'object' || body === null) {
      this.badOutput(
        `${id} wrote a message without src ${id}, dest and body: ${line.slice(0, 200)}`,
      );
      return;
    }
    if (this.nodes.has(dest)) return this.route(id, dest, line);
    const key = `${dest}/${String(body.in_reply_to)}`;
    const w = this.waiting.get(key);
    if (w === undefined) {
      this.stats.lateReplies++;
      return;
    }
    this.waiting.delete(key);
    clearTimeout(w.timer);
    this.stats.replies++;
    w.resolve({ ok: true, body, elapsedMs: performance.now() - w.startedMs });
  }

  private route(from: string, to: string, line: string): void {
    const gFrom = this.groupOf.get(from);
    const gTo = this.groupOf.get(to);
    if (gFrom !== undefined && gTo !== undefined && gFrom !== gTo) {
      this.stats.dropped++;
      return;
    }
    const latency = this.opts.latencyMs;
    if (latency === undefined || latency.max <= 0) {
      this.stats.routed++;
      this.writeTo(to, line);
      return;
    }
    const span = Math.max(0, Math.round(latency.max - latency.min));
    const delayMs = latency.min + (span > 0 ? this.random.intn(span + 1) : 0);
    setTimeout(() => {
      // A partition that started while the message was in flight cuts it too.
      const a = this.groupOf.get(from);
      const b = this.groupOf.get(to);
      if (a !== undefined && b !== undefined && a !== b) {
        this.stats.dropped++;
        return;
      }
      this.stats.routed++;
      this.writeTo(to, line);
    }, delayMs);
  }

  private badOutput(problem: string): void {
    this.stats.badOutput++;
    this.problems.push(problem);
  }
}
