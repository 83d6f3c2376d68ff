// NARs built in memory for the store's tests: the archive of one regular file.

import { narString } from '../../node/store/nar.ts';

/** The NAR of a regular file holding `contents` (what `nix-store --dump` writes for it). */
export function fileNar(contents: string | Uint8Array): Buffer {
  return Buffer.concat(
    ['nix-archive-1', '(', 'type', 'regular', 'contents', contents, ')'].map((t) => narString(t)),
  );
}
