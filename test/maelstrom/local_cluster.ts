// In-process Maelstrom nodes wired to each other (no processes, no router): each node's output
// line is parsed and handed to its destination on a later turn of the event loop; lines to
// anyone else are replies for the test's clients. Real timers, short ticks.

import { seededRandom } from '../../consensus/index.ts';
import { MaelstromNode, type MaelstromNodeTimings } from '../../node/maelstrom/node.ts';
import type { Body } from '../../node/maelstrom/protocol.ts';

export interface Sent {
  readonly src: string;
  readonly dest: string;
  readonly body: Body;
}

export class LocalCluster {
  readonly nodes = new Map<string, MaelstromNode>();
  readonly logs: string[] = [];
  /** Every message to a non-node (client replies), in order. */
  readonly toClients: Sent[] = [];
  /** Node pairs whose messages are dropped ("a|b"). */
  readonly cut = new Set<string>();
  private readonly waiters: { match: (m: Sent) => boolean; resolve: (m: Sent) => void }[] = [];
  private msgId = 1000;

  constructor(ids: readonly string[], timings: Partial<MaelstromNodeTimings> = {}) {
    ids.forEach((id, i) => {
      const node = new MaelstromNode({
        tickMs: 5,
        electionTicks: 10,
        heartbeatTicks: 1,
        requestTimeoutMs: 500,
        ...timings,
        random: seededRandom(17 + i),
        log: (text) => this.logs.push(`${id}: ${text}`),
        send: (line) => this.route(line),
      });
      this.nodes.set(id, node);
    });
  }

  node(id: string): MaelstromNode {
    return this.nodes.get(id)!;
  }

  private route(line: string): void {
    const m = JSON.parse(line) as Sent;
    const dest = this.nodes.get(m.dest);
    if (dest !== undefined) {
      if (this.cut.has(`${m.src}|${m.dest}`) || this.cut.has(`${m.dest}|${m.src}`)) return;
      setImmediate(() => dest.handleLine(line));
      return;
    }
    this.toClients.push(m);
    const i = this.waiters.findIndex((w) => w.match(m));
    if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
  }

  /** Sends a line to a node as is. */
  raw(node: string, line: string): void {
    this.node(node).handleLine(line);
  }

  /** Sends a request and resolves with its reply body (or rejects after timeoutMs). */
  request(node: string, body: Record<string, unknown>, timeoutMs = 3_000): Promise<Body> {
    const msgId = this.msgId++;
    const reply = new Promise<Body>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no reply to ${JSON.stringify(body)}`)),
        timeoutMs,
      );
      this.waiters.push({
        match: (m) => m.dest === 'c1' && m.body.in_reply_to === msgId,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m.body);
        },
      });
    });
    this.raw(node, JSON.stringify({ src: 'c1', dest: node, body: { ...body, msg_id: msgId } }));
    return reply;
  }

  /** Initializes every node with the whole membership. */
  async init(): Promise<void> {
    const ids = [...this.nodes.keys()];
    for (const id of ids) {
      const r = await this.request(id, { type: 'init', node_id: id, node_ids: ids });
      if (r.type !== 'init_ok') throw new Error(`init of ${id}: ${JSON.stringify(r)}`);
    }
  }

  /** Retries a request while it is refused with error 11 (no leader yet). */
  async untilServed(
    node: string,
    body: Record<string, unknown>,
    deadlineMs = 5_000,
  ): Promise<Body> {
    const end = Date.now() + deadlineMs;
    for (;;) {
      const r = await this.request(node, body);
      if (!(r.type === 'error' && r.code === 11) || Date.now() > end) return r;
      await new Promise((res) => setTimeout(res, 20));
    }
  }

  stop(): void {
    for (const n of this.nodes.values()) n.stop();
  }
}
