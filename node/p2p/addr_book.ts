// The address book: what a node remembers across restarts about where it and its members listen,
// so that a whole cluster restarted at once (a power cut, `systemctl restart` everywhere) finds
// itself again without a person re-seeding it (docs/operations.md, "What survives what").
//
// - `listen`: the addresses this node was bound to last time. A listen address with port 0 (the
//   default: "any port") is bound to the port it got last time, when that port is free; so members
//   find the node where the replicated member table says it is.
// - `peers`: every member's addresses as last seen in the member table, and the seeds given at any
//   start: when a member restarted elsewhere, the others still have more to try than the table's
//   newest (possibly stale) entry. Bounded: PEERS_MAX peers, ADDRS_PER_PEER_MAX addresses each.
//
// The file is replaced whole (node/atomic_file.ts, not synced) and only when it changed. A missing
// or unreadable book is an empty one: it is a cache of hints, never a source of truth.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic_file.ts';

export const ADDR_BOOK_FILE = 'addresses.json';
/** Peers remembered at most (the most recently seen are kept). */
export const ADDR_BOOK_PEERS_MAX = 256;
/** Addresses remembered per peer (the most recent first). */
export const ADDR_BOOK_ADDRS_PER_PEER_MAX = 16;

export interface AddrBookData {
  readonly listen: readonly string[];
  /** Peer ID -> addresses, most recent first. */
  readonly peers: Readonly<Record<string, readonly string[]>>;
  /** Peer IDs, least recently changed first (eviction order). */
  readonly order: readonly string[];
  /**
   * Ports this node's HTTP listeners got when asked for port 0 (`cache`, `metrics`), reused at
   * the next start: a Nix `substituters` line or a Prometheus target keeps working across restarts.
   */
  readonly ports?: Readonly<Record<string, number>>;
}

/** The HTTP listeners whose ports the book keeps. */
export type StickyPort = 'cache' | 'metrics';

export const EMPTY_BOOK: AddrBookData = { listen: [], peers: {}, order: [] };

/** A TCP listen address, optionally naming the peer (`/p2p/<id>`, which is ignored here). */
const TCP_ADDR = /^\/(ip4|ip6|dns4|dns6|dns)\/([^/]+)\/tcp\/(\d+)(?:\/p2p\/[^/]+)?$/;

/**
 * The addresses to listen on: each `/…/HOST/tcp/0` becomes the port this node had last time on the
 * same host, if it had one. Explicit ports are kept as given.
 */
export function stickyListen(listen: readonly string[], previous: readonly string[]): string[] {
  const lastPort = new Map<string, string>();
  for (const a of previous) {
    const m = TCP_ADDR.exec(a);
    if (m !== null && m[3] !== '0') lastPort.set(`${m[1]}/${m[2]}`, m[3]!);
  }
  return listen.map((a) => {
    const m = TCP_ADDR.exec(a);
    if (m === null || m[3] !== '0') return a;
    const port = lastPort.get(`${m[1]}/${m[2]}`);
    return port === undefined ? a : `/${m[1]}/${m[2]}/tcp/${port}`;
  });
}

/**
 * The book with `addrs` as the newest addresses of `id` (bounded). Addresses it already has in that
 * order give the same book, whatever the recency order: the daemon remembers every member every
 * 300 ms, and moving each to the end in turn would make every call a change (a write).
 */
export function remember(book: AddrBookData, id: string, addrs: readonly string[]): AddrBookData {
  if (addrs.length === 0) return book;
  const old = book.peers[id] ?? [];
  const merged = [...new Set([...addrs, ...old])].slice(0, ADDR_BOOK_ADDRS_PER_PEER_MAX);
  if (merged.length === old.length && merged.every((a, i) => a === old[i])) return book;
  const order = [...book.order.filter((x) => x !== id), id];
  const peers: Record<string, readonly string[]> = { ...book.peers, [id]: merged };
  while (order.length > ADDR_BOOK_PEERS_MAX) delete peers[order.shift()!];
  return { ...book, peers, order };
}

/** Reads the book; an absent or unreadable file is an empty book. */
export function loadAddrBook(dataDir: string): AddrBookData {
  try {
    const raw = JSON.parse(readFileSync(join(dataDir, ADDR_BOOK_FILE), 'utf8')) as unknown;
    return parseBook(raw) ?? EMPTY_BOOK;
  } catch {
    return EMPTY_BOOK;
  }
}

function isStrings(x: unknown): x is string[] {
  return Array.isArray(x) && x.every((s) => typeof s === 'string');
}

function parseBook(raw: unknown): AddrBookData | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  if (!isStrings(o.listen) || !isStrings(o.order)) return undefined;
  if (typeof o.peers !== 'object' || o.peers === null) return undefined;
  const ports: Record<string, number> = {};
  if (typeof o.ports === 'object' && o.ports !== null)
    for (const [k, v] of Object.entries(o.ports as Record<string, unknown>))
      if (
        (k === 'cache' || k === 'metrics') &&
        Number.isSafeInteger(v) &&
        (v as number) > 0 &&
        (v as number) < 65_536
      )
        ports[k] = v as number;
  let book: AddrBookData = { ...EMPTY_BOOK, listen: o.listen, ports };
  for (const id of o.order) {
    const addrs = (o.peers as Record<string, unknown>)[id];
    if (isStrings(addrs)) book = remember(book, id, addrs);
  }
  return book;
}

/** The persisted book: changes are written (atomically) when they change something. */
export class AddrBook {
  private data: AddrBookData;
  /**
   * The data last written (or read), undefined after a failed write: books are replaced, never
   * changed, so identity says it all.
   */
  private written: AddrBookData | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly dataDir: string;

  constructor(dataDir: string) {
    this.dataDir = dataDir;
    this.data = loadAddrBook(dataDir);
    this.written = this.data;
  }

  get listen(): readonly string[] {
    return this.data.listen;
  }

  addrsOf(id: string): readonly string[] {
    return this.data.peers[id] ?? [];
  }

  setListen(addrs: readonly string[]): void {
    const old = this.data.listen;
    if (old.length === addrs.length && old.every((a, i) => a === addrs[i])) return;
    this.data = { ...this.data, listen: [...addrs] };
  }

  port(name: StickyPort): number | undefined {
    return this.data.ports?.[name];
  }

  setPort(name: StickyPort, port: number): void {
    if (this.data.ports?.[name] === port) return;
    this.data = { ...this.data, ports: { ...this.data.ports, [name]: port } };
  }

  remember(id: string, addrs: readonly string[]): void {
    this.data = remember(this.data, id, addrs);
  }

  /**
   * Writes the book if it changed since the last write; writes are serialized. A write that fails
   * rejects this flush only: the next flush writes again (a full disk once does not stop the book
   * from being saved for the rest of the process's life).
   */
  flush(): Promise<void> {
    if (this.data === this.written) return this.writing;
    const data = this.data;
    this.written = data;
    const text = JSON.stringify(data);
    const path = join(this.dataDir, ADDR_BOOK_FILE);
    this.writing = this.writing
      .catch(() => undefined)
      .then(() => writeFileAtomic(path, `${text}\n`, { mode: 0o600 }))
      .catch((e: unknown) => {
        if (this.written === data) this.written = undefined;
        throw e;
      });
    return this.writing;
  }
}
