// LibcBinding on koffi (the second backend, DEVMAPPER_FFI=koffi). A koffi call costs about a
// microsecond where an ffi-rs call costs tens under emulation, so latency-sensitive users pick
// it. Buffers are passed as `void *` directly: koffi hands the kernel the Buffer's own memory.
//
// koffi's own `.async()` runs on a pool thread and loses that thread's errno, so blocking calls
// run instead as plain synchronous calls inside worker threads of ours (this same file is the
// worker's entry), on buffers that live in a SharedArrayBuffer both threads see.
import { createRequire } from 'node:module';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { LibcBinding } from './binding.js';
import { LIBC_PATH } from './binding.js';

const require = createRequire(import.meta.url);
// Loaded on the first loadLibc(), not at import: importing the package loads no FFI package.
let koffi: typeof import('koffi');

interface LibcFunctions {
  open(path: string, flags: number, mode: number): number;
  close(fd: number): number;
  ioctl(fd: number, request: bigint, arg: Uint8Array): number;
  ioctlInt(fd: number, request: bigint, argument: number): number;
  mount(source: string, target: string, fstype: string, flags: bigint, data: string | null): number;
  umount2(target: string, flags: number): number;
  mknod(path: string, mode: number, dev: bigint): number;
  poll(fds: Uint8Array, nfds: number, timeout: number): number;
  flock(fd: number, operation: number): number;
  lsetxattr(path: string, name: string, value: Uint8Array | null, size: number, flags: number): number;
  lgetxattr(path: string, name: string, value: Uint8Array | null, size: number): number;
  llistxattr(path: string, list: Uint8Array | null, size: number): number;
  syncfs(fd: number): number;
  clock_gettime(clockId: number, timespec: Uint8Array): number;
}

function loadLibc(): LibcFunctions {
  koffi ??= require('koffi') as typeof import('koffi');
  const lib = koffi.load(LIBC_PATH);
  // ioctl is variadic in C; declared with fixed integer/pointer arguments it has the same
  // calling convention on x86-64 and arm64.
  return {
    open: lib.func('int open(const char *path, int flags, int mode)') as never,
    close: lib.func('int close(int fd)') as never,
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)') as never,
    ioctlInt: lib.func('ioctl', 'int', ['int', 'unsigned long', 'long']) as never,
    mount: lib.func(
      'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)',
    ) as never,
    umount2: lib.func('int umount2(const char *target, int flags)') as never,
    mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)') as never,
    poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)') as never,
    flock: lib.func('int flock(int fd, int operation)') as never,
    lsetxattr: lib.func(
      'int lsetxattr(const char *path, const char *name, void *value, size_t size, int flags)',
    ) as never,
    lgetxattr: lib.func('long lgetxattr(const char *path, const char *name, void *value, size_t size)') as never,
    llistxattr: lib.func('long llistxattr(const char *path, void *list, size_t size)') as never,
    syncfs: lib.func('int syncfs(int fd)') as never,
    clock_gettime: lib.func('int clock_gettime(int clockid, void *tp)') as never,
  };
}

const withErrno = (rc: number): number => (rc < 0 ? -koffi.errno() : rc);

/** struct pollfd { int fd; short events; short revents; } */
function pollOnce(libc: LibcFunctions, pollfd: Uint8Array, fd: number, events: number, timeoutMs: number): number {
  const view = new DataView(pollfd.buffer, pollfd.byteOffset, 8);
  view.setInt32(0, fd, true);
  view.setInt16(4, events, true);
  view.setInt16(6, 0, true);
  const rc = withErrno(libc.poll(pollfd, 1, timeoutMs));
  return rc <= 0 ? rc : view.getInt16(6, true);
}

type Job =
  | { id: number; op: 'ioctl'; fd: number; request: bigint; memory: SharedArrayBuffer; offset: number; length: number }
  | { id: number; op: 'poll'; fd: number; events: number; timeoutMs: number };

type JobInput = Job extends infer J ? (J extends Job ? Omit<J, 'id'> : never) : never;

const WORKER_MARK = 'devmapper-koffi-worker';

if (!isMainThread && workerData === WORKER_MARK && parentPort) {
  const libc = loadLibc();
  const port = parentPort;
  port.on('message', (job: Job) => {
    const rc =
      job.op === 'ioctl'
        ? withErrno(libc.ioctl(job.fd, job.request, new Uint8Array(job.memory, job.offset, job.length)))
        : pollOnce(libc, new Uint8Array(8), job.fd, job.events, job.timeoutMs);
    port.postMessage({ id: job.id, rc });
  });
}

/** Worker threads that run one blocking call at a time; idle ones do not keep the process alive. */
class BlockingCallPool {
  readonly #idle: Worker[] = [];
  #nextId = 0;

  run(job: JobInput): Promise<number> {
    // Workers inherit execArgv; --input-type (a `node --input-type=module -e` parent) makes a
    // file entry point fail with ERR_INPUT_TYPE_NOT_ALLOWED, so it is left out.
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const worker = this.#idle.pop() ?? new Worker(new URL(import.meta.url), { workerData: WORKER_MARK, execArgv });
    worker.ref();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const onMessage = (reply: { id: number; rc: number }): void => {
        if (reply.id !== id) return;
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.unref();
        this.#idle.push(worker);
        resolve(reply.rc);
      };
      const onError = (error: Error): void => {
        worker.off('message', onMessage);
        reject(error);
      };
      worker.on('message', onMessage);
      worker.once('error', onError);
      worker.postMessage({ ...job, id });
    });
  }
}

export function createKoffiBinding(): LibcBinding {
  const libc = loadLibc();
  const pool = new BlockingCallPool();
  return {
    backend: 'koffi',
    open: (path, flags, mode = 0) => withErrno(libc.open(path, flags, mode)),
    close: (fd) => withErrno(libc.close(fd)),
    ioctl: (fd, request, buffer) => withErrno(libc.ioctl(fd, request, buffer)),
    ioctlInt: (fd, request, argument) => withErrno(libc.ioctlInt(fd, request, argument)),
    allocateAsyncBuffer: (size) => Buffer.from(new SharedArrayBuffer(size)),
    ioctlAsync(fd, request, buffer) {
      if (!(buffer.buffer instanceof SharedArrayBuffer)) {
        return Promise.reject(new TypeError('koffi ioctlAsync needs a buffer from allocateAsyncBuffer()'));
      }
      return pool.run({
        op: 'ioctl',
        fd,
        request,
        memory: buffer.buffer,
        offset: buffer.byteOffset,
        length: buffer.length,
      });
    },
    mount: (source, target, fstype, flags, data) => withErrno(libc.mount(source, target, fstype, flags, data)),
    flock: (fd, operation) => withErrno(libc.flock(fd, operation)),
    umount2: (target, flags) => withErrno(libc.umount2(target, flags)),
    lsetxattr: (path, name, value, flags) =>
      withErrno(libc.lsetxattr(path, name, value.length === 0 ? null : value, value.length, flags)),
    lgetxattr: (path, name, buffer) =>
      withErrno(Number(libc.lgetxattr(path, name, buffer.length === 0 ? null : buffer, buffer.length))),
    syncfs: (fd) => withErrno(libc.syncfs(fd)),
    clockGettime: (clockId, timespec) => withErrno(libc.clock_gettime(clockId, timespec)),
    llistxattr: (path, buffer) =>
      withErrno(Number(libc.llistxattr(path, buffer.length === 0 ? null : buffer, buffer.length))),
    mknod: (path, mode, dev) => withErrno(libc.mknod(path, mode, dev)),
    pollAsync: (fd, events, timeoutMs) => pool.run({ op: 'poll', fd, events, timeoutMs }),
  };
}
