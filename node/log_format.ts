// The log formats `--log-format` takes (node/log.ts); apart, with no imports, so that listing the
// commands does not load the logger.

export type LogFormat = 'auto' | 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['auto', 'text', 'json'];
