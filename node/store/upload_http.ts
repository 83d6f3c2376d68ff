// The HTTP side of uploads (upload.ts does the checking): `PUT /nar/...` and `PUT
// /<hashPart>.narinfo` behind a push token, and the refusals the headers alone allow, answered to
// `Expect: 100-continue` before a byte of the body crosses the network. Every refusal is a status
// Nix prints with the message.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CacheScope } from './cache_auth.ts';
import type { StoreError } from './errors.ts';
import { contentLength, readBody, refuse, send } from './http_reply.ts';
import type { StoreCounters } from './store.ts';
import { httpStatusOf, UPLOAD_NARINFO_BYTES_MAX, type Uploads } from './upload.ts';

export interface UploadHttpOptions {
  /** undefined: this cache takes no uploads (405). */
  readonly uploads: Uploads | undefined;
  /** The credential check; on refusal it has answered and returns false. */
  readonly allowed: (req: IncomingMessage, res: ServerResponse, scope: CacheScope) => boolean;
  readonly counters: StoreCounters;
}

export interface UploadHttp {
  put(req: IncomingMessage, res: ServerResponse, url: string): Promise<void>;
  /** For `Expect: 100-continue`: true when the body may come. */
  precheck(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
}

export function uploadHttp(o: UploadHttpOptions): UploadHttp {
  const refused = (res: ServerResponse, e: unknown): void => {
    o.counters.uploadsRefused++;
    const code = (e as { code?: unknown }).code as StoreError['code'] | undefined;
    refuse(res, httpStatusOf(code), `${code ?? 'ERROR'}: ${(e as Error).message}\n`);
  };
  return {
    async put(req, res, url) {
      if (o.uploads === undefined) return refuse(res, 405, 'this cache takes no uploads\n');
      if (!o.allowed(req, res, 'push')) return;
      try {
        if (url.startsWith('/nar/')) {
          await o.uploads.putNar(url, req, contentLength(req));
          return send(res, 200, 'received\n');
        }
        const body = await readBody(req, UPLOAD_NARINFO_BYTES_MAX);
        const path = await o.uploads.putNarInfo(url, body);
        o.counters.uploadsAccepted++;
        return send(res, 200, `${path} added\n`);
      } catch (e) {
        refused(res, e);
      }
    },
    async precheck(req, res) {
      const url = (req.url ?? '/').split('?')[0]!;
      if (req.method !== 'PUT' || o.uploads === undefined) return true;
      if (!o.allowed(req, res, 'push')) return false;
      try {
        if (url.startsWith('/nar/')) await o.uploads.precheckNar(url, contentLength(req));
        else o.uploads.precheckNarInfo(url, contentLength(req));
        return true;
      } catch (e) {
        refused(res, e);
        return false;
      }
    },
  };
}
