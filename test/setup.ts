// Shared vitest setup. Later, the Node 20 polyfill for Promise.withResolvers (libp2p 3) is imported
// here first, so every test file runs with the same runtime as the daemon's entry points.
export {};
