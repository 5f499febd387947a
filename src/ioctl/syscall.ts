// The choke point every ioctl in the project passes through (the dm engine and the loop
// module alike): one place that calls the FFI, traces the call, and turns -errno into a
// IoctlError (a DmSystemError) carrying the operation and the device.
import { IoctlError } from '../errors.js';
import { logger, traceEnabled } from '../log.js';
import type { LibcBinding } from './ffi/binding.js';

export interface IoctlContext {
  /** The request's name, e.g. 'DM_DEV_CREATE' or 'LOOP_CONFIGURE'. */
  operation: string;
  /** The device (dm name, loop path) for the error message. */
  device?: string;
  /** Extra words for the trace line. */
  note?: string;
}

/** ioctl(fd, request, buffer): returns the non-negative result or throws a DmSystemError. */
export function ioctl(
  binding: LibcBinding,
  fd: number,
  request: bigint,
  buffer: Buffer,
  context: IoctlContext,
): number {
  return ioctlNamed(binding, fd, request, buffer, context.operation, context.device, context.note);
}

/**
 * ioctl() with its context as plain arguments, for the dm engine's hot path: a call that
 * succeeds untraced builds no context object. A failure with errno `answerErrno` is returned
 * as -errno instead of thrown: for the caller that expects it (a lookup of a device that may
 * not exist) an error object, with its stack trace, costs more than the ioctl.
 */
export function ioctlNamed(
  binding: LibcBinding,
  fd: number,
  request: bigint,
  buffer: Buffer,
  operation: string,
  device: string | undefined,
  note: string | undefined,
  answerErrno = 0,
): number {
  const rc = binding.ioctl(fd, request, buffer);
  if (traceEnabled) logger.trace(`ioctl ${operation} ${device ?? ''} ${note ?? ''} -> ${rc}`);
  if (rc < 0 && -rc !== answerErrno) throw new IoctlError({ errno: -rc, operation, device });
  return rc;
}

/** ioctl(fd, request, integer): for the requests that take a number, not a pointer. */
export function ioctlInt(
  binding: LibcBinding,
  fd: number,
  request: bigint,
  argument: number,
  context: IoctlContext,
): number {
  const rc = binding.ioctlInt(fd, request, argument);
  if (traceEnabled) trace(context, rc);
  if (rc < 0) throw ioctlError(context, -rc);
  return rc;
}

/** The async form, for requests that block (run off the main thread). */
export async function ioctlAsync(
  binding: LibcBinding,
  fd: number,
  request: bigint,
  buffer: Buffer,
  context: IoctlContext,
): Promise<number> {
  const rc = await binding.ioctlAsync(fd, request, buffer);
  if (traceEnabled) trace(context, rc);
  if (rc < 0) throw ioctlError(context, -rc);
  return rc;
}

export function ioctlError(context: IoctlContext, errno: number, detail?: string): IoctlError {
  return new IoctlError({ errno, operation: context.operation, device: context.device, detail });
}

function trace(context: IoctlContext, rc: number): void {
  logger.trace(`ioctl ${context.operation} ${context.device ?? ''} ${context.note ?? ''} -> ${rc}`);
}
