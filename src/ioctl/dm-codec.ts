// The device-mapper ioctl interface (linux/dm-ioctl.h) in bytes, by part of the interface:
// dm-header.ts (struct dm_ioctl), dm-table-codec.ts (dm_target_spec lists, dm_target_msg,
// string payloads) and dm-list-codec.ts (dm_name_list, dm_target_versions, dm_target_deps).
// This module gathers their names.
export * from './dm-header.js';
export * from './dm-list-codec.js';
export * from './dm-table-codec.js';
