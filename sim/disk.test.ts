// The simulated disk: batches become durable in order after a virtual fsync; a crash loses every
// batch not yet synced and silences every completion written before it.

import { describe, expect, it } from 'vitest';
import type { DiskOp } from '../node/raft/disk.ts';
import { SimDisk } from './disk.ts';
import { EventQueue, msToUs } from './queue.ts';
import { SimRandom } from './random.ts';

const put = (key: string, value: string): DiskOp => ({
  type: 'put',
  key,
  value: new TextEncoder().encode(value),
});
const text = (records: Map<string, Uint8Array>, key: string): string | undefined => {
  const v = records.get(key);
  return v === undefined ? undefined : new TextDecoder().decode(v);
};

function setup(): { queue: EventQueue; disk: SimDisk } {
  const queue = new EventQueue();
  const disk = new SimDisk(queue, new SimRandom(1), { minMs: 1, maxMs: 2 });
  return { queue, disk };
}

function drain(queue: EventQueue, ms = 1000): void {
  const until = queue.now + msToUs(ms);
  while (queue.step(until)) {
    // run
  }
}

describe('SimDisk', () => {
  it('completes a batch after its fsync latency, never synchronously, and in write order', () => {
    const { queue, disk } = setup();
    const done: string[] = [];
    disk.write([put('a', '1')], () => done.push('a'));
    disk.write([put('b', '1')], () => done.push('b'));
    disk.write([put('a', '2'), { type: 'del', key: 'b' }], () => done.push('c'));
    expect(done).toEqual([]);
    expect(disk.records().size).toBe(0);
    drain(queue);
    expect(done).toEqual(['a', 'b', 'c']);
    // fsyncs are serial: three of 1-2 ms each.
    expect(queue.now).toBeGreaterThanOrEqual(msToUs(3));
    expect(text(disk.records(), 'a')).toBe('2');
    expect(disk.records().has('b')).toBe(false);
    expect(disk.stats).toEqual({ written: 3, synced: 3, lost: 0, unsyncedWrites: 0 });
  });

  it('a crash loses every unsynced batch, and their callbacks never run', () => {
    const { queue, disk } = setup();
    const done: string[] = [];
    disk.write([put('x', 'synced')], () => done.push('synced'));
    drain(queue);
    disk.write([put('x', 'lost'), put('y', 'lost')], () => done.push('lost 1'));
    disk.write([put('z', 'lost')], () => done.push('lost 2'));
    expect(disk.pendingBatches).toBe(2);
    expect(disk.crash()).toBe(2);
    // The next incarnation writes right away; the old completions stay silent.
    disk.write([put('w', 'new')], () => done.push('new'));
    drain(queue);
    expect(done).toEqual(['synced', 'new']);
    const records = disk.records();
    expect(text(records, 'x')).toBe('synced');
    expect(records.has('y')).toBe(false);
    expect(records.has('z')).toBe(false);
    expect(text(records, 'w')).toBe('new');
    expect(disk.stats).toEqual({ written: 4, synced: 2, lost: 2, unsyncedWrites: 0 });
  });

  it('a batch written without sync completes at once, in order, and is durable only once a later batch syncs', () => {
    const { queue, disk } = setup();
    const done: string[] = [];
    disk.write([put('a', 'synced')], () => done.push('a'));
    disk.write([put('c', 'page cache')], () => done.push('c'), { sync: false });
    // Behind the first batch's fsync, as LevelDB's queue holds it.
    while (done.length === 0) queue.step(Number.POSITIVE_INFINITY);
    expect(done).toEqual(['a']);
    drain(queue);
    expect(done).toEqual(['a', 'c']);
    expect(disk.records().has('c')).toBe(false);
    expect(disk.pendingBatches).toBe(1);
    // A crash now (a power cut) loses it.
    expect(disk.crash()).toBe(1);
    expect(disk.records().has('c')).toBe(false);
    // Written again, then followed by a synced batch: both are durable.
    disk.write([put('c', 'page cache')], () => done.push('c2'), { sync: false });
    disk.write([put('d', 'synced')], () => done.push('d'));
    drain(queue);
    expect(done).toEqual(['a', 'c', 'c2', 'd']);
    expect(text(disk.records(), 'c')).toBe('page cache');
    expect(text(disk.records(), 'd')).toBe('synced');
    expect(disk.pendingBatches).toBe(0);
    expect(disk.stats).toEqual({ written: 4, synced: 3, lost: 1, unsyncedWrites: 2 });
  });

  it('a crash between two fsyncs keeps the first batch only (batches are atomic and ordered)', () => {
    const { queue, disk } = setup();
    disk.write([put('k', '1')], () => {});
    disk.write([put('k', '2'), put('j', '2')], () => {});
    // Run until exactly one batch is synced.
    while (disk.stats.synced === 0) queue.step(Number.POSITIVE_INFINITY);
    disk.crash();
    drain(queue);
    expect(text(disk.records(), 'k')).toBe('1');
    expect(disk.records().has('j')).toBe(false);
  });

  it('hands completions to the process through deliver (held while it is paused)', () => {
    const queue = new EventQueue();
    const held: (() => void)[] = [];
    const disk = new SimDisk(queue, new SimRandom(2), { minMs: 0.5, maxMs: 1 }, (cb) =>
      held.push(cb),
    );
    let completed = false;
    disk.write([put('a', '1')], () => {
      completed = true;
    });
    drain(queue);
    // Durable (the kernel synced it) but the process has not heard yet.
    expect(text(disk.records(), 'a')).toBe('1');
    expect(completed).toBe(false);
    for (const cb of held) cb();
    expect(completed).toBe(true);
  });

  it('preload writes records as already synced', () => {
    const { disk } = setup();
    disk.preload([put('hs', 'x')]);
    expect(text(disk.records(), 'hs')).toBe('x');
    expect(disk.stats.written).toBe(0);
  });
});

describe('EventQueue', () => {
  it('orders by time, then by scheduling order', () => {
    const q = new EventQueue();
    const seen: string[] = [];
    q.at(5, () => seen.push('t5 first'));
    q.at(3, () => seen.push('t3'));
    q.at(5, () => seen.push('t5 second'));
    q.at(1, () => {
      seen.push('t1');
      q.at(5, () => seen.push('t5 third, scheduled later'));
      q.after(0, () => seen.push('t1 again'));
    });
    while (q.step(Number.POSITIVE_INFINITY)) {
      // run
    }
    expect(seen).toEqual([
      't1',
      't1 again',
      't3',
      't5 first',
      't5 second',
      't5 third, scheduled later',
    ]);
    expect(q.now).toBe(5);
  });

  it('keeps order over many random events (heap property)', () => {
    const q = new EventQueue();
    const r = new SimRandom(3);
    const times: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t = r.intn(500);
      q.at(t, () => times.push(t));
    }
    while (q.step(Number.POSITIVE_INFINITY)) {
      // run
    }
    expect(times).toEqual([...times].sort((a, b) => a - b));
  });
});
