// A deliberately broken lin-kv node for testing the harness itself: each process keeps its own
// map and never talks to the others, so reads on different nodes disagree. A checker that calls
// a cluster of these linearizable is not checking anything.

import { createInterface } from 'node:readline';

const kv = new Map<string, unknown>();
let id = '';
let nextMsgId = 1;

function reply(src: string, inReplyTo: unknown, body: Record<string, unknown>): void {
  const out = {
    src: id,
    dest: src,
    body: { ...body, msg_id: nextMsgId++, in_reply_to: inReplyTo },
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const { src, body } = JSON.parse(line) as { src: string; body: Record<string, unknown> };
  const key = JSON.stringify(body.key);
  switch (body.type) {
    case 'init':
      id = body.node_id as string;
      return reply(src, body.msg_id, { type: 'init_ok' });
    case 'read':
      if (!kv.has(key)) return reply(src, body.msg_id, { type: 'error', code: 20, text: 'absent' });
      return reply(src, body.msg_id, { type: 'read_ok', value: kv.get(key) });
    case 'write':
      kv.set(key, body.value);
      return reply(src, body.msg_id, { type: 'write_ok' });
    case 'cas':
      if (!kv.has(key)) return reply(src, body.msg_id, { type: 'error', code: 20, text: 'absent' });
      if (kv.get(key) !== body.from) {
        return reply(src, body.msg_id, { type: 'error', code: 22, text: 'differs' });
      }
      kv.set(key, body.to);
      return reply(src, body.msg_id, { type: 'cas_ok' });
  }
});
