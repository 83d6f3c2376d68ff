// Small helpers for scenario tests over the in-test Network: building logs of given terms, reading a
// node's log back as terms, ticking until something happens, counting delivered messages, and
// catching the RaftError a call throws. Nothing here changes how the network delivers.

import { RaftError } from '../../consensus/errors.ts';
import type { Raft } from '../../consensus/raft.ts';
import type { Entry, Message, NodeId } from '../../consensus/types.ts';
import type { Network } from './network.ts';

/** Entries first, first+1, ... with the given terms (normal, with a payload naming index/term). */
export function entriesOfTerms(terms: readonly number[], first = 1): Entry[] {
  return terms.map((term, i) => ({
    term,
    index: first + i,
    type: 'normal',
    data: new TextEncoder().encode(`${first + i}/${term}`),
  }));
}

export function raftOf(net: Network, id: NodeId): Raft {
  return net.node(id).rn.raft;
}

/** The terms of every entry in a node's log, from its first available index. */
export function logTerms(net: Network, id: NodeId): number[] {
  return raftOf(net, id)
    .raftLog.allEntries()
    .map((e) => e.term);
}

/** A node's log as "index/term" strings, for comparing logs of different nodes. */
export function logIds(net: Network, id: NodeId): string[] {
  return raftOf(net, id)
    .raftLog.allEntries()
    .map((e) => `${e.index}/${e.term}`);
}

/** Ticks every node (stabilizing after each tick) until cond holds; returns the ticks it took. */
export function tickAllUntil(net: Network, cond: () => boolean, maxTicks: number): number {
  for (let t = 0; t < maxTicks; t++) {
    if (cond()) return t;
    net.tickAll(1);
  }
  if (cond()) return maxTicks;
  throw new Error(`condition not reached within ${maxTicks} ticks`);
}

/** Delivered messages matching pred, in delivery order. */
export function deliveredWhere(net: Network, pred: (m: Message) => boolean): Message[] {
  return net.delivered.filter(pred);
}

/** The RaftError fn throws; fails the test if it throws nothing or something else. */
export function raftErrorOf(fn: () => void): RaftError {
  try {
    fn();
  } catch (e) {
    if (e instanceof RaftError) return e;
    throw e;
  }
  throw new Error('expected a RaftError, nothing was thrown');
}

export const encode = (s: string): Uint8Array => new TextEncoder().encode(s);
