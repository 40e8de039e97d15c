/**
 * The coded error catalogue. Every error the server answers with comes from here, so a code has one
 * status and one message template; foreign errors (ONNX Runtime, worker exit, abort) are wrapped with
 * their `cause` kept. docs/ERRORS.md lists the same codes (test/errors.test.ts keeps them in sync).
 */
export class RankerError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: string, statusCode: number, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RankerError';
    this.code = code;
    this.statusCode = statusCode;
    this.details = options?.details;
  }
}

type Factory<A extends unknown[]> = ((...args: A) => RankerError) & { code: string; statusCode: number };

function define<A extends unknown[]>(code: string, statusCode: number, message: (...args: A) => string, details?: (...args: A) => Record<string, unknown>): Factory<A> {
  const factory = ((...args: A) => new RankerError(code, statusCode, message(...args), details ? { details: details(...args) } : undefined)) as Factory<A>;
  factory.code = code;
  factory.statusCode = statusCode;
  return factory;
}

export const Errors = {
  // `path` is a JSON pointer (RFC 6901: names escaped with pointerToken); it is answered as error.path.
  BAD_REQUEST: define('RANK_BAD_REQUEST', 400, (path: string, why: string) => `${path}: ${why}`, (path: string, why: string) => ({ path, why })),
  BODY_TOO_LARGE: define('RANK_BODY_TOO_LARGE', 413, (limit: number) => `request body exceeds ${limit} bytes`),
  UNKNOWN_SURFACE: define('RANK_UNKNOWN_SURFACE', 404, (surface: string, known: string[]) => `unknown surface "${surface}"; known surfaces: ${known.join(', ') || '(none)'}`),
  UNKNOWN_MODEL: define('MODEL_NOT_FOUND', 404, (name: string) => `model "${name}" is not in the repository`),
  UNKNOWN_VERSION: define('MODEL_VERSION_NOT_FOUND', 404, (name: string, version: number) => `model "${name}" has no version ${version}`),
  VERSION_NOT_READY: define('MODEL_VERSION_NOT_READY', 409, (key: string, state: string) => `${key} is not ready (state: ${state})`),
  NO_MODEL: define('MODEL_UNAVAILABLE', 503, (name: string) => `no ready version of model "${name}"`),
  VERSION_UNAVAILABLE: define('MODEL_VERSION_UNAVAILABLE', 503, (key: string) => `no running inference worker holds ${key} (its reload is being retried)`),
  OVERLOADED: define('SERVER_OVERLOADED', 503, (why: string) => `server overloaded: ${why}`),
  DEADLINE: define('DEADLINE_EXCEEDED', 504, (deadlineMs: number) => `deadline of ${deadlineMs} ms cannot be met`),
  INFERENCE_FAILED: define('INFERENCE_FAILED', 500, (key: string, why: string) => `inference on ${key} failed: ${why}`),
  WORKER_EXITED: define('WORKER_EXITED', 500, (workerId: number, code: number) => `inference worker ${workerId} exited with code ${code}`),
  SHUTTING_DOWN: define('SERVER_SHUTTING_DOWN', 503, () => 'server is shutting down'),
  MANIFEST_INVALID: define('MANIFEST_INVALID', 422, (where: string, why: string) => `manifest ${where} is invalid: ${why}`),
  CHECKSUM_MISMATCH: define('MODEL_CHECKSUM_MISMATCH', 422, (where: string) => `sha256 of ${where} does not match its manifest`),
  GATE_FAILED: define('MODEL_GATE_FAILED', 422, (key: string, why: string) => `${key} failed the validation gate: ${why}`),
  LOAD_FAILED: define('MODEL_LOAD_FAILED', 422, (key: string, why: string) => `${key} could not be loaded: ${why}`),
  ROLLOUT_INVALID: define('ROLLOUT_INVALID', 422, (why: string) => `rollout flags rejected: ${why}`),
  ROLLOUT_LOCKED: define('ROLLOUT_LOCKED', 503, (file: string, holder: string, waitedMs: number) => `${file} is held by ${holder}; gave up after ${waitedMs} ms`),
  UNAUTHORIZED: define('ADMIN_UNAUTHORIZED', 401, () => 'missing or wrong bearer token'),
  BAD_IDENTIFIER: define('ADMIN_BAD_IDENTIFIER', 400, (what: string, value: string) => `${what} "${value}" is not a plain identifier`),
  NOT_FOUND: define('NOT_FOUND', 404, (what: string) => `${what} not found`),
  BAD_URL: define('BAD_URL', 400, (why: string) => why),
  UNSUPPORTED_MEDIA_TYPE: define('UNSUPPORTED_MEDIA_TYPE', 415, (why: string) => why),
  INTERNAL: define('INTERNAL', 500, () => 'internal error'),
} as const;

/** One name as a JSON pointer token: `~` and `/` escaped (RFC 6901), so a feature named "a/b" stays one step. */
export function pointerToken(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The JSON pointer a RANK_BAD_REQUEST points at, and why, as it was raised. */
export function badRequestPath(error: RankerError): { path: string; why: string } | null {
  const path = error.details?.path;
  const why = error.details?.why;
  return typeof path === 'string' && typeof why === 'string' ? { path, why } : null;
}

export function isRankerError(error: unknown): error is RankerError {
  return error instanceof RankerError;
}

/**
 * Errors that say the server could not run the model just then (no worker, a worker that exited, a
 * shutdown), not that the model is bad: a model version that meets one is tried again later.
 */
export function isServerTrouble(error: unknown): boolean {
  if (!isRankerError(error)) return false;
  return [Errors.OVERLOADED.code, Errors.WORKER_EXITED.code, Errors.VERSION_UNAVAILABLE.code, Errors.SHUTTING_DOWN.code].includes(error.code);
}

/** Wrap any thrown value as a catalogue error, keeping it as the cause. */
export function wrapInferenceError(key: string, error: unknown): RankerError {
  if (isRankerError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  const wrapped = Errors.INFERENCE_FAILED(key, message);
  (wrapped as { cause?: unknown }).cause = error;
  return wrapped;
}
