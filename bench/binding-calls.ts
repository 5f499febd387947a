// The FFI floor of one dm ioctl: the call through the library's LibcBinding on a header laid out
// once, with no engine, codec or reply objects around it (what a minimal koffi program does):
// per call only the fields the kernel writes back are reset. The latency part times it beside
// DeviceMapper on the same backend, so DeviceMapper's own price per call (DeviceMapper ÷ this)
// and Node's and the FFI's (this ÷ C) show apart. Replies are not decoded: only the return code
// is checked.
import { DM_COMMANDS, DM_IOCTL_LAYOUT, DM_IOCTL_SIZE, type DmCommandName } from '../src/ioctl/abi.js';
import { type LibcBinding, O_CLOEXEC, O_RDWR } from '../src/ioctl/ffi/binding.js';

const F = DM_IOCTL_LAYOUT.fields;
/** Room for a pool's or a thin device's status line (C's dm_answer settles near this too). */
const ANSWER_ROOM = 512;

export class BindingCalls {
  readonly #binding: LibcBinding;
  readonly #fd: number;

  constructor(binding: LibcBinding) {
    this.#binding = binding;
    const fd = binding.open('/dev/mapper/control', O_RDWR | O_CLOEXEC);
    if (fd < 0) throw new Error(`open /dev/mapper/control: errno ${-fd}`);
    this.#fd = fd;
  }

  /** A header-only command (DM_VERSION, DM_DEV_STATUS, DM_DEV_SUSPEND ...). */
  simple(command: DmCommandName, name: string | undefined, flags = 0): () => void {
    return this.#prepare(command, name, flags, DM_IOCTL_SIZE);
  }

  /** A command the kernel answers with a payload (DM_TABLE_STATUS, DM_LIST_DEVICES ...). */
  answer(command: DmCommandName, name: string | undefined, flags = 0): () => void {
    return this.#prepare(command, name, flags, DM_IOCTL_SIZE + ANSWER_ROOM);
  }

  /** DM_TARGET_MSG of `text` to sector 0 of `device`. */
  message(device: string, text: string): () => void {
    const size = DM_IOCTL_SIZE + 8 + Buffer.byteLength(text) + 1;
    return this.#prepare('DM_TARGET_MSG', device, 0, size, (buffer) => {
      buffer.writeBigUInt64LE(0n, DM_IOCTL_SIZE);
      buffer.write(`${text}\0`, DM_IOCTL_SIZE + 8, 'latin1');
    });
  }

  close(): void {
    this.#binding.close(this.#fd);
  }

  /** One buffer per prepared call. */
  #prepare(
    command: DmCommandName,
    name: string | undefined,
    flags: number,
    dataSize: number,
    payload?: (buffer: Buffer) => void,
  ): () => void {
    const { request, minVersion } = DM_COMMANDS[command];
    const buffer = Buffer.alloc(dataSize); // every caller's size covers the header
    const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    for (let i = 0; i < 3; i++) view.setUint32(F.version.offset + 4 * i, minVersion[i]!, true);
    view.setUint32(F.data_start.offset, DM_IOCTL_SIZE, true);
    if (name !== undefined) buffer.write(`${name}\0`, F.name.offset, 'latin1');
    payload?.(buffer);
    const binding = this.#binding;
    const fd = this.#fd;
    return () => {
      view.setUint32(F.data_size.offset, dataSize, true);
      view.setUint32(F.flags.offset, flags, true);
      view.setUint32(F.event_nr.offset, 0, true);
      // The kernel writes the device's uuid and dev back, and refuses either beside a name.
      buffer[F.uuid.offset] = 0;
      view.setBigUint64(F.dev.offset, 0n, true);
      const rc = binding.ioctl(fd, request, buffer);
      if (rc < 0) throw new Error(`${command} ${name ?? ''}: errno ${-rc}`);
    };
  }
}
