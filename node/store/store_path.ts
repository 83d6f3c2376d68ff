// Store paths: `/nix/store/<32 nix32 chars>-<name>`. The name rules are Nix's (letters, digits
// and `+-._?=`, not starting with a dot, at most 211 characters). Every path that crosses the
// network or the disk goes through parseStorePath before it is used to name a file.

import { isNix32 } from './base32.ts';
import { StoreError } from './errors.ts';

export const STORE_DIR = '/nix/store';
export const HASH_PART_CHARS = 32;
/** Nix's bound: a store path's base name fits 255 bytes with room for `.drv` suffixes and more. */
export const STORE_PATH_NAME_CHARS_MAX = 211;

export interface StorePath {
  readonly hashPart: string;
  readonly name: string;
  /** `<hash>-<name>` */
  readonly baseName: string;
  /** `/nix/store/<hash>-<name>` */
  readonly path: string;
}

const NAME = /^[A-Za-z0-9+\-._?=]+$/;

export function isHashPart(s: string): boolean {
  return s.length === HASH_PART_CHARS && isNix32(s);
}

/** Parses a base name `<hash>-<name>`. */
export function parseBaseName(base: string): StorePath {
  const hashPart = base.slice(0, HASH_PART_CHARS);
  const name = base.slice(HASH_PART_CHARS + 1);
  const bad = (why: string): never => {
    throw new StoreError(
      'BAD_STORE_PATH',
      `invalid store path ${JSON.stringify(`${STORE_DIR}/${base}`.slice(0, 300))}: ${why}`,
    );
  };
  if (base[HASH_PART_CHARS] !== '-' || !isHashPart(hashPart)) {
    bad('expected 32 nix32 characters and a dash');
  }
  if (name.length === 0) bad('empty name');
  if (name.length > STORE_PATH_NAME_CHARS_MAX) bad(`name longer than ${STORE_PATH_NAME_CHARS_MAX}`);
  if (name.startsWith('.')) bad('name starts with a dot');
  if (!NAME.test(name)) bad('name has characters outside [A-Za-z0-9+-._?=]');
  return { hashPart, name, baseName: base, path: `${STORE_DIR}/${base}` };
}

export function parseStorePath(path: string): StorePath {
  if (!path.startsWith(`${STORE_DIR}/`)) {
    throw new StoreError(
      'BAD_STORE_PATH',
      `invalid store path ${JSON.stringify(path.slice(0, 300))}: not in ${STORE_DIR}`,
    );
  }
  return parseBaseName(path.slice(STORE_DIR.length + 1));
}

export function hashPartOf(path: string): string {
  return parseStorePath(path).hashPart;
}

export function baseNameOf(path: string): string {
  return parseStorePath(path).baseName;
}
