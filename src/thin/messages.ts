// Builders for the thin-pool target messages (sent with DM_TARGET_MSG to the pool at sector 0).
// Grammar: Documentation/admin-guide/device-mapper/thin-provisioning.rst, "Messages", and
// pool_message() / process_*_mesg() in drivers/md/dm-thin.c:
//   create_thin <dev id>
//   create_snap <dev id> <origin id>
//   delete <dev id>
//   set_transaction_id <current id> <new id>
//   reserve_metadata_snap
//   release_metadata_snap
// Device ids are 24-bit (MAX_DEV_ID = (1 << 24) - 1 in dm-thin.c); transaction ids are u64.
import { InvalidArgumentError } from '../errors.js';
import { U64_MAX } from './units.js';

/** Largest thin device id the kernel accepts (MAX_DEV_ID in dm-thin.c). */
export const MAX_THIN_ID = (1 << 24) - 1;

/** Throws InvalidArgumentError unless `id` is an integer thin device id in 0 .. 2^24-1. */
export function assertThinId(id: number, argument = 'id'): void {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_THIN_ID) {
    throw new InvalidArgumentError(
      argument,
      `thin device ids are integers from 0 to ${MAX_THIN_ID} (24 bits), got ${typeof id === 'number' ? id : typeof id}`,
    );
  }
}

/** Validates a u64 transaction id (number must be a safe integer; bigint for larger ids). */
export function assertTransactionId(id: bigint | number, argument = 'transactionId'): bigint {
  let n: bigint;
  if (typeof id === 'bigint') {
    n = id;
  } else if (typeof id === 'number' && Number.isSafeInteger(id)) {
    n = BigInt(id);
  } else {
    const shown = typeof id === 'number' ? String(id) : typeof id;
    throw new InvalidArgumentError(
      argument,
      `transaction ids are integers from 0 to ${U64_MAX} (pass a bigint above 2^53), got ${shown}`,
    );
  }
  if (n < 0n || n > U64_MAX) {
    throw new InvalidArgumentError(argument, `transaction ids are integers from 0 to ${U64_MAX}, got ${n}`);
  }
  return n;
}

/** `create_thin <id>`: a new, empty thin device. */
export function createThinMessage(id: number): string {
  assertThinId(id, 'id');
  return `create_thin ${id}`;
}

/** `create_snap <id> <origin id>`: an internal snapshot of `originId` (suspend an active origin first). */
export function createSnapMessage(id: number, originId: number): string {
  assertThinId(id, 'id');
  assertThinId(originId, 'originId');
  return `create_snap ${id} ${originId}`;
}

/** `delete <id>`: deletes a thin device and releases its blocks. */
export function deleteMessage(id: number): string {
  assertThinId(id, 'id');
  return `delete ${id}`;
}

/** `set_transaction_id <current> <new>`: compare-and-swap of the pool's transaction id. */
export function setTransactionIdMessage(current: bigint | number, next: bigint | number): string {
  const cur = assertTransactionId(current, 'current');
  const nxt = assertTransactionId(next, 'next');
  return `set_transaction_id ${cur} ${nxt}`;
}

/** `reserve_metadata_snap`: takes a metadata snapshot for userspace readers (thin_dump -m). */
export function reserveMetadataSnapMessage(): string {
  return 'reserve_metadata_snap';
}

/** `release_metadata_snap`: releases the snapshot taken by reserve_metadata_snap. */
export function releaseMetadataSnapMessage(): string {
  return 'release_metadata_snap';
}
