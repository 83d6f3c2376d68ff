// Small HTTP helpers the binary cache's handlers share: a whole answer, a refusal that closes the
// connection, a request's declared length, and a bounded request body.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { StoreError } from './errors.ts';

export function send(
  res: ServerResponse,
  status: number,
  body: string,
  head = false,
  type = 'text/plain',
): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': String(Buffer.byteLength(body)),
  });
  res.end(head ? undefined : body);
}

/** An answer that refuses a request: the connection closes (an unread body is not drained). */
export function refuse(res: ServerResponse, status: number, body: string, head = false): void {
  res.setHeader('Connection', 'close');
  send(res, status, body, head);
}

export function contentLength(req: IncomingMessage): number | undefined {
  const v = req.headers['content-length'];
  return v !== undefined && /^[0-9]{1,15}$/.test(v) ? Number(v) : undefined;
}

/** The whole body, refused (TOO_LARGE) once it passes `maxBytes`. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Uint8Array> {
  const declared = contentLength(req);
  const tooLarge = () =>
    new StoreError('TOO_LARGE', `a narinfo is at most ${maxBytes} bytes (NARINFO_BYTES_MAX)`);
  if (declared !== undefined && declared > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > maxBytes) throw tooLarge();
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
