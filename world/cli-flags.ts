/** Tiny flag parser for the world CLI: `--name value` or `--name=value`; messages name the flag. */
export type Flags = Record<string, string>;

export function parseFlags(argv: readonly string[]): { command: string; flags: Flags } {
  const [command = '', ...rest] = argv;
  const flags: Flags = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument '${arg}'`);
    const eq = arg.indexOf('=');
    if (eq > 0) flags[arg.slice(2, eq)] = arg.slice(eq + 1);
    else {
      const value = rest[i + 1];
      if (value === undefined || value.startsWith('--')) throw new Error(`flag ${arg} needs a value`);
      flags[arg.slice(2)] = value;
      i++;
    }
  }
  return { command, flags };
}

/**
 * Refuse flags the subcommand does not read: a misspelt world flag (`--sed 5`) would otherwise be
 * dropped silently and the command would rebuild another world than the one meant.
 */
export function checkFlags(command: string, flags: Flags, known: readonly string[]): void {
  for (const name of Object.keys(flags)) {
    if (!known.includes(name)) throw new Error(`${command}: unknown flag --${name} (known: ${known.map((k) => `--${k}`).join(', ')})`);
  }
}

export function intFlag(flags: Flags, name: string, fallback?: number): number | undefined {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const v = Number(raw.replace(/_/g, ''));
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer, got '${raw}'`);
  return v;
}

export function numberFlag(flags: Flags, name: string): number | undefined {
  const raw = flags[name];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got '${raw}'`);
  return v;
}

export function required(flags: Flags, name: string): string {
  const v = flags[name];
  if (!v) throw new Error(`--${name} is required`);
  return v;
}

