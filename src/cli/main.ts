/**
 * The `koa-faas` command line (docs/cli.md): deploys, calls and inspects functions on a running
 * server, over HTTP only. Every command takes `--url`, `--token` and `--json` (settings.ts says
 * where each comes from otherwise). Exit codes: 0 success, 1 failure (one line on stderr: the
 * server's error code and message, or why the server could not be reached), 2 a usage error.
 */
import { Command, CommanderError } from 'commander';
import { CliError } from './client';
import { dataCommands } from './data';
import { functionCommands } from './functions';

export function buildProgram(): Command {
  const program = new Command('koa-faas')
    .description('deploy, call and inspect functions on a koa-faas server')
    .option(
      '--url <url>',
      'the server (else KOA_FAAS_URL, else the login config, else http://localhost:3000)',
    )
    .option('--token <token>', 'the admin token (else KOA_FAAS_TOKEN, else the login config)')
    .option('--json', 'print JSON only on stdout (messages go to stderr)')
    .showHelpAfterError('(koa-faas --help for the commands, koa-faas <command> --help for one)')
    .exitOverride();
  functionCommands(program);
  dataCommands(program);
  // Usage errors (exit 2) in every subcommand, not only the top one.
  const override = (command: Command) => {
    command.exitOverride();
    command.commands.forEach(override);
  };
  override(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the message (or the help, or the version).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof CliError) {
      process.stderr.write(`koa-faas: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`koa-faas: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

// A reader that stops early (`koa-faas list | head`) closes the pipe: that is not a failure.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

void main(process.argv).then((code) => {
  process.exitCode = code;
});
