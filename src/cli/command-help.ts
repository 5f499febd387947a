// The help texts of every command and the global options: the one list that --help, the group
// listings and the shell completion are made from. Plain data: it loads nothing.

export interface CommandHelp {
  /** The command as typed: 'create', 'image import', 'dm info'. */
  name: string;
  usage: string;
  summary: string;
  /** [flag as shown, what it does]; flag names the completion offers are read from these. */
  flags: ReadonlyArray<readonly [string, string]>;
  example: string;
}

const SIZE = 'S is bytes or a size such as 512M, 10G, 10GiB (binary units, as Docker reads dm.basesize)';

export const COMMANDS: readonly CommandHelp[] = [
  {
    name: 'init',
    usage: 'devmapper init [options]',
    summary:
      'Creates the thin pool (on sparse loop files under --home unless --data-dev/--metadata-dev or --thin-pool-dev) and the base device, ' +
      'and keeps the options in <home>/cli-options.json for every later command. On a home an interrupted init left, it finishes the job.',
    flags: [
      ['--base-size S', 'size of the base device every layer starts from (default 10G; a larger value later grows it)'],
      ['--loop-data-size S', 'sparse size of the loop data file (default 100G)'],
      ['--loop-metadata-size S', 'sparse size of the loop metadata file (default 2G)'],
      ['--fs ext4|xfs', "the base device's filesystem (default ext4)"],
      ['--mkfs-arg A', 'one more argument for mkfs (repeatable)'],
      ['--mount-opt O', 'extra mount options, comma-separated'],
      ['--data-dev D', "a block device for the pool's data (with --metadata-dev)"],
      ['--metadata-dev D', "a block device for the pool's metadata (with --data-dev)"],
      ['--thin-pool-dev NAME', 'an existing thin pool to use (never deactivated by devmapper)'],
      ['--block-size S', 'data block size of a new pool (default 64K)'],
      ['--blkdiscard', "discard a layer's blocks when it is removed"],
      ['--deferred-removal', 'a busy device is removed by the kernel at last close'],
      ['--deferred-deletion', "a busy layer's deletion is retried later"],
      ['--queue-if-no-space', 'a full pool queues writes (up to 60 s) instead of failing them'],
      ['--min-free-space PCT', 'create refuses below this much free space (default 10)'],
      ['--ffi ffi-rs|koffi', 'the FFI backend'],
    ],
    example: 'devmapper --home /var/lib/devmapper init --base-size 10G --loop-data-size 100G',
  },
  {
    name: 'create',
    usage: 'devmapper create <id> [--parent <id>] [--size S]',
    summary: `A new layer: a snapshot of --parent, or of the base device. ${SIZE}; it may not be smaller than the parent.`,
    flags: [
      ['--parent ID', 'the layer to snapshot'],
      ['--size S', "the new layer's size (its filesystem is grown to it)"],
    ],
    example: 'devmapper create img && devmapper create ctr --parent img --size 20G',
  },
  {
    name: 'mount',
    usage: 'devmapper mount <id> [--label CONTEXT]',
    summary:
      'Mounts the layer under <home>/mnt/<id> and prints its rootfs path. A layer is mounted or not: mounting a mounted layer prints the same path ' +
      'and adds nothing, and one `devmapper umount` unmounts it (CLI mounts are not counted).',
    flags: [['--label CONTEXT', 'SELinux mount context (context="...")']],
    example: 'cd "$(devmapper mount ctr)"',
  },
  {
    name: 'umount',
    usage: 'devmapper umount <id>',
    summary:
      'Unmounts the layer (and deactivates its device). An id that does not exist is an error; a layer that is not mounted is left as it is.',
    flags: [],
    example: 'devmapper umount ctr',
  },
  {
    name: 'rm',
    usage: 'devmapper rm <id>',
    summary:
      'Removes a layer and frees its blocks (a missing id is fine). A mounted layer is refused: umount it first.',
    flags: [],
    example: 'devmapper umount ctr; devmapper rm ctr',
  },
  {
    name: 'ls',
    usage: 'devmapper ls',
    summary:
      'Every layer: id, parent ("(removed)" when the parent is gone), thin id, size, bytes mapped (active layers), mounted. Works on a read-only home.',
    flags: [],
    example: 'devmapper --json ls',
  },
  {
    name: 'status',
    usage: 'devmapper status',
    summary:
      "The driver's status: pool, block size, base size, data and metadata space, pool mode, transaction id. Works on a read-only home.",
    flags: [],
    example: 'devmapper status',
  },
  {
    name: 'cleanup',
    usage: 'devmapper cleanup',
    summary:
      'Unmounts and deactivates everything (pool, devices, loop devices); the data stays for the next command. Also brings down what an interrupted init left.',
    flags: [],
    example: 'devmapper cleanup && rm -rf /var/lib/devmapper',
  },
  {
    name: 'check',
    usage: 'devmapper check [--repair] [--thin-check]',
    summary:
      'Compares metadata, pool and kernel and lists problems (leaked or missing thin ids, damaged records, stray devices, a pool that is not rw ...). ' +
      'Exit status 0 when clean, 3 when problems remain. Without --repair it changes nothing and works on a read-only home.',
    flags: [
      ['--repair', 'fix what can be fixed safely (records are quarantined, never deleted)'],
      ['--thin-check', "also run thin_check on the pool's metadata (thin-provisioning-tools)"],
    ],
    example: 'devmapper check --thin-check || devmapper check --repair',
  },
  {
    name: 'grow-pool',
    usage: 'devmapper grow-pool [--data-size S] [--metadata-size S]',
    summary:
      'Grows the pool: the loop data file to --data-size, the loop metadata file to --metadata-size, and the pool with them. A pool out of data space, or read-only because its metadata device is full, goes back to rw; for a full metadata device the metadata file is doubled when no --metadata-size is given. ' +
      `Files are never shrunk. On --data-dev/--metadata-dev, grow the devices yourself and run it without sizes. ${SIZE}.`,
    flags: [
      ['--data-size S', 'the new size of the loop data file'],
      ['--metadata-size S', 'the new size of the loop metadata file (the kernel uses at most 255 x 64 MiB of it)'],
    ],
    example: 'devmapper grow-pool --data-size 200G --metadata-size 4G',
  },
  {
    name: 'image import',
    usage: 'devmapper image import FILE.tar [--name REF]',
    summary:
      'Imports an OCI image layout tarball or a docker save archive: one layer per chain id, layers already there are shared. Progress on stderr.',
    flags: [['--name REF', "the reference to record (default: the archive's own)"]],
    example: 'docker save busybox:latest > busybox.tar && devmapper image import busybox.tar',
  },
  {
    name: 'image ls',
    usage: 'devmapper image ls',
    summary: 'The imported images: reference, layers, config digest, top layer.',
    flags: [],
    example: 'devmapper image ls',
  },
  {
    name: 'image rm',
    usage: 'devmapper image rm REF',
    summary: 'Forgets an image; its layers nothing else uses are removed.',
    flags: [],
    example: 'devmapper image rm busybox:latest',
  },
  {
    name: 'image rootfs',
    usage: 'devmapper image rootfs REF ID [--bundle DIR]',
    summary: 'A writable layer ID on top of the image, mounted; prints its rootfs.',
    flags: [['--bundle DIR', 'also write DIR/config.json (an OCI runtime spec for runc or crun)']],
    example: 'devmapper image rootfs busybox:latest c1 --bundle /run/c1 && runc run --bundle /run/c1 c1',
  },
  {
    name: 'diff',
    usage: 'devmapper diff ID [--parent P] > layer.tar',
    summary:
      "The layer's changes over its parent (or P) as a layer tar on stdout (whiteouts for deletions). Stdout must not be a terminal.",
    flags: [['--parent P', "compare with layer P instead of the layer's own parent"]],
    example: 'devmapper diff ctr | gzip > ctr.tar.gz',
  },
  {
    name: 'serve containerd',
    usage: 'devmapper serve containerd [--socket PATH] [--log-level L]',
    summary:
      "containerd's snapshots API (a proxy plugin) for the home on a unix socket, in the foreground until SIGTERM or SIGINT; mounts and devices stay when it stops.",
    flags: [
      ['--socket PATH', 'the socket (default /run/devmapper/containerd.sock)'],
      ['--log-level L', 'trace, debug, info (default), warn or error'],
    ],
    example: 'devmapper serve containerd --socket /run/devmapper/containerd.sock',
  },
  {
    name: 'demo',
    usage: 'devmapper demo',
    summary:
      'The whole round trip in a temporary home on small loop files: an image layer, a container layer on it, a write, status and ls, then everything removed.',
    flags: [],
    example: 'sudo devmapper demo',
  },
  {
    name: 'dm version',
    usage: 'devmapper dm version',
    summary: "The kernel's device-mapper interface version.",
    flags: [],
    example: 'devmapper dm version',
  },
  {
    name: 'dm ls',
    usage: 'devmapper dm ls',
    summary: 'Every dm device: name, major:minor, event number, uuid.',
    flags: [],
    example: 'devmapper --json dm ls',
  },
  {
    name: 'dm info',
    usage: 'devmapper dm info <name>',
    summary: "One device's state (as dmsetup info).",
    flags: [],
    example: 'devmapper dm info devmapper-8:1-1234-pool',
  },
  {
    name: 'dm table',
    usage: 'devmapper dm table <name> [--inactive]',
    summary: "The device's table.",
    flags: [['--inactive', 'the table waiting in the inactive slot']],
    example: 'devmapper dm table devmapper-8:1-1234-pool',
  },
  {
    name: 'dm status',
    usage: 'devmapper dm status <name> [--inactive] [--flush]',
    summary: "The device's status (without flushing unless --flush).",
    flags: [
      ['--inactive', "the inactive table's status"],
      ['--flush', 'let the target flush first (a pool commits its metadata)'],
    ],
    example: 'devmapper dm status devmapper-8:1-1234-pool',
  },
  {
    name: 'dm targets',
    usage: 'devmapper dm targets',
    summary: 'The loaded target types and their versions.',
    flags: [],
    example: 'devmapper dm targets',
  },
  {
    name: 'dm message',
    usage: 'devmapper dm message <name> <sector> <text...>',
    summary: 'Sends a target message; prints the reply, if any.',
    flags: [],
    example: 'devmapper dm message devmapper-8:1-1234-pool 0 reserve_metadata_snap',
  },
  {
    name: 'completion',
    usage: 'devmapper completion bash|zsh',
    summary: 'Prints a shell completion script.',
    flags: [],
    example: 'source <(devmapper completion bash)',
  },
];

/** Options every command takes (before or after the command). */
export const GLOBAL_FLAGS: ReadonlyArray<readonly [string, string]> = [
  ['--home DIR', "the driver's home (default /var/lib/devmapper, or $DEVMAPPER_HOME)"],
  ['--json', 'machine output on stdout; an error is one JSON line on stderr'],
  [
    '--wait[=SECONDS]',
    'wait for a home another process holds (forever, or SECONDS) instead of failing with ERR_DM_HOME_LOCKED',
  ],
  ['--no-color', 'no ANSI colours (also when NO_COLOR is set)'],
  ['--help', "this command's help"],
];
