export * from './errors.js';
export * from './thin/units.js';
export * from './thin/status.js';
export * from './thin/messages.js';
