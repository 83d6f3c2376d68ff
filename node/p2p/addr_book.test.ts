import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ADDR_BOOK_ADDRS_PER_PEER_MAX,
  ADDR_BOOK_FILE,
  ADDR_BOOK_PEERS_MAX,
  AddrBook,
  EMPTY_BOOK,
  remember,
  stickyListen,
} from './addr_book.ts';

describe('stickyListen', () => {
  it('binds tcp/0 to the port the node had on the same host; explicit ports stay', () => {
    const prev = ['/ip4/127.0.0.1/tcp/4100/p2p/12D3KooWx', '/ip4/10.0.0.1/tcp/4200'];
    expect(
      stickyListen(['/ip4/127.0.0.1/tcp/0', '/ip4/10.0.0.1/tcp/5000', '/ip4/10.0.0.2/tcp/0'], prev),
    ).toEqual(['/ip4/127.0.0.1/tcp/4100', '/ip4/10.0.0.1/tcp/5000', '/ip4/10.0.0.2/tcp/0']);
    expect(stickyListen(['/ip4/127.0.0.1/tcp/0'], [])).toEqual(['/ip4/127.0.0.1/tcp/0']);
  });
});

describe('remember', () => {
  it('keeps the newest addresses first, bounded per peer', () => {
    let b = remember(EMPTY_BOOK, 'p', ['/a/1']);
    b = remember(b, 'p', ['/a/2']);
    expect(b.peers.p).toEqual(['/a/2', '/a/1']);
    for (let i = 0; i < ADDR_BOOK_ADDRS_PER_PEER_MAX + 5; i++) b = remember(b, 'p', [`/x/${i}`]);
    expect(b.peers.p).toHaveLength(ADDR_BOOK_ADDRS_PER_PEER_MAX);
    expect(b.peers.p![0]).toBe(`/x/${ADDR_BOOK_ADDRS_PER_PEER_MAX + 4}`);
  });
  it(`keeps at most ADDR_BOOK_PEERS_MAX (${ADDR_BOOK_PEERS_MAX}) peers, forgetting the least recently seen`, () => {
    let b = EMPTY_BOOK;
    for (let i = 0; i <= ADDR_BOOK_PEERS_MAX; i++) b = remember(b, `p${i}`, ['/a']);
    expect(Object.keys(b.peers)).toHaveLength(ADDR_BOOK_PEERS_MAX);
    expect(b.peers.p0).toBeUndefined();
    expect(b.peers[`p${ADDR_BOOK_PEERS_MAX}`]).toEqual(['/a']);
  });
  it('a peer whose addresses are unchanged gives the same book, whatever the order (no write)', () => {
    const b = remember(EMPTY_BOOK, 'p', ['/a']);
    expect(remember(b, 'p', ['/a'])).toBe(b);
    const two = remember(b, 'q', ['/b']);
    expect(remember(two, 'p', ['/a'])).toBe(two);
  });

  it('AddrBook writes only when something changed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pcr-book-'));
    try {
      const book = new AddrBook(dir);
      book.remember('p', ['/a']);
      book.remember('q', ['/b']);
      book.setListen(['/ip4/127.0.0.1/tcp/4100']);
      await book.flush();
      await rm(join(dir, ADDR_BOOK_FILE));
      // The daemon's 300 ms loop: the same members and listen addresses again.
      book.remember('p', ['/a']);
      book.remember('q', ['/b']);
      book.setListen(['/ip4/127.0.0.1/tcp/4100']);
      await book.flush();
      await expect(readFile(join(dir, ADDR_BOOK_FILE))).rejects.toThrow(/ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('AddrBook on disk', () => {
  it('a failed write fails its flush only: the next flush writes the book again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pcr-book-'));
    try {
      const book = new AddrBook(dir);
      book.remember('p', ['/a']);
      // A directory where the temporary file goes: the write cannot happen (as a full disk).
      const blocker = join(dir, `${ADDR_BOOK_FILE}.tmp`);
      await mkdir(join(blocker, 'x'), { recursive: true });
      await expect(book.flush()).rejects.toThrow();
      await rm(blocker, { recursive: true });
      // Nothing changed since, yet the book is not on disk: this flush must write it.
      await book.flush();
      expect(new AddrBook(dir).addrsOf('p')).toEqual(['/a']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('round-trips, and reads a damaged file as an empty book', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pcr-book-'));
    try {
      const book = new AddrBook(dir);
      book.setListen(['/ip4/127.0.0.1/tcp/4100']);
      book.remember('p', ['/ip4/127.0.0.1/tcp/4200']);
      book.setPort('cache', 4300);
      book.setPort('metrics', 4400);
      book.remember('q', ['/ip4/127.0.0.1/tcp/4500']); // remembering keeps the ports
      await book.flush();
      const again = new AddrBook(dir);
      expect(again.listen).toEqual(['/ip4/127.0.0.1/tcp/4100']);
      expect(again.addrsOf('p')).toEqual(['/ip4/127.0.0.1/tcp/4200']);
      expect([again.port('cache'), again.port('metrics')]).toEqual([4300, 4400]);
      // A port out of range or a listener it does not know is dropped, not trusted.
      await writeFile(
        join(dir, ADDR_BOOK_FILE),
        JSON.stringify({ listen: [], peers: {}, order: [], ports: { cache: 70_000, ssh: 22 } }),
      );
      expect([new AddrBook(dir).port('cache'), new AddrBook(dir).port('metrics')]).toEqual([
        undefined,
        undefined,
      ]);
      await writeFile(join(dir, ADDR_BOOK_FILE), '{"listen": 7');
      expect(new AddrBook(dir).listen).toEqual([]);
      expect(await readFile(join(dir, ADDR_BOOK_FILE), 'utf8')).toBe('{"listen": 7');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
