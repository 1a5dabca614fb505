/**
 * Which admin token the CLI presents when it calls the admin API in-process: the one it is given,
 * so the audit log names whoever ran the command. `RAPPORT_ADMIN_TOKEN` if set (it must be one of
 * ADMIN_TOKEN / ADMIN_TOKENS, or the call answers 401); otherwise ADMIN_TOKEN (named `admin`);
 * otherwise the only entry of ADMIN_TOKENS. With several named tokens and none chosen the command
 * stops and says so, rather than acting under someone else's name.
 */
import type { Config } from '../config';

export class CliTokenError extends Error {}

export function cliAdminToken(
  config: Pick<Config, 'adminTokens'>,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const given = env.RAPPORT_ADMIN_TOKEN?.trim();
  if (given) return given;
  const named =
    config.adminTokens.find((t) => t.name === 'admin') ??
    (config.adminTokens.length === 1 ? config.adminTokens[0] : undefined);
  if (named) return named.token;
  throw new CliTokenError(
    `Several admin tokens are configured (${config.adminTokens.map((t) => t.name).join(', ')}): set RAPPORT_ADMIN_TOKEN to yours, so the audit log names you.`,
  );
}
