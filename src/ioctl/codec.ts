// The codecs for the kernel interfaces this project speaks, by interface: dm-codec.ts
// (linux/dm-ioctl.h), loop-codec.ts (linux/loop.h), and the byte helpers both use
// (byte-codec.ts). This module gathers their public names for the tests and benchmarks.
export { validateDeviceName, validateUuid, validateTargetType, truncateUtf8 } from './byte-codec.js';
export * from './dm-codec.js';
export * from './loop-codec.js';
