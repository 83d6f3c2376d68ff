// narinfo files, the metadata of a binary cache: parsed strictly (unknown or repeated fields,
// oversized files, unknown compressions are refused; Nix itself is lenient, but these come from
// the network) and written in the field order `nix copy --to file://` uses, so our output is
// byte-identical to Nix's.

import { StoreError } from './errors.ts';
import { normaliseSha256 } from './hash.ts';
import type { PathInfo } from './store.ts';
import { parseBaseName, parseStorePath, STORE_DIR } from './store_path.ts';

/** A narinfo larger than this is refused before it is parsed (room for NARINFO_REFERENCES_MAX refs). */
export const NARINFO_BYTES_MAX = 512 * 1024;
/** Signatures on one path (Nix keeps every one it is given; nobody needs more). */
export const NARINFO_SIGS_MAX = 16;
/** References of one path. */
export const NARINFO_REFERENCES_MAX = 10_000;

/** What a narinfo holds beyond the path's info: where and how the NAR file is stored. */
export interface NarInfo extends PathInfo {
  url: string;
  compression: string;
  fileHash?: string;
  fileSize?: number;
}

const KNOWN = new Set([
  'StorePath',
  'URL',
  'Compression',
  'FileHash',
  'FileSize',
  'NarHash',
  'NarSize',
  'References',
  'Deriver',
  'Sig',
  'CA',
]);
/** Compressions Nix knows; we serve and accept only `none` (loopback and LAN: CPU is the cost). */
const NIX_COMPRESSIONS = new Set(['none', 'xz', 'bzip2', 'zstd', 'br', 'gzip', 'lz4', 'lzip']);

function bad(why: string): never {
  throw new StoreError('BAD_NARINFO', `invalid narinfo: ${why}`);
}

function size(field: string, v: string): number {
  if (!/^[0-9]{1,15}$/.test(v)) bad(`${field} is not a size: ${JSON.stringify(v.slice(0, 40))}`);
  return Number(v);
}

export function parseNarInfo(text: string | Uint8Array): NarInfo {
  const bytes = typeof text === 'string' ? Buffer.byteLength(text) : text.length;
  if (bytes > NARINFO_BYTES_MAX)
    bad(`${bytes} bytes, more than NARINFO_BYTES_MAX ${NARINFO_BYTES_MAX}`);
  const s = typeof text === 'string' ? text : Buffer.from(text).toString('utf8');
  const fields = new Map<string, string>();
  const sigs: string[] = [];
  for (const line of s.split('\n')) {
    if (line === '') continue;
    const colon = line.indexOf(': ');
    if (colon <= 0) bad(`line without "Key: value": ${JSON.stringify(line.slice(0, 80))}`);
    const key = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (!KNOWN.has(key)) bad(`unknown field ${JSON.stringify(key.slice(0, 40))}`);
    if (key === 'Sig') {
      if (sigs.length >= NARINFO_SIGS_MAX)
        bad(`more than NARINFO_SIGS_MAX ${NARINFO_SIGS_MAX} signatures`);
      sigs.push(value);
      continue;
    }
    if (fields.has(key)) bad(`field ${key} given twice`);
    fields.set(key, value);
  }
  const need = (k: string): string => fields.get(k) ?? bad(`missing field ${k}`);
  const path = parseStorePath(need('StorePath')).path;
  const compression = fields.get('Compression') ?? 'bzip2';
  if (!NIX_COMPRESSIONS.has(compression)) {
    throw new StoreError(
      'UNSUPPORTED',
      `unknown compression ${JSON.stringify(compression.slice(0, 40))} for ${path}`,
    );
  }
  const refsText = fields.get('References') ?? '';
  const refNames = refsText === '' ? [] : refsText.split(' ');
  if (refNames.length > NARINFO_REFERENCES_MAX) {
    bad(`more than NARINFO_REFERENCES_MAX ${NARINFO_REFERENCES_MAX} references`);
  }
  const info: NarInfo = {
    path,
    url: need('URL'),
    compression,
    narHash: hashField('NarHash', need('NarHash')),
    narSize: size('NarSize', need('NarSize')),
    references: refNames.map((r) => parseBaseName(r).path).sort(),
    sigs,
  };
  const fileHash = fields.get('FileHash');
  if (fileHash !== undefined) info.fileHash = hashField('FileHash', fileHash);
  const fileSize = fields.get('FileSize');
  if (fileSize !== undefined) info.fileSize = size('FileSize', fileSize);
  const deriver = fields.get('Deriver');
  if (deriver !== undefined && deriver !== 'unknown-deriver') {
    info.deriver = parseBaseName(deriver).path;
  }
  const ca = fields.get('CA');
  if (ca !== undefined) info.ca = ca;
  return info;
}

function hashField(k: string, v: string): string {
  try {
    return normaliseSha256(v);
  } catch (e) {
    return bad(`${k}: ${(e as Error).message}`);
  }
}

function base(path: string): string {
  return path.slice(STORE_DIR.length + 1);
}

/** The narinfo text, fields in Nix's order (`References: ` keeps its space when empty, as Nix). */
export function formatNarInfo(i: NarInfo): string {
  const lines = [`StorePath: ${i.path}`, `URL: ${i.url}`, `Compression: ${i.compression}`];
  if (i.fileHash !== undefined) lines.push(`FileHash: ${i.fileHash}`);
  if (i.fileSize !== undefined) lines.push(`FileSize: ${i.fileSize}`);
  lines.push(`NarHash: ${i.narHash}`, `NarSize: ${i.narSize}`);
  lines.push(`References: ${i.references.map(base).join(' ')}`);
  if (i.deriver !== undefined) lines.push(`Deriver: ${base(i.deriver)}`);
  for (const s of i.sigs) lines.push(`Sig: ${s}`);
  if (i.ca !== undefined) lines.push(`CA: ${i.ca}`);
  return `${lines.join('\n')}\n`;
}

/** The narinfo of an uncompressed NAR served at `url` (what our caches write). */
export function uncompressedNarInfo(info: PathInfo, url: string): NarInfo {
  return { ...info, url, compression: 'none', fileHash: info.narHash, fileSize: info.narSize };
}

/** What a narinfo says of its path, without how the NAR is served (url, compression, file). */
export function pathInfoOfNarInfo(ni: NarInfo): PathInfo {
  return {
    path: ni.path,
    narHash: ni.narHash,
    narSize: ni.narSize,
    references: ni.references,
    sigs: ni.sigs,
    ...(ni.deriver !== undefined ? { deriver: ni.deriver } : {}),
    ...(ni.ca !== undefined ? { ca: ni.ca } : {}),
  };
}

export function nixCacheInfo(priority = 30): string {
  return `StoreDir: ${STORE_DIR}\nWantMassQuery: 1\nPriority: ${priority}\n`;
}
