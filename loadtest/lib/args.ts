/** A tiny `--flag value` / `--flag=value` / `--switch` parser for the load-test CLIs. */
export type Flags = Map<string, string | true>;

export function parseFlags(argv: string[], switches: readonly string[] = []): Flags {
  const flags: Flags = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument "${arg}" (flags are --name value)`);
    const eq = arg.indexOf('=');
    if (eq > 0) {
      flags.set(arg.slice(2, eq), arg.slice(eq + 1));
    } else if (switches.includes(arg.slice(2))) {
      flags.set(arg.slice(2), true);
    } else {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw new Error(`${arg} needs a value`);
      flags.set(arg.slice(2), value);
      i++;
    }
  }
  return flags;
}

export function flagNumber(flags: Flags, name: string, fallback: number): number {
  const raw = flags.get(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (raw === true || !Number.isFinite(value) || value < 0) throw new Error(`--${name} expects a non-negative number, got "${String(raw)}"`);
  return value;
}

export function flagList(flags: Flags, name: string, fallback: number[]): number[] {
  const raw = flags.get(name);
  if (raw === undefined) return fallback;
  if (raw === true) throw new Error(`--${name} expects a comma-separated list`);
  const list = raw.split(',').map((s) => Number(s.trim()));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--${name} expects positive integers, got "${raw}"`);
  return list;
}

export function flagText(flags: Flags, name: string, fallback: string): string {
  const raw = flags.get(name);
  if (raw === undefined) return fallback;
  if (raw === true) throw new Error(`--${name} needs a value`);
  return raw;
}

export function flagChoice<T extends string>(flags: Flags, name: string, choices: readonly T[], fallback: T): T {
  const value = flagText(flags, name, fallback);
  if (!(choices as readonly string[]).includes(value)) throw new Error(`--${name} expects one of ${choices.join(', ')}, got "${value}"`);
  return value as T;
}
