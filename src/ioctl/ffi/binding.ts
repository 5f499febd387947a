// The seam between devmapper and the FFI package: the few libc calls the project makes.
// Two small files implement it (ffi-rs.ts, koffi.ts); they are the only files that load an
// FFI package, and they load it when the first binding is created (select.ts), not at import. Everything above takes a `LibcBinding` and never knows which one it got.
//
// Convention: calls return the C result (>= 0) or `-errno`, never throw, so the hot path
// allocates nothing; callers turn a negative result into a DmSystemError with context.

export type FfiBackendName = 'ffi-rs' | 'koffi';

export interface LibcBinding {
  readonly backend: FfiBackendName;
  /** open(2): a file descriptor or -errno. */
  open(path: string, flags: number, mode?: number): number;
  /** close(2): 0 or -errno. */
  close(fd: number): number;
  /** ioctl(2) whose argument points at `buffer` (the kernel reads and writes it in place). */
  ioctl(fd: number, request: bigint, buffer: Buffer): number;
  /** ioctl(2) with an integer argument (LOOP_SET_FD, LOOP_CTL_GET_FREE, LOOP_SET_CAPACITY ...). */
  ioctlInt(fd: number, request: bigint, argument: number): number;
  /** A buffer ioctlAsync() can hand to another thread (each backend has its own needs). */
  allocateAsyncBuffer(size: number): Buffer;
  /** ioctl(2) off the main thread, for calls that block (suspend with flush, DEV_WAIT, remove). */
  ioctlAsync(fd: number, request: bigint, buffer: Buffer): Promise<number>;
  /** mount(2). `data` may be null. */
  mount(source: string, target: string, fstype: string, flags: bigint, data: string | null): number;
  /** mknod(2); `dev` is glibc's dev_t (makedev()). */
  mknod(path: string, mode: number, dev: bigint): number;
  /** flock(2) (LOCK_EX, LOCK_NB, LOCK_UN ...): 0 or -errno. */
  flock(fd: number, operation: number): number;
  /** umount2(2). */
  umount2(target: string, flags: number): number;
  /** lsetxattr(2) (never follows a symlink): 0 or -errno. */
  lsetxattr(path: string, name: string, value: Buffer, flags: number): number;
  /** lgetxattr(2) into `buffer` (an empty buffer asks for the size): bytes or -errno. */
  lgetxattr(path: string, name: string, buffer: Buffer): number;
  /** syncfs(2) of the filesystem holding `fd`: 0 or -errno (writeback errors since the fd was opened, Linux ≥ 5.8). */
  syncfs(fd: number): number;
  /** llistxattr(2): NUL-separated names into `buffer` (empty: the size needed), bytes or -errno. */
  llistxattr(path: string, buffer: Buffer): number;
  /** clock_gettime(2) into `timespec` (16 bytes: tv_sec, tv_nsec as 64-bit words): 0 or -errno. */
  clockGettime(clockId: number, timespec: Buffer): number;
  /** poll(2) on one fd for `events`, on a pool thread: revents, 0 on timeout, or -errno. */
  pollAsync(fd: number, events: number, timeoutMs: number): Promise<number>;
}

/** open(2) flags used by the project (asm-generic/fcntl.h, the same on x86-64 and arm64). */
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const O_EXCL = 0o200;
export const POLLIN = 0x1;
/** sys/file.h flock(2) operations. */
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
/** time.h clock ids (linux/time.h). */
export const CLOCK_REALTIME = 0;
/** stat.h S_IFBLK, for mknod of a block device node. */
export const S_IFBLK = 0o060000;
/** stat.h file types for mknod of layer entries (character devices, fifos). */
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export const LIBC_PATH = 'libc.so.6';
