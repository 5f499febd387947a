// Kernel ABI of loop devices: every constant, request number and struct layout the loop code
// uses, declared once. Source of truth is the uapi header include/uapi/linux/loop.h (installed
// by linux-libc-dev as /usr/include/linux/loop.h); test/host/abi-conformance.test.ts compiles a
// C probe against it and checks every value below. Names are the C names.
import { field, type StructLayout } from './abi.js';

/** loop.h: `#define LO_NAME_SIZE 64` (lo_file_name / lo_crypt_name, NUL included). */
export const LO_NAME_SIZE = 64;
/** loop.h: `#define LO_KEY_SIZE 32` (lo_encrypt_key). */
export const LO_KEY_SIZE = 32;

/** loop.h `struct loop_info64` (LOOP_SET_STATUS64 / LOOP_GET_STATUS64). */
export const LOOP_INFO64_LAYOUT = {
  cName: 'loop_info64',
  size: 232,
  fields: {
    lo_device: field(0, 8), // r/o
    lo_inode: field(8, 8), // r/o
    lo_rdevice: field(16, 8), // r/o
    lo_offset: field(24, 8),
    lo_sizelimit: field(32, 8), // bytes, 0 = whole file
    lo_number: field(40, 4), // r/o
    lo_encrypt_type: field(44, 4), // obsolete, ignored
    lo_encrypt_key_size: field(48, 4),
    lo_flags: field(52, 4),
    lo_file_name: field(56, LO_NAME_SIZE),
    lo_crypt_name: field(120, LO_NAME_SIZE),
    lo_encrypt_key: field(184, LO_KEY_SIZE),
    lo_init: field(216, 16), // __u64 lo_init[2]
  },
} as const satisfies StructLayout;

/** loop.h `struct loop_config` (LOOP_CONFIGURE, Linux 5.8+). */
export const LOOP_CONFIG_LAYOUT = {
  cName: 'loop_config',
  size: 304,
  fields: {
    fd: field(0, 4),
    block_size: field(4, 4), // 0 = leave the default
    info: field(8, LOOP_INFO64_LAYOUT.size),
    __reserved: field(240, 64), // __u64 __reserved[8], must be zero
  },
} as const satisfies StructLayout;

/** Every loop layout above, for the conformance test. */
export const LOOP_STRUCT_LAYOUTS: readonly StructLayout[] = [LOOP_INFO64_LAYOUT, LOOP_CONFIG_LAYOUT];

// ---------------------------------------------------------------------------------------------
// Requests and flags
// ---------------------------------------------------------------------------------------------

/**
 * loop.h ioctl requests. These are plain 0x4Cxx numbers, not _IOC-encoded; bigint like the dm
 * requests so the FFI layer passes every request the same way. LOOP_SET_STATUS and
 * LOOP_GET_STATUS (struct loop_info, arch-dependent layout) are deliberately left out: the
 * 64-bit variants replace them.
 */
export const LOOP_REQUESTS = Object.freeze({
  LOOP_SET_FD: 0x4c00n,
  LOOP_CLR_FD: 0x4c01n,
  LOOP_SET_STATUS64: 0x4c04n,
  LOOP_GET_STATUS64: 0x4c05n,
  LOOP_CHANGE_FD: 0x4c06n,
  LOOP_SET_CAPACITY: 0x4c07n,
  LOOP_SET_DIRECT_IO: 0x4c08n,
  LOOP_SET_BLOCK_SIZE: 0x4c09n,
  LOOP_CONFIGURE: 0x4c0an, // Linux 5.8+
  // /dev/loop-control
  LOOP_CTL_ADD: 0x4c80n,
  LOOP_CTL_REMOVE: 0x4c81n,
  LOOP_CTL_GET_FREE: 0x4c82n,
});

export type LoopRequestName = keyof typeof LOOP_REQUESTS;

/** loop.h `enum { LO_FLAGS_READ_ONLY = 1, ... }` for lo_flags. */
export const LO_FLAGS = Object.freeze({
  LO_FLAGS_READ_ONLY: 1,
  LO_FLAGS_AUTOCLEAR: 4, // detach when the last opener closes
  LO_FLAGS_PARTSCAN: 8,
  LO_FLAGS_DIRECT_IO: 16,
});

/** loop.h: which lo_flags LOOP_SET_STATUS64 may set / clear and LOOP_CONFIGURE may set. */
export const LOOP_SET_STATUS_SETTABLE_FLAGS = LO_FLAGS.LO_FLAGS_AUTOCLEAR | LO_FLAGS.LO_FLAGS_PARTSCAN;
export const LOOP_SET_STATUS_CLEARABLE_FLAGS = LO_FLAGS.LO_FLAGS_AUTOCLEAR;
export const LOOP_CONFIGURE_SETTABLE_FLAGS =
  LO_FLAGS.LO_FLAGS_READ_ONLY | LO_FLAGS.LO_FLAGS_AUTOCLEAR | LO_FLAGS.LO_FLAGS_PARTSCAN | LO_FLAGS.LO_FLAGS_DIRECT_IO;
