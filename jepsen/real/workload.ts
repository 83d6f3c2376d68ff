// The workloads' clients: Jepsen-style processes, each bound to one node, that invoke operations
// through the product's client and record a history (jepsen/checker/history.ts) with times in ms
// since the workload began. How the product's answers are recorded:
//   ok -> ok;  NOT_FOUND on a read -> ok, null (absent);  CAS_MISMATCH / NOT_FOUND on a cas -> ok
//   with Maelstrom's error body (code 22 / 20), checked as an observation of the register;
//   NO_LEADER (the node refused before proposing: nothing was proposed), and a refused TCP
//   connection (nothing was sent) -> fail;
//   TIMEOUT, any other error, and a request that got no answer in time -> info (indeterminate),
//   after which the process is retired and the client takes a new number, as Jepsen does.

import type { RandomSource } from '../../consensus/index.ts';
import type { ApiRequest, ApiResponse } from '../../node/api/wire.ts';
import type { HistoryEvent } from '../checker/index.ts';
import type { Cluster } from './cluster.ts';

/** A client gives up on one request after this: the operation is then indeterminate. */
export const REQUEST_TIMEOUT_MS = 2_000;
/** A client's pause after an operation that did not succeed (no hammering a dead node). */
export const BACKOFF_MS = 250;
/** Operations on one kv key before the clients move to a fresh key (Jepsen's independent keys). */
export const KV_OPS_PER_KEY_MAX = 400;
/** Values written and compared are 0..KV_VALUES-1. */
export const KV_VALUES = 5;

/** A history event with the node the client talked to and, for fail and info, why. */
export type RecordedEvent = HistoryEvent & { readonly node: string; readonly error?: string };

/** What a refused or unanswered request's completion records as its reason. */
export function errorOf(a: Answer): { error?: string } {
  if (a.kind === 'refused') return { error: a.code };
  if (a.kind === 'indeterminate') return { error: a.why.slice(0, 200) };
  return {};
}

export interface ClientContext {
  readonly cluster: Cluster;
  readonly random: RandomSource;
  /** ms since the workload began. */
  readonly now: () => number;
  /** True once the workload's time is up. */
  readonly done: () => boolean;
  /** Planted fault: reads answered from the node's local state (`stale: true`), not ReadIndex. */
  readonly staleReads: boolean;
  readonly thinkMs: number;
  /** A fresh process number (unique across the run's workloads). */
  readonly nextProcess: () => number;
}

/**
 * Refusals after which the request certainly had no effect: the node refused before proposing
 * (NO_LEADER), the request was malformed (INVALID), or the connection was refused, so nothing was
 * sent (ECONNREFUSED, from the client, not the product).
 */
export const DEFINITE_REFUSALS: ReadonlySet<string> = new Set([
  'NO_LEADER',
  'INVALID',
  'ECONNREFUSED',
]);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type Answer =
  | { readonly kind: 'ok'; readonly resp: ApiResponse & { ok: true } }
  | { readonly kind: 'refused'; readonly code: string }
  | { readonly kind: 'indeterminate'; readonly why: string };

/** Sends one request and classifies the answer (definite refusal or indeterminate). */
export async function ask(cluster: Cluster, node: string, req: ApiRequest): Promise<Answer> {
  let resp: ApiResponse;
  try {
    resp = await cluster.request(node, req, REQUEST_TIMEOUT_MS);
  } catch (e) {
    const why = (e as Error).message;
    // The TCP connect was refused (the node is down): the request was never sent.
    if (why.includes('ECONNREFUSED')) return { kind: 'refused', code: 'ECONNREFUSED' };
    return { kind: 'indeterminate', why };
  }
  if (resp.ok) return { kind: 'ok', resp };
  return { kind: 'refused', code: resp.error.code };
}

/** Hands out keys: `slots` live keys at a time, each retired after KV_OPS_PER_KEY_MAX operations. */
export class KeyPool {
  private readonly ids: number[];
  private readonly counts: number[];
  private next: number;

  private readonly slots: number;

  constructor(slots: number) {
    this.slots = slots;
    this.ids = Array.from({ length: slots }, (_, i) => i);
    this.counts = Array.from({ length: slots }, () => 0);
    this.next = slots;
  }

  take(random: RandomSource): string {
    const s = random.intn(this.slots);
    const key = `kv${this.ids[s]}`;
    this.counts[s]!++;
    if (this.counts[s]! >= KV_OPS_PER_KEY_MAX) {
      this.ids[s] = this.next++;
      this.counts[s] = 0;
    }
    return key;
  }
}

export type KvOp =
  | { readonly f: 'read'; readonly value: null }
  | { readonly f: 'write'; readonly value: number }
  | { readonly f: 'cas'; readonly value: readonly [number, number] };

function randomKvOp(random: RandomSource): KvOp {
  const r = random.intn(4);
  if (r < 2) return { f: 'read', value: null };
  if (r === 2) return { f: 'write', value: random.intn(KV_VALUES) };
  return { f: 'cas', value: [random.intn(KV_VALUES), random.intn(KV_VALUES)] };
}

function kvRequest(op: KvOp, key: string, staleReads: boolean): ApiRequest {
  switch (op.f) {
    case 'read':
      return { op: 'kv.get', key, ...(staleReads ? { stale: true } : {}) };
    case 'write':
      return { op: 'kv.put', key, value: String(op.value) };
    case 'cas':
      return { op: 'kv.cas', key, from: String(op.value[0]), to: String(op.value[1]) };
  }
}

/** The completion event's type and value for one kv answer. */
export function kvCompletion(op: KvOp, a: Answer): ['ok' | 'fail' | 'info', unknown] {
  if (a.kind === 'ok') {
    if (op.f !== 'read') return ['ok', op.value];
    const v = a.resp.value;
    return ['ok', typeof v === 'string' ? Number(v) : null];
  }
  if (a.kind === 'indeterminate') return ['info', op.value];
  if (a.code === 'NOT_FOUND') {
    return op.f === 'read' ? ['ok', null] : ['ok', { type: 'error', code: 20 }];
  }
  if (a.code === 'CAS_MISMATCH' && op.f === 'cas') return ['ok', { type: 'error', code: 22 }];
  if (DEFINITE_REFUSALS.has(a.code)) return ['fail', op.value];
  return ['info', op.value];
}

/** One kv client bound to `node`: reads, writes and cas on the pool's keys until done. */
export async function kvClient(
  ctx: ClientContext,
  node: string,
  keys: KeyPool,
  history: RecordedEvent[],
): Promise<void> {
  let process = ctx.nextProcess();
  while (!ctx.done()) {
    const op = randomKvOp(ctx.random);
    const key = keys.take(ctx.random);
    history.push({ type: 'invoke', process, f: op.f, key, value: op.value, time: ctx.now(), node });
    const answer = await ask(ctx.cluster, node, kvRequest(op, key, ctx.staleReads));
    const [type, value] = kvCompletion(op, answer);
    const why = type === 'ok' ? {} : errorOf(answer);
    history.push({ type, process, f: op.f, key, value, time: ctx.now(), node, ...why });
    if (type === 'info') process = ctx.nextProcess();
    await sleep(type === 'ok' ? ctx.thinkMs : BACKOFF_MS);
  }
}

/** Where the set workload keeps its elements: one key per element. */
export const SET_PREFIX = 'set/';

/** The completion of a set add: a put of a fresh key either happened, or certainly not, or maybe. */
function addCompletion(a: Answer): 'ok' | 'fail' | 'info' {
  if (a.kind === 'ok') return 'ok';
  if (a.kind === 'refused' && DEFINITE_REFUSALS.has(a.code)) return 'fail';
  return 'info';
}

/** Reads the whole set through one node (kv.list under the prefix: a ReadIndex read). */
export async function readSet(
  ctx: Pick<ClientContext, 'cluster' | 'staleReads'>,
  node: string,
): Promise<number[] | undefined> {
  const a = await ask(ctx.cluster, node, {
    op: 'kv.list',
    prefix: SET_PREFIX,
    ...(ctx.staleReads ? { stale: true } : {}),
  });
  if (a.kind !== 'ok') return undefined;
  const entries = a.resp.entries as { key: string }[];
  return entries.map((e) => Number(e.key.slice(SET_PREFIX.length))).sort((x, y) => x - y);
}

/** One set adder bound to `node`: adds unique elements (taken from `nextElement`) until done. */
export async function setAdder(
  ctx: ClientContext,
  node: string,
  nextElement: () => number,
  history: RecordedEvent[],
): Promise<void> {
  let process = ctx.nextProcess();
  while (!ctx.done()) {
    const element = nextElement();
    history.push({ type: 'invoke', process, f: 'add', value: element, time: ctx.now(), node });
    const a = await ask(ctx.cluster, node, {
      op: 'kv.put',
      key: `${SET_PREFIX}${element}`,
      value: '1',
    });
    const type = addCompletion(a);
    history.push({ type, process, f: 'add', value: element, time: ctx.now(), node, ...errorOf(a) });
    if (type === 'info') process = ctx.nextProcess();
    await sleep(type === 'ok' ? ctx.thinkMs : BACKOFF_MS);
  }
}

/** Reads the set during the run, round-robin over the nodes, every `everyMs`. */
export async function setReader(
  ctx: ClientContext,
  everyMs: number,
  history: RecordedEvent[],
): Promise<void> {
  let process = ctx.nextProcess();
  let i = 0;
  while (!ctx.done()) {
    const node = ctx.cluster.nodes[i++ % ctx.cluster.nodes.length]!.name;
    history.push({ type: 'invoke', process, f: 'read', value: null, time: ctx.now(), node });
    const elements = await readSet(ctx, node);
    const type = elements === undefined ? 'info' : 'ok';
    history.push({ type, process, f: 'read', value: elements ?? null, time: ctx.now(), node });
    if (type === 'info') process = ctx.nextProcess();
    await sleep(everyMs);
  }
}
