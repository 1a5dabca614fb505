/** The shape of an operator command (see index.ts). */
import type { RapportApp } from '../app';
import type { Config } from '../config';

export interface CliContext {
  /** Builds the app on first use (commands like `doctor` may not want a full app). */
  app(): Promise<RapportApp>;
  config: Readonly<Config>;
  out(line: string): void;
  err(line: string): void;
  json: boolean;
}

export interface CliCommand {
  summary: string;
  usage: string;
  /** More lines for `rapport <command> --help` (subcommands, what the arguments mean). */
  help?: string[];
  /** Returns the process exit code. */
  run(args: string[], ctx: CliContext): Promise<number>;
}
