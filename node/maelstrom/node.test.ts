// MaelstromNode in process: the protocol (init, errors 10/11/12, bad frames), lin-kv semantics
// over a real 3-node Raft group (errors 20 and 22, create_if_not_exists), and the outcome mapping.

import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../test/maelstrom/local_cluster.ts';
import type { NodeErrorCode, Outcome } from '../raft/node.ts';
import { parseLinKv, replyBody } from './lin_kv.ts';
import { MaelstromNode } from './node.ts';
import { parseLine } from './protocol.ts';

let cluster: LocalCluster | undefined;
afterEach(() => {
  cluster?.stop();
  cluster = undefined;
});

function single(): { node: MaelstromNode; out: Record<string, unknown>[]; logs: string[] } {
  const out: Record<string, unknown>[] = [];
  const logs: string[] = [];
  const node = new MaelstromNode({
    send: (line) => out.push(JSON.parse(line) as Record<string, unknown>),
    log: (text) => logs.push(text),
    startTimer: () => () => {},
  });
  return { node, out, logs };
}

const line = (body: Record<string, unknown>, src = 'c1', dest = 'n0'): string =>
  JSON.stringify({ src, dest, body });

describe('protocol', () => {
  it('answers init with init_ok, echoing msg_id as in_reply_to', () => {
    const { node, out } = single();
    node.handleLine(line({ type: 'init', msg_id: 7, node_id: 'n0', node_ids: ['n0', 'n1'] }));
    expect(out).toEqual([
      { src: 'n0', dest: 'c1', body: { type: 'init_ok', in_reply_to: 7, msg_id: 1 } },
    ]);
    expect(node.nodeId).toBe('n0');
    node.stop();
  });

  it('answers a repeated identical init again, and refuses a different one with 12', () => {
    const { node, out } = single();
    node.handleLine(line({ type: 'init', msg_id: 1, node_id: 'n0', node_ids: ['n0', 'n1'] }));
    node.handleLine(line({ type: 'init', msg_id: 2, node_id: 'n0', node_ids: ['n1', 'n0'] }));
    node.handleLine(line({ type: 'init', msg_id: 3, node_id: 'n1', node_ids: ['n0', 'n1'] }));
    expect(out.map((m) => (m.body as { type: string; code?: number }).code ?? 'ok')).toEqual([
      'ok',
      'ok',
      12,
    ]);
    node.stop();
  });

  it.each([
    [{ type: 'init', msg_id: 1, node_ids: ['n0'] }, /node_id/],
    [{ type: 'init', msg_id: 1, node_id: 'n0', node_ids: 'n0' }, /node_ids/],
    [{ type: 'init', msg_id: 1, node_id: 'n0', node_ids: ['n1'] }, /include/],
    [{ type: 'init', msg_id: 1, node_id: 'n0', node_ids: ['n0', 'n0'] }, /distinct/],
  ])('refuses a malformed init %j with 12', (body, text) => {
    const { node, out } = single();
    node.handleLine(line(body));
    expect(out).toHaveLength(1);
    const reply = out[0]!.body as { type: string; code: number; text: string };
    expect(reply.type).toBe('error');
    expect(reply.code).toBe(12);
    expect(reply.text).toMatch(text);
    expect(node.nodeId).toBeUndefined();
  });

  it('refuses requests before init with 11 (definite) and drops raft messages', () => {
    const { node, out, logs } = single();
    node.handleLine(line({ type: 'read', msg_id: 1, key: 1 }));
    node.handleLine(line({ type: 'raft', data: 'AAAA' }, 'n1'));
    expect(out).toHaveLength(1);
    expect(out[0]!.body).toMatchObject({ type: 'error', code: 11, in_reply_to: 1 });
    expect(logs.some((l) => /not initialized/.test(l))).toBe(true);
  });

  it('answers malformed requests with 12, unknown types with 10, and logs what it cannot answer', () => {
    const { node, out, logs } = single();
    node.handleLine(line({ type: 'init', msg_id: 1, node_id: 'n0', node_ids: ['n0'] }));
    out.length = 0;
    node.handleLine('this is not json');
    node.handleLine('[1,2,3]');
    node.handleLine(JSON.stringify({ src: 'c1', body: { type: 'read', msg_id: 2, key: 1 } })); // no dest
    node.handleLine(line({ type: 'read', msg_id: 3 })); // no key
    node.handleLine(line({ type: 'write', msg_id: 4, key: 1 })); // no value
    node.handleLine(line({ type: 'cas', msg_id: 5, key: 1, from: 1 })); // no to
    node.handleLine(
      line({ type: 'cas', msg_id: 6, key: 1, from: 1, to: 2, create_if_not_exists: 'yes' }),
    );
    node.handleLine(line({ type: 'frobnicate', msg_id: 7 }));
    node.handleLine(line({ type: 'frobnicate' })); // no msg_id: nothing to answer
    node.handleLine(line({ type: 'read', msg_id: 'eight', key: 1 })); // bad msg_id: cannot answer
    node.handleLine(line({ type: 'read', msg_id: 9, key: 1 }, 'c1', 'n5')); // not for this node
    node.handleLine('');
    const codes = out.map((m) => [
      (m.body as { in_reply_to: number }).in_reply_to,
      (m.body as { code: number }).code,
    ]);
    expect(codes).toEqual([
      [2, 12],
      [3, 12],
      [4, 12],
      [5, 12],
      [6, 12],
      [7, 10],
    ]);
    expect(out.every((m) => m.src === 'n0' && m.dest === 'c1')).toBe(true);
    expect(logs.filter((l) => /malformed message/.test(l))).toHaveLength(4);
    expect(logs.some((l) => /unknown type "frobnicate"/.test(l))).toBe(true);
    expect(logs.some((l) => /for n5, not for n0/.test(l))).toBe(true);
    node.stop();
  });

  it('drops raft frames that do not decode or that claim another sender', () => {
    const { node, out, logs } = single();
    node.handleLine(line({ type: 'init', msg_id: 1, node_id: 'n0', node_ids: ['n0', 'n1'] }));
    out.length = 0;
    const before = node.stats.dropped;
    node.handleLine(line({ type: 'raft', data: 'not base64 at all!' }, 'n1'));
    node.handleLine(line({ type: 'raft', data: 42 }, 'n1'));
    node.handleLine(
      line({ type: 'raft', data: Buffer.from([0xc1, 0xff]).toString('base64') }, 'n1'),
    );
    expect(node.stats.dropped - before).toBe(3);
    expect(node.stats.raftIn).toBe(0);
    expect(out).toEqual([]);
    expect(logs.filter((l) => /dropped a raft/.test(l))).toHaveLength(3);
    node.stop();
  });

  it('parses lines defensively', () => {
    expect(parseLine('{"src":"a","dest":"b","body":{"type":"x"}}').ok).toBe(true);
    expect(parseLine('{"src":"a","dest":"b","body":{"type":""}}').ok).toBe(false);
    expect(parseLine('{"src":"a","dest":"b","body":{"type":"x","in_reply_to":"1"}}').ok).toBe(
      false,
    );
    expect(parseLine('null').ok).toBe(false);
  });
});

describe('lin-kv mapping', () => {
  it('stores keys and values as canonical JSON', () => {
    expect(parseLinKv({ type: 'write', key: 1, value: { b: 1, a: [2] } })).toEqual({
      f: 'write',
      key: '1',
      value: '{"a":[2],"b":1}',
    });
    expect(parseLinKv({ type: 'cas', key: 'k', from: 1, to: 2 })).toEqual({
      f: 'cas',
      key: '"k"',
      from: '1',
      to: '2',
      createIfNotExists: false,
    });
  });

  it.each<[NodeErrorCode, number]>([
    ['NO_LEADER', 11],
    ['PROPOSAL_DROPPED', 11],
    ['TIMEOUT', 0],
    ['STOPPED', 0],
    ['INVALID', 12],
  ])('maps the node error %s to Maelstrom error %i', (code, expected) => {
    const o: Outcome = { ok: false, code, message: 'm', indeterminate: false };
    expect(replyBody('write', o)).toMatchObject({ type: 'error', code: expected });
  });

  it('maps state machine refusals to 20, 22 and 12', () => {
    const refusal = (code: 'notFound' | 'casMismatch' | 'invalid'): Outcome => ({
      ok: true,
      index: 3,
      result: { ok: false, code, message: 'm' },
    });
    expect(replyBody('read', refusal('notFound'))).toMatchObject({ code: 20 });
    expect(replyBody('cas', refusal('casMismatch'))).toMatchObject({ code: 22 });
    expect(replyBody('cas', refusal('invalid'))).toMatchObject({ code: 12 });
    expect(
      replyBody('read', { ok: true, index: 3, result: { ok: true, value: '[1]', revision: 2 } }),
    ).toEqual({ type: 'read_ok', value: [1] });
  });
});

describe('a 3-node group in process', () => {
  it('serves write, read and cas with lin-kv errors 20 and 22', async () => {
    cluster = new LocalCluster(['n0', 'n1', 'n2']);
    await cluster.init();
    expect(await cluster.untilServed('n1', { type: 'read', key: 1 })).toMatchObject({
      type: 'error',
      code: 20,
    });
    expect(await cluster.untilServed('n0', { type: 'write', key: 1, value: 10 })).toMatchObject({
      type: 'write_ok',
    });
    expect(await cluster.untilServed('n2', { type: 'read', key: 1 })).toMatchObject({
      type: 'read_ok',
      value: 10,
    });
    expect(await cluster.untilServed('n1', { type: 'cas', key: 1, from: 3, to: 4 })).toMatchObject({
      type: 'error',
      code: 22,
    });
    expect(
      await cluster.untilServed('n1', { type: 'cas', key: 1, from: 10, to: 11 }),
    ).toMatchObject({
      type: 'cas_ok',
    });
    expect(await cluster.untilServed('n0', { type: 'cas', key: 2, from: 1, to: 2 })).toMatchObject({
      type: 'error',
      code: 20,
    });
    expect(await cluster.untilServed('n0', { type: 'read', key: 1 })).toMatchObject({ value: 11 });
  });

  it('creates a missing key on cas with create_if_not_exists, whatever from is', async () => {
    cluster = new LocalCluster(['n0', 'n1', 'n2']);
    await cluster.init();
    const cas = (key: number, from: unknown, to: unknown) =>
      cluster!.untilServed('n2', { type: 'cas', key, from, to, create_if_not_exists: true });
    expect(await cas(5, 'anything', 1)).toMatchObject({ type: 'cas_ok' });
    expect(await cluster.untilServed('n0', { type: 'read', key: 5 })).toMatchObject({ value: 1 });
    expect(await cas(5, 1, 2)).toMatchObject({ type: 'cas_ok' });
    expect(await cas(5, 1, 3)).toMatchObject({ type: 'error', code: 22 });
    expect(await cluster.untilServed('n1', { type: 'read', key: 5 })).toMatchObject({ value: 2 });
    // Structural equality: the same object with its keys in another order matches.
    expect(await cas(6, null, { a: 1, b: 2 })).toMatchObject({ type: 'cas_ok' });
    expect(await cas(6, { b: 2, a: 1 }, 'x')).toMatchObject({ type: 'cas_ok' });
    expect(await cluster.untilServed('n1', { type: 'read', key: 6 })).toMatchObject({ value: 'x' });
  });

  it('refuses with 11 on a node cut off from the others; answers 0 to what it held on stop', async () => {
    cluster = new LocalCluster(['n0', 'n1', 'n2']);
    await cluster.init();
    expect(await cluster.untilServed('n0', { type: 'write', key: 1, value: 1 })).toMatchObject({
      type: 'write_ok',
    });
    const c = cluster;
    const ids = [...c.nodes.keys()];
    const leader = ids.find((id) => c.node(id).raftNode!.status().state === 'leader')!;
    const follower = ids.find((id) => id !== leader)!;
    for (const other of ids) if (other !== follower) c.cut.add(`${follower}|${other}`);
    for (const other of ids) if (other !== leader) c.cut.add(`${leader}|${other}`);
    // The leader, cut off, still leads until check-quorum: the write is appended, never committed.
    const held = c.request(leader, { type: 'write', key: 1, value: 3 });
    // The follower, once its election timer fires, knows no leader: a definite refusal, fast.
    await new Promise((r) => setTimeout(r, 300));
    expect(await c.request(follower, { type: 'write', key: 1, value: 2 })).toMatchObject({
      type: 'error',
      code: 11,
    });
    c.node(leader).stop();
    expect(await held).toMatchObject({ type: 'error', code: 0 });
  });
});
