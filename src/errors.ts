/**
 * The AppError family: a stable `code`, the HTTP `status` it maps to, and whether retrying can help.
 * The *type* drives behaviour: routes turn it into a status, workers turn non-retryable errors into
 * BullMQ's UnrecoverableError so a poison job fails once instead of looping.
 */
export class AppError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Missing, malformed or wrong webhook signature. */
export class SignatureError extends AppError {
  constructor(message = 'invalid signature', status: 401 | 403 = 401) {
    super(message, 'invalid_signature', status, false);
  }
}

/** The request body cannot be parsed or does not match the provider's format. */
export class PayloadError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'invalid_payload', 400, false, options);
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(contentType: string | undefined) {
    super(`unsupported content type ${contentType ?? '(none)'}`, 'unsupported_media_type', 415, false);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(limit: number) {
    super(`body larger than ${limit} bytes`, 'payload_too_large', 413, false);
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = 'missing or invalid bearer token') {
    super(message, 'unauthorized', 401, false);
  }
}

export class NotFoundError extends AppError {
  constructor(what: string) {
    super(`${what} not found`, 'not_found', 404, false);
  }
}

export class ConflictError extends AppError {
  constructor(message: string) {
    super(message, 'conflict', 409, false);
  }
}

/** A dependency (Redis, MongoDB) is down; the caller should retry later. */
export class UnavailableError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'unavailable', 503, true, options);
  }
}

/** Thrown by a queue handler (or a lock it waits on) to run the job again after `delayMs`, without counting an attempt. */
export class DeferError extends Error {
  constructor(
    readonly delayMs: number,
    reason: string,
  ) {
    super(reason);
    this.name = 'DeferError';
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
