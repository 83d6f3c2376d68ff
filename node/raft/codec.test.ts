import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { type Message, msg } from '../../consensus/index.ts';
import { decodeMessage, encodeMessage, MESSAGE_BYTES_MAX } from './codec.ts';

describe('message codec', () => {
  it('round-trips every field, entries and snapshots included', () => {
    const m: Message = msg({
      type: 'MsgApp',
      to: 'b',
      from: 'a',
      term: 3,
      logTerm: 2,
      index: 7,
      commit: 6,
      entries: [
        { term: 3, index: 8, type: 'normal', data: new Uint8Array([1, 2, 3]) },
        { term: 3, index: 9, type: 'confChange', data: new Uint8Array([4]) },
      ],
    });
    expect(decodeMessage(encodeMessage(m))).toEqual(m);
    const s: Message = msg({
      type: 'MsgSnap',
      to: 'b',
      from: 'a',
      term: 3,
      snapshot: {
        metadata: { index: 5, term: 2, confState: { voters: ['a', 'b'], learners: ['c'] } },
        data: new Uint8Array([7]),
      },
    });
    const back = decodeMessage(encodeMessage(s));
    expect(back).toEqual(s);
    expect((back as Message).snapshot!.data).toBeInstanceOf(Uint8Array);
    const r = msg({
      type: 'MsgVoteResp',
      to: 'a',
      from: 'b',
      term: 4,
      reject: true,
      commit: 3,
      logTerm: 2,
    });
    expect(decodeMessage(encodeMessage(r))).toEqual(r);
  });

  it('refuses bad frames with a reason, never throws', () => {
    const p = new Packr({ useRecords: false });
    const good = encodeMessage(msg({ type: 'MsgHeartbeat', to: 'b', from: 'a', term: 1 }));
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array([0xc1]), /undecodable|12-field/],
      [good.subarray(0, good.byteLength - 2), /undecodable|12-field/],
      [p.pack({ type: 'MsgApp' }), /12-field/],
      [p.pack(['MsgApp', 'b', 'a', 1, 0, 0, 'x', 0, null, false, 0, '']), /entries is not a list/],
      [
        p.pack([
          'MsgApp',
          'b',
          'a',
          1,
          0,
          0,
          [[1, 1, 7, new Uint8Array(0)]],
          0,
          null,
          false,
          0,
          '',
        ]),
        /entry type/,
      ],
      [p.pack(['MsgApp', 'b', 'a', -1, 0, 0, [], 0, null, false, 0, '']), /malformed/],
      [p.pack(['MsgNope', 'b', 'a', 1, 0, 0, [], 0, null, false, 0, '']), /malformed|unknown/],
      [p.pack(['MsgHup', 'b', 'a', 1, 0, 0, [], 0, null, false, 0, '']), /localTypeFromWire/],
      [
        p.pack([
          'MsgSnap',
          'b',
          'a',
          1,
          0,
          0,
          [],
          0,
          [1, 1, 'x', [], new Uint8Array(0)],
          false,
          0,
          '',
        ]),
        /membership/,
      ],
    ];
    for (const [bytes, why] of cases) {
      const out = decodeMessage(bytes);
      expect('error' in out ? out.error : 'decoded', `${why}`).toMatch(why);
    }
  });

  it('refuses a frame larger than MESSAGE_BYTES_MAX before decoding it', () => {
    const out = decodeMessage(new Uint8Array(MESSAGE_BYTES_MAX + 1));
    expect('error' in out && out.error).toMatch(/exceeds the limit of 67108864 bytes/);
  });
});
