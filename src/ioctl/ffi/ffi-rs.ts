// LibcBinding on ffi-rs (the default backend). Measured facts this file relies on:
// - one prebuilt `load` parameter object per signature, its `paramsValue` array reused, is the
//   fastest call pattern (`define()` copies its descriptor on every call);
// - a Buffer passed as its 64-bit address is written in place by the kernel and costs less
//   than a U8Array argument; the address comes from ref-napi and is cached per buffer;
// - `errno: true` is only right when the call returned -1, so synchronous calls read errno
//   from a view on the main thread's `__errno_location()` made once, read before anything
//   else runs; calls run with `runInNewThread` read it through `errno: true`.
// - ffi-rs (and ref-napi) are loaded on the first createFfiRsBinding(), never at import: a
//   worker thread that has loaded ffi-rs takes the whole process down with SIGSEGV when it
//   exits, so importing the package (parsers only, or the koffi backend) must not load it.
import { createRequire } from 'node:module';
import type { LibcBinding } from './binding.js';
import { LIBC_PATH } from './binding.js';

const require = createRequire(import.meta.url);
type FfiRs = typeof import('ffi-rs');
let ffi: FfiRs;
let ref: { address(buffer: Buffer): number };

const LIBRARY = 'devmapper-libc';
let opened = false;

interface Call {
  library: string;
  funcName: string;
  retType: number;
  paramsType: number[];
  paramsValue: unknown[];
  errno?: boolean;
  runInNewThread?: boolean;
}

function prepared(funcName: string, retType: number, paramsType: number[], extra: Partial<Call> = {}): Call {
  return { library: LIBRARY, funcName, retType, paramsType, paramsValue: new Array(paramsType.length), ...extra };
}

function call(spec: Call): number {
  return ffi.load(spec as never) as unknown as number;
}

async function callAsync(spec: Call): Promise<number> {
  // A fresh object per call: concurrent async calls must not share paramsValue.
  const result = (await ffi.load({
    ...spec,
    paramsValue: [...spec.paramsValue],
    errno: true,
    runInNewThread: true,
  } as never)) as unknown as { value: number; errnoCode: number };
  return result.value < 0 ? -result.errnoCode : result.value;
}

export function createFfiRsBinding(): LibcBinding {
  ffi ??= require('ffi-rs') as FfiRs;
  ref ??= require('ref-napi') as { address(buffer: Buffer): number };
  const { DataType } = ffi;
  if (!opened) {
    ffi.open({ library: LIBRARY, path: LIBC_PATH });
    opened = true;
  }
  const errnoLocation = ffi.load({
    library: LIBRARY,
    funcName: '__errno_location',
    retType: DataType.External,
    paramsType: [],
    paramsValue: [],
  });
  const errnoView = ffi.createExternalBuffer(errnoLocation, 4);
  const errno = (): number => errnoView.readInt32LE(0);

  const openCall = prepared('open', DataType.I32, [DataType.String, DataType.I32, DataType.I32]);
  const closeCall = prepared('close', DataType.I32, [DataType.I32]);
  const ioctlCall = prepared('ioctl', DataType.I32, [DataType.I32, DataType.U64, DataType.U64]);
  const ioctlIntCall = prepared('ioctl', DataType.I32, [DataType.I32, DataType.U64, DataType.I64]);
  const mountCall = prepared('mount', DataType.I32, [
    DataType.String,
    DataType.String,
    DataType.String,
    DataType.U64,
    DataType.U64,
  ]);
  const mknodCall = prepared('mknod', DataType.I32, [DataType.String, DataType.U32, DataType.U64]);
  const umountCall = prepared('umount2', DataType.I32, [DataType.String, DataType.I32]);
  const pollCall = prepared('poll', DataType.I32, [DataType.U64, DataType.U64, DataType.I32]);
  const flockCall = prepared('flock', DataType.I32, [DataType.I32, DataType.I32]);
  // ssize_t results read as I32: the values (xattr sizes, -1) fit, and the low half of rax is eax.
  const lsetxattrCall = prepared('lsetxattr', DataType.I32, [
    DataType.String,
    DataType.String,
    DataType.U64,
    DataType.U64,
    DataType.I32,
  ]);
  const lgetxattrCall = prepared('lgetxattr', DataType.I32, [
    DataType.String,
    DataType.String,
    DataType.U64,
    DataType.U64,
  ]);
  const syncfsCall = prepared('syncfs', DataType.I32, [DataType.I32]);
  const clockCall = prepared('clock_gettime', DataType.I32, [DataType.I32, DataType.U64]);
  const llistxattrCall = prepared('llistxattr', DataType.I32, [DataType.String, DataType.U64, DataType.U64]);

  let lastBuffer: Buffer | undefined;
  let lastAddress = 0;
  const addressOf = (buffer: Buffer): number => {
    if (buffer !== lastBuffer) {
      lastBuffer = buffer;
      lastAddress = ref.address(buffer);
    }
    return lastAddress;
  };
  const result = (value: number): number => (value < 0 ? -errno() : value);

  return {
    backend: 'ffi-rs',
    open(path, flags, mode = 0) {
      openCall.paramsValue[0] = path;
      openCall.paramsValue[1] = flags;
      openCall.paramsValue[2] = mode;
      return result(call(openCall));
    },
    close(fd) {
      closeCall.paramsValue[0] = fd;
      return result(call(closeCall));
    },
    ioctl(fd, request, buffer) {
      const p = ioctlCall.paramsValue;
      p[0] = fd;
      p[1] = Number(request);
      p[2] = addressOf(buffer);
      return result(call(ioctlCall));
    },
    ioctlInt(fd, request, argument) {
      const p = ioctlIntCall.paramsValue;
      p[0] = fd;
      p[1] = Number(request);
      p[2] = argument;
      return result(call(ioctlIntCall));
    },
    allocateAsyncBuffer: (size) => Buffer.alloc(size),
    ioctlAsync(fd, request, buffer) {
      return callAsync({ ...ioctlCall, paramsValue: [fd, Number(request), ref.address(buffer)] });
    },
    mount(source, target, fstype, flags, data) {
      // data is `const void *`: a NUL-terminated string or NULL.
      const dataBuffer = data === null ? null : Buffer.from(`${data}\0`);
      const p = mountCall.paramsValue;
      p[0] = source;
      p[1] = target;
      p[2] = fstype;
      p[3] = Number(flags);
      p[4] = dataBuffer ? ref.address(dataBuffer) : 0;
      const rc = result(call(mountCall));
      dataBuffer?.length; // keep the data alive across the call
      return rc;
    },
    mknod(path, mode, dev) {
      mknodCall.paramsValue[0] = path;
      mknodCall.paramsValue[1] = mode;
      mknodCall.paramsValue[2] = Number(dev);
      return result(call(mknodCall));
    },
    flock(fd, operation) {
      flockCall.paramsValue[0] = fd;
      flockCall.paramsValue[1] = operation;
      return result(call(flockCall));
    },
    lsetxattr(path, name, value, flags) {
      const p = lsetxattrCall.paramsValue;
      p[0] = path;
      p[1] = name;
      p[2] = value.length === 0 ? 0 : ref.address(value);
      p[3] = value.length;
      p[4] = flags;
      return result(call(lsetxattrCall));
    },
    lgetxattr(path, name, buffer) {
      const p = lgetxattrCall.paramsValue;
      p[0] = path;
      p[1] = name;
      p[2] = buffer.length === 0 ? 0 : ref.address(buffer);
      p[3] = buffer.length;
      return result(call(lgetxattrCall));
    },
    clockGettime(clockId, timespec) {
      clockCall.paramsValue[0] = clockId;
      clockCall.paramsValue[1] = ref.address(timespec);
      return result(call(clockCall));
    },
    syncfs(fd) {
      syncfsCall.paramsValue[0] = fd;
      return result(call(syncfsCall));
    },
    llistxattr(path, buffer) {
      const p = llistxattrCall.paramsValue;
      p[0] = path;
      p[1] = buffer.length === 0 ? 0 : ref.address(buffer);
      p[2] = buffer.length;
      return result(call(llistxattrCall));
    },
    umount2(target, flags) {
      umountCall.paramsValue[0] = target;
      umountCall.paramsValue[1] = flags;
      return result(call(umountCall));
    },
    async pollAsync(fd, events, timeoutMs) {
      // struct pollfd { int fd; short events; short revents; }
      const pollfd = Buffer.alloc(8);
      pollfd.writeInt32LE(fd, 0);
      pollfd.writeInt16LE(events, 4);
      const rc = await callAsync({ ...pollCall, paramsValue: [ref.address(pollfd), 1, timeoutMs] });
      return rc <= 0 ? rc : pollfd.readInt16LE(6);
    },
  };
}
