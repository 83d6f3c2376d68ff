// The key-value space's bounds, apart from the state machine so that a client checking a value
// before it sends it (`pcr kv put`) does not load the state machine and its snapshot codec.

/** Longest key, in UTF-8 bytes. */
export const KEY_BYTES_MAX = 1024;
/** Longest value, in UTF-8 bytes. */
export const VALUE_BYTES_MAX = 256 * 1024;
