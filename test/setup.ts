// Shared vitest setup: the Node 20 polyfill for Promise.withResolvers (libp2p 3) first, so every
// test file runs with the same runtime as the daemon's entry points.
import '../node/polyfill.ts';
