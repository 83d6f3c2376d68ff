// Node names and short IDs: how people name members. Pure: the daemon picks its unique name from
// the member table with it, and `pcr` resolves what a user typed (a name, a short ID, a prefix or
// a full peer ID) to a member with it.
//
// Every Ed25519 peer ID starts with the same 8 characters (12D3KooW: the multihash and key type),
// so a short ID is the 8 characters after them; a prefix is matched against the full ID and
// against the ID without that common head.

/** Characters every Ed25519 peer ID starts with. */
export const PEER_ID_COMMON_HEAD = '12D3KooW';
/** Characters in a short ID. */
export const SHORT_ID_CHARS = 8;
/** Characters of the short ID appended to a name that another member already holds. */
export const NAME_SUFFIX_CHARS = 4;

/** The distinctive part of a peer ID (after the common head, when it has it). */
function significant(id: string): string {
  return id.startsWith(PEER_ID_COMMON_HEAD) ? id.slice(PEER_ID_COMMON_HEAD.length) : id;
}

export function shortId(id: string): string {
  return significant(id).slice(0, SHORT_ID_CHARS);
}

export interface NamedMember {
  readonly id: string;
  readonly name?: string | undefined;
}

/**
 * The name this member should hold: `wanted`, unless a member with a smaller ID holds it already,
 * then `wanted-<first chars of the short ID>`. Every member applies the same rule to the same
 * table, so two members that picked the same name converge: the smaller ID keeps it.
 */
export function uniqueName(wanted: string, id: string, members: readonly NamedMember[]): string {
  const taken = members.some((m) => m.id !== id && m.id < id && m.name === wanted);
  return taken ? `${wanted}-${shortId(id).slice(0, NAME_SUFFIX_CHARS)}` : wanted;
}

export type Resolved =
  | { readonly ok: true; readonly id: string }
  | { readonly ok: false; readonly why: 'none' | 'ambiguous'; readonly candidates: string[] };

/**
 * The member `x` names: an exact name or full ID first, else the only member whose ID (or the ID
 * without its common head) starts with `x`.
 */
export function resolveMember(x: string, members: readonly NamedMember[]): Resolved {
  const exact = members.filter((m) => m.id === x || m.name === x);
  const hits =
    exact.length > 0
      ? exact
      : members.filter(
          (m) => x.length > 0 && (m.id.startsWith(x) || significant(m.id).startsWith(x)),
        );
  if (hits.length === 1) return { ok: true, id: hits[0]!.id };
  return {
    ok: false,
    why: hits.length === 0 ? 'none' : 'ambiguous',
    candidates: hits.map((m) => m.id),
  };
}
