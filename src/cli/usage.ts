// Constants the command list needs, kept apart from the commands so that `--help` and usage
// errors load neither the library nor its native bindings (main.ts imports commands lazily).
export const DEFAULT_HOME = '/var/lib/devmapper';

export const DM_USAGE = `devmapper dm <command>
  version                      the kernel's device-mapper interface version
  ls                           every dm device (name, major:minor, event nr, uuid)
  info <name>                  one device's state
  table <name> [--inactive]    its table
  status <name> [--inactive] [--flush]   its status (no-flush unless --flush)
  targets                      loaded target types and versions
  message <name> <sector> <text...>      send a target message`;
