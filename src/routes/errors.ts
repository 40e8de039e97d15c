/** Maps every error a route can meet onto the catalogue's status codes and one JSON error shape. */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Errors, badRequestPath, isRankerError, pointerToken } from '../errors.js';

interface ValidationIssue {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
  /** Set by Ajv on an error about an object's key (a `propertyNames` rule): the key that broke it. */
  propertyName?: string;
}

/** JSON pointer of the offending field: the missing, unexpected or badly named property is appended. */
export function issuePath(issue: ValidationIssue): string {
  let path = issue.instancePath ?? '';
  if (issue.propertyName !== undefined) path += `/${pointerToken(issue.propertyName)}`;
  if (issue.keyword === 'required' && issue.params?.missingProperty) path += `/${pointerToken(String(issue.params.missingProperty))}`;
  if (issue.keyword === 'additionalProperties' && issue.params?.additionalProperty) path += `/${pointerToken(String(issue.params.additionalProperty))}`;
  return path || '/';
}

export function errorBody(code: string, message: string, path?: string) {
  return { error: { code, message, ...(path ? { path } : {}) } };
}

export function handleError(error: FastifyError & { validation?: ValidationIssue[] }, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error.validation && error.validation.length > 0) {
    const issue = error.validation[0];
    const path = issuePath(issue);
    const what = issue.keyword === 'additionalProperties' ? 'is not an allowed field' : issue.keyword === 'required' ? 'is required' : (issue.message ?? 'is invalid');
    return reply.code(400).send(errorBody('RANK_BAD_REQUEST', `${path}: ${what}`, path));
  }
  if (isRankerError(error)) {
    if (error.statusCode === 503) reply.header('retry-after', '1');
    if (error.statusCode >= 500) request.log.warn({ code: error.code, err: error.cause ?? undefined }, error.message);
    const path = badRequestPath(error)?.path;
    return reply.code(error.statusCode).send(errorBody(error.code, error.message, path));
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return reply.code(413).send(errorBody('RANK_BODY_TOO_LARGE', error.message));
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return reply.code(415).send(errorBody(Errors.UNSUPPORTED_MEDIA_TYPE.code, error.message));
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return reply.code(400).send(errorBody('RANK_BAD_REQUEST', 'request body is empty', '/'));
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return reply.code(400).send(errorBody(Errors.BAD_URL.code, error.message));
  }
  if (error.statusCode === 400 || error instanceof SyntaxError) {
    return reply.code(400).send(errorBody('RANK_BAD_REQUEST', `body is not valid JSON: ${error.message}`, '/'));
  }
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    return reply.code(error.statusCode).send(errorBody(error.code ?? 'BAD_REQUEST', error.message));
  }
  if (error.statusCode === 503) {
    reply.header('retry-after', '1');
    return reply.code(503).send(errorBody('SERVER_OVERLOADED', error.message));
  }
  request.log.error({ err: error }, 'unhandled error');
  return reply.code(500).send(errorBody(Errors.INTERNAL.code, Errors.INTERNAL().message));
}
