// Kernel ABI of device-mapper, device numbers and block-device ioctls: every constant, request
// number and struct layout the ioctl layer uses for them, declared once, and the struct layout
// types the loop device's ABI (loop-abi.ts) uses too. Sources of truth are the uapi headers
// include/uapi/linux/dm-ioctl.h and include/uapi/linux/fs.h (installed by linux-libc-dev as
// /usr/include/linux/*.h); test/host/abi-conformance.test.ts compiles a C probe against them
// and checks every value below. Names are the C names, so they can be grepped both ways.
import { InvalidArgumentError } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// Struct layouts
// ---------------------------------------------------------------------------------------------

/** One field of a kernel struct. `size` 0 marks a C flexible array member (`char name[]`). */
export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}

/** A kernel struct: its C tag, `sizeof`, and its fields keyed by their C names. */
export interface StructLayout {
  readonly cName: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

export const field = (offset: number, size: number): FieldLayout => ({ offset, size });

/** dm-ioctl.h: `#define DM_MAX_TYPE_NAME 16` (target type, NUL included). */
export const DM_MAX_TYPE_NAME = 16;
/** dm-ioctl.h: `#define DM_NAME_LEN 128` (device name, NUL included). */
export const DM_NAME_LEN = 128;
/** dm-ioctl.h: `#define DM_UUID_LEN 129` (device uuid, NUL included). */
export const DM_UUID_LEN = 129;
/** dm-ioctl.h: `#define DM_DIR "mapper"`, the directory under /dev for named nodes. */
export const DM_DIR = 'mapper';
/** dm-ioctl.h: `#define DM_CONTROL_NODE "control"`, /dev/mapper/control. */
export const DM_CONTROL_NODE = 'control';

/**
 * dm-ioctl.h `struct dm_ioctl`: the header at the start of every dm ioctl buffer. `dev` is a
 * __u64 after an explicit `padding` word, so it sits naturally aligned at 40; the 7-byte
 * `data` tail pads the struct to a multiple of 8 (312).
 */
export const DM_IOCTL_LAYOUT = {
  cName: 'dm_ioctl',
  size: 312,
  fields: {
    version: field(0, 12), // __u32 version[3], in/out
    data_size: field(12, 4), // whole buffer, header included
    data_start: field(16, 4), // payload offset from the start of the header
    target_count: field(20, 4),
    open_count: field(24, 4), // __s32, out
    flags: field(28, 4),
    event_nr: field(32, 4), // event number, or udev cookie on input
    padding: field(36, 4),
    dev: field(40, 8), // huge_encode_dev() of the dm device
    name: field(48, DM_NAME_LEN),
    uuid: field(176, DM_UUID_LEN),
    data: field(305, 7),
  },
} as const satisfies StructLayout;

/** sizeof(struct dm_ioctl). */
export const DM_IOCTL_SIZE = DM_IOCTL_LAYOUT.size;

/**
 * dm-ioctl.c aligns every record it reads or writes (specs, names, versions) to 8 bytes
 * (ALIGN_MASK 7); the payload itself starts at align(sizeof(struct dm_ioctl)) = 312.
 */
export const DM_ALIGN = 8;

/** Rounds up to the next multiple of DM_ALIGN. */
export function align8(n: number): number {
  return (n + DM_ALIGN - 1) & ~(DM_ALIGN - 1);
}

/** dm-ioctl.h `struct dm_target_spec`; the parameter string follows it directly. */
export const DM_TARGET_SPEC_LAYOUT = {
  cName: 'dm_target_spec',
  size: 40,
  fields: {
    sector_start: field(0, 8),
    length: field(8, 8),
    status: field(16, 4), // __s32, set by the kernel on output only
    next: field(20, 4), // TABLE_LOAD: from this spec; TABLE_STATUS: from the data area
    target_type: field(24, DM_MAX_TYPE_NAME),
  },
} as const satisfies StructLayout;

/** dm-ioctl.h `struct dm_target_deps` (DM_TABLE_DEPS output). */
export const DM_TARGET_DEPS_LAYOUT = {
  cName: 'dm_target_deps',
  size: 8,
  fields: {
    count: field(0, 4),
    padding: field(4, 4),
    dev: field(8, 0), // __u64 dev[count]
  },
} as const satisfies StructLayout;

/**
 * dm-ioctl.h `struct dm_name_list` (DM_LIST_DEVICES output). The name starts at 12, not at
 * sizeof (16). After the name's NUL, aligned to 8, newer kernels add __u32 event_nr,
 * __u32 flags and, with DM_NAME_LIST_FLAG_HAS_UUID, the NUL-terminated uuid.
 */
export const DM_NAME_LIST_LAYOUT = {
  cName: 'dm_name_list',
  size: 16,
  fields: {
    dev: field(0, 8),
    next: field(8, 4), // from the start of this record; 0 ends the list
    name: field(12, 0),
  },
} as const satisfies StructLayout;

/** dm-ioctl.h: flags word after a dm_name_list name (interface 4.45+, with DM_UUID_FLAG). */
export const DM_NAME_LIST_FLAG_HAS_UUID = 1;
export const DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID = 2;

/** dm-ioctl.h `struct dm_target_versions` (DM_LIST_VERSIONS / DM_GET_TARGET_VERSION). */
export const DM_TARGET_VERSIONS_LAYOUT = {
  cName: 'dm_target_versions',
  size: 16,
  fields: {
    next: field(0, 4), // from the start of this record; 0 ends the list
    version: field(4, 12), // __u32 version[3]
    name: field(16, 0),
  },
} as const satisfies StructLayout;

/** dm-ioctl.h `struct dm_target_msg` (DM_TARGET_MSG input). */
export const DM_TARGET_MSG_LAYOUT = {
  cName: 'dm_target_msg',
  size: 8,
  fields: {
    sector: field(0, 8),
    message: field(8, 0),
  },
} as const satisfies StructLayout;

/** Every dm layout above, for the conformance test (loop-abi.ts lists the loop ones). */
export const DM_STRUCT_LAYOUTS: readonly StructLayout[] = [
  DM_IOCTL_LAYOUT,
  DM_TARGET_SPEC_LAYOUT,
  DM_TARGET_DEPS_LAYOUT,
  DM_NAME_LIST_LAYOUT,
  DM_TARGET_VERSIONS_LAYOUT,
  DM_TARGET_MSG_LAYOUT,
];

// ---------------------------------------------------------------------------------------------
// Interface version and ioctl request numbers
// ---------------------------------------------------------------------------------------------

/** dm-ioctl.h DM_VERSION_MAJOR / MINOR / PATCHLEVEL of the header this file follows. */
export const DM_VERSION_MAJOR = 4;
export const DM_VERSION_MINOR = 47;
export const DM_VERSION_PATCHLEVEL = 0;

/** A dm interface version, as in dm_ioctl.version. */
export type DmVersion = readonly [major: number, minor: number, patchlevel: number];

/** True when `have` is at least `need` (major must match exactly: no cross-major compat). */
export function versionAtLeast(have: readonly number[], need: DmVersion): boolean {
  const [hMaj = 0, hMin = 0, hPat = 0] = have;
  if (hMaj !== need[0]) return false;
  if (hMin !== need[1]) return hMin > need[1];
  return hPat >= need[2];
}

/** dm-ioctl.h `#define DM_IOCTL 0xfd`, the ioctl type byte. */
export const DM_IOCTL = 0xfd;

/**
 * The `_IOC()` encoding of include/uapi/asm-generic/ioctl.h: nr in bits 0-7, type in 8-15,
 * size from bit 16, direction on top. PowerPC and MIPS use a 13-bit size and READ=2,
 * WRITE=4 at bit 29 (arch/{powerpc,mips}/include/uapi/asm/ioctl.h); for _IOWR with a
 * small struct both give the same number, but compute it honestly anyway.
 * Returned as bigint: the values exceed 2^31 and must travel as unsigned 64-bit.
 */
export function iowr(type: number, nr: number, size: number, arch: string = process.arch): bigint {
  const altLayout =
    arch === 'ppc' ||
    arch === 'ppc64' ||
    arch === 'mips' ||
    arch === 'mipsel' ||
    arch === 'mips64' ||
    arch === 'mips64el';
  const sizeBits = altLayout ? 13 : 14;
  const readWrite = altLayout ? 2 | 4 : 2 | 1; // _IOC_READ | _IOC_WRITE
  if (!Number.isInteger(size) || size < 0 || size >= 1 << sizeBits) {
    throw new InvalidArgumentError('size', `ioctl argument size ${size} does not fit _IOC`);
  }
  return (
    (BigInt(readWrite) << BigInt(16 + sizeBits)) |
    (BigInt(size) << 16n) |
    (BigInt(type & 0xff) << 8n) |
    BigInt(nr & 0xff)
  );
}

/** C names of the dm commands, in the order of the dm-ioctl.h command enum. */
export type DmCommandName =
  | 'DM_VERSION'
  | 'DM_REMOVE_ALL'
  | 'DM_LIST_DEVICES'
  | 'DM_DEV_CREATE'
  | 'DM_DEV_REMOVE'
  | 'DM_DEV_RENAME'
  | 'DM_DEV_SUSPEND'
  | 'DM_DEV_STATUS'
  | 'DM_DEV_WAIT'
  | 'DM_TABLE_LOAD'
  | 'DM_TABLE_CLEAR'
  | 'DM_TABLE_DEPS'
  | 'DM_TABLE_STATUS'
  | 'DM_LIST_VERSIONS'
  | 'DM_TARGET_MSG'
  | 'DM_DEV_SET_GEOMETRY'
  | 'DM_DEV_ARM_POLL'
  | 'DM_GET_TARGET_VERSION';

/** One dm command: `nr` is DM_<name>_CMD, `request` is _IOWR(DM_IOCTL, nr, struct dm_ioctl). */
export interface DmCommand {
  readonly name: DmCommandName;
  readonly nr: number;
  readonly request: bigint;
  /**
   * The interface version to put in dm_ioctl.version: the oldest that knows the command, so
   * the library keeps working on old kernels (the kernel refuses a newer minor than its own).
   */
  readonly minVersion: DmVersion;
}

const command = (name: DmCommandName, nr: number, minVersion: DmVersion): DmCommand =>
  Object.freeze({ name, nr, request: iowr(DM_IOCTL, nr, DM_IOCTL_SIZE), minVersion });

/**
 * The commands (dm-ioctl.h `enum { DM_VERSION_CMD = 0, ... }` and the DM_* request macros).
 * Minimum versions follow the history of drivers/md/dm-ioctl.c (the same table libdm keeps):
 * the 13 original commands exist since 4.0.0; DM_LIST_VERSIONS came in 4.1, DM_TARGET_MSG in
 * 4.2, DM_DEV_SET_GEOMETRY in 4.6, DM_DEV_ARM_POLL in 4.36 (Linux 4.13), and
 * DM_GET_TARGET_VERSION in 4.41 (Linux 5.4).
 */
export const DM_COMMANDS: { readonly [K in DmCommandName]: DmCommand } = Object.freeze({
  DM_VERSION: command('DM_VERSION', 0, [4, 0, 0]),
  DM_REMOVE_ALL: command('DM_REMOVE_ALL', 1, [4, 0, 0]),
  DM_LIST_DEVICES: command('DM_LIST_DEVICES', 2, [4, 0, 0]),
  DM_DEV_CREATE: command('DM_DEV_CREATE', 3, [4, 0, 0]),
  DM_DEV_REMOVE: command('DM_DEV_REMOVE', 4, [4, 0, 0]),
  DM_DEV_RENAME: command('DM_DEV_RENAME', 5, [4, 0, 0]),
  DM_DEV_SUSPEND: command('DM_DEV_SUSPEND', 6, [4, 0, 0]),
  DM_DEV_STATUS: command('DM_DEV_STATUS', 7, [4, 0, 0]),
  DM_DEV_WAIT: command('DM_DEV_WAIT', 8, [4, 0, 0]),
  DM_TABLE_LOAD: command('DM_TABLE_LOAD', 9, [4, 0, 0]),
  DM_TABLE_CLEAR: command('DM_TABLE_CLEAR', 10, [4, 0, 0]),
  DM_TABLE_DEPS: command('DM_TABLE_DEPS', 11, [4, 0, 0]),
  DM_TABLE_STATUS: command('DM_TABLE_STATUS', 12, [4, 0, 0]),
  DM_LIST_VERSIONS: command('DM_LIST_VERSIONS', 13, [4, 1, 0]),
  DM_TARGET_MSG: command('DM_TARGET_MSG', 14, [4, 2, 0]),
  DM_DEV_SET_GEOMETRY: command('DM_DEV_SET_GEOMETRY', 15, [4, 6, 0]),
  DM_DEV_ARM_POLL: command('DM_DEV_ARM_POLL', 16, [4, 36, 0]),
  DM_GET_TARGET_VERSION: command('DM_GET_TARGET_VERSION', 17, [4, 41, 0]),
});

/**
 * Interface versions at which DM_LIST_DEVICES records grew (drivers/md/dm-ioctl.c
 * list_devices()): since 4.37 (Linux 4.14) a __u32 event_nr follows the aligned name and the
 * record is padded to 8 after it; since 4.45 (Linux 5.13) the word after event_nr carries
 * DM_NAME_LIST_FLAG_* and, when asked with DM_UUID_FLAG, the uuid follows. Before 4.45 that
 * second word is not written at all (it holds whatever the caller's buffer held).
 */
export const DM_NAME_LIST_EVENT_NR_VERSION: DmVersion = [4, 37, 0];
export const DM_NAME_LIST_UUID_VERSION: DmVersion = [4, 45, 0];

// ---------------------------------------------------------------------------------------------
// dm_ioctl.flags
// ---------------------------------------------------------------------------------------------

/** dm-ioctl.h status bits for dm_ioctl.flags ("In" = caller sets, "Out" = kernel sets). */
export const DM_FLAGS = Object.freeze({
  DM_READONLY_FLAG: 1 << 0, // In/Out
  DM_SUSPEND_FLAG: 1 << 1, // In/Out; DM_DEV_SUSPEND without it means resume
  DM_PERSISTENT_DEV_FLAG: 1 << 3, // In: DM_DEV_CREATE with the minor given in dev
  DM_STATUS_TABLE_FLAG: 1 << 4, // In: DM_TABLE_STATUS returns the table, not the status
  DM_ACTIVE_PRESENT_FLAG: 1 << 5, // Out
  DM_INACTIVE_PRESENT_FLAG: 1 << 6, // Out
  DM_BUFFER_FULL_FLAG: 1 << 8, // Out: grow the buffer and ask again
  DM_SKIP_BDGET_FLAG: 1 << 9, // In, now ignored
  DM_SKIP_LOCKFS_FLAG: 1 << 10, // In: do not freeze filesystems on suspend
  DM_NOFLUSH_FLAG: 1 << 11, // In
  DM_QUERY_INACTIVE_TABLE_FLAG: 1 << 12, // In (4.16+)
  DM_UEVENT_GENERATED_FLAG: 1 << 13, // Out
  DM_UUID_FLAG: 1 << 14, // In: rename sets the uuid; list_devices returns uuids (4.45+)
  DM_SECURE_DATA_FLAG: 1 << 15, // In: kernel wipes its copies of the buffer
  DM_DATA_OUT_FLAG: 1 << 16, // Out: DM_TARGET_MSG produced text
  DM_DEFERRED_REMOVE: 1 << 17, // In/Out (note: no _FLAG suffix in the header)
  DM_INTERNAL_SUSPEND_FLAG: 1 << 18, // Out
  DM_IMA_MEASUREMENT_FLAG: 1 << 19, // In
});

export type DmFlagName = keyof typeof DM_FLAGS;

// ---------------------------------------------------------------------------------------------
// Device numbers
// ---------------------------------------------------------------------------------------------

/** include/linux/kdev_t.h: the kernel's dev_t has a 12-bit major and a 20-bit minor. */
export const KERNEL_MAJOR_MAX = (1 << 12) - 1;
export const KERNEL_MINOR_MAX = (1 << 20) - 1;

/**
 * The kernel's huge_encode_dev() (= new_encode_dev(), include/linux/kdev_t.h), which fills
 * dm_ioctl.dev, dm_name_list.dev, dm_target_deps.dev[] and loop_info64.lo_device:
 * minor bits 0-7 stay at 0-7, major goes to 8-19, minor bits 8-19 go to 20-31.
 */
export function encodeDev(major: number, minor: number): bigint {
  if (!Number.isInteger(major) || major < 0 || major > KERNEL_MAJOR_MAX) {
    throw new InvalidArgumentError('major', `${major} is outside 0..${KERNEL_MAJOR_MAX}`);
  }
  if (!Number.isInteger(minor) || minor < 0 || minor > KERNEL_MINOR_MAX) {
    throw new InvalidArgumentError('minor', `${minor} is outside 0..${KERNEL_MINOR_MAX}`);
  }
  return BigInt(((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0);
}

/**
 * Inverse of encodeDev. Decodes with glibc's 64-bit gnu_dev_major/gnu_dev_minor split, which
 * equals the kernel's new_decode_dev() for every value the kernel produces (< 2^32) and also
 * reads a userspace st_rdev correctly.
 */
export function decodeDev(dev: bigint): { major: number; minor: number } {
  if (typeof dev !== 'bigint' || dev < 0n || dev > 0xffff_ffff_ffff_ffffn) {
    throw new InvalidArgumentError('dev', `${String(dev)} is not an unsigned 64-bit bigint`);
  }
  const d = dev;
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n);
  const minor = (d & 0xffn) | ((d >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

// ---------------------------------------------------------------------------------------------
// Block device ioctls (include/uapi/linux/fs.h)
// ---------------------------------------------------------------------------------------------

/**
 * fs.h block requests the project uses: BLKGETSIZE64 = _IOR(0x12, 114, size_t) reads the size
 * in bytes; BLKDISCARD = _IO(0x12, 119) takes a pointer to `uint64_t range[2]` (start, length
 * in bytes) and discards it, which gives a thin device's blocks back to its pool.
 */
export const BLOCK_REQUESTS = Object.freeze({
  BLKGETSIZE64: 0x80081272n,
  BLKDISCARD: 0x1277n,
});
