// Library errors in the CLI's words. The library's messages speak its API (`put() it first`,
// `growPool()`, option names such as baseSize); a CLI user needs the command to run and the
// flag they typed. The error's code is never changed, only the text shown with it.

/** Driver option names as the CLI's flags. */
export const OPTION_FLAGS: Record<string, string> = {
  baseSize: '--base-size',
  loopDataSize: '--loop-data-size',
  loopMetadataSize: '--loop-metadata-size',
  filesystem: '--fs',
  mkfsArgs: '--mkfs-arg',
  mountOptions: '--mount-opt',
  dataDevice: '--data-dev',
  metadataDevice: '--metadata-dev',
  thinPoolDevice: '--thin-pool-dev',
  blockSize: '--block-size',
  minFreeSpacePercent: '--min-free-space',
  ffi: '--ffi',
  size: '--size',
  parent: '--parent',
  mountLabel: '--label',
};

/** `baseSize: "huge" is not a size` → `--base-size: "huge" is not a size` (and "dataDevice and metadataDevice go together"). */
export function withFlagNames(message: string): string {
  let text = message.replace(/^([A-Za-z]+): /, (whole, name: string) =>
    OPTION_FLAGS[name] ? `${OPTION_FLAGS[name]}: ` : whole,
  );
  text = text.replace('dataDevice and metadataDevice go together', '--data-dev and --metadata-dev go together');
  text = text.replace(
    'an adopted pool and data/metadata devices exclude each other',
    '--thin-pool-dev and --data-dev/--metadata-dev exclude each other',
  );
  return text;
}

export function cliMessage(
  error: unknown,
  message: string,
  command: string | undefined,
  _args: readonly string[],
): string {
  const e = error as {
    code?: string;
    layer?: string;
    operation?: string;
    syscall?: string;
    device?: string;
    name?: string;
  };
  // remove of a mounted layer (LayerBusyError)
  if (e.code === 'EBUSY' && e.name === 'LayerBusyError' && e.layer !== undefined) {
    return `layer ${e.layer} is mounted: run \`devmapper umount ${e.layer}\` first`;
  }
  // a device something outside devmapper holds open (a mount elsewhere, a process reading it)
  if (e.code === 'EBUSY' && e.operation === 'DM_DEV_REMOVE' && command === 'rm') {
    return (
      `${message}: the layer's device is open outside devmapper (mounted elsewhere, or a process has it open); close it and run \`devmapper rm\` again` +
      ', or init the home with --deferred-deletion'
    );
  }
  // /dev/mapper/control (or a loop device) that this user may not open
  if (
    (e.code === 'EACCES' || e.code === 'EPERM') &&
    e.syscall === 'open' &&
    typeof e.device === 'string' &&
    e.device.startsWith('/dev/')
  ) {
    return `${message}: devmapper needs root (or CAP_SYS_ADMIN) to talk to device-mapper`;
  }
  if (e.code === 'EROFS' && !/read-only filesystem: `devmapper/.test(message)) {
    return (
      `${message}: the home is on a read-only filesystem. ls, status and check (without --repair) work on a read-only home while its pool is active; ` +
      'anything else needs it read-write'
    );
  }
  let text = message;
  text = text.replace(
    'remove layers or growPool() first',
    'remove layers (`devmapper rm ID`) or grow the pool (`devmapper grow-pool --data-size S`) first',
  );
  text = text.replace(
    'growPool(undefined, { metadataSize }) grows the metadata file (without a size it is doubled)',
    '`devmapper grow-pool` grows the metadata file (doubled, or to --metadata-size S)',
  );
  text = text.replace(
    'grow the metadata device, then call growPool()',
    'grow the metadata device, then run `devmapper grow-pool`',
  );
  text = text.replaceAll('growPool() first', '`devmapper grow-pool` first');
  text = text.replace(/ \(this process: call cleanup\(\) on the other driver first\)/, '');
  if (e.code === 'ERR_DM_INVALID_ARGUMENT') text = withFlagNames(text);
  return text;
}
