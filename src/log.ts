// The project's logger: tslog, silent unless DEVMAPPER_LOG names a level (trace, debug, info,
// warn, error), written to stderr. Library users can attach their own transport to `logger`.
import { format } from 'node:util';
import { Logger } from 'tslog';

const LEVELS = ['silly', 'trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
const requested = (process.env.DEVMAPPER_LOG ?? '').toLowerCase();
const minLevel = LEVELS.indexOf(requested as (typeof LEVELS)[number]);

export const logger = new Logger({
  name: 'devmapper',
  type: minLevel >= 0 ? 'pretty' : 'hidden',
  minLevel: minLevel >= 0 ? minLevel : 3,
  stylePrettyLogs: process.stderr.isTTY === true && (process.env.NO_COLOR ?? '') === '',
  // stderr, not tslog's console.log: stdout carries the CLI's --json output.
  overwrite: {
    transportFormatted: (meta, args, errors) => {
      process.stderr.write(`${meta}${format(...args)}${errors.length > 0 ? `\n${errors.join('\n')}` : ''}\n`);
    },
  },
});

/** Checked before building a per-ioctl trace line, so a silent logger costs nothing. */
export const traceEnabled = minLevel >= 0 && minLevel <= 1;
