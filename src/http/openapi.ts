/**
 * The admin API's OpenAPI 3.1 document, `GET /api/openapi.json`, generated (`z.toJSONSchema`) from
 * the same zod schemas the handlers validate bodies with and type their answers by, so neither can
 * drift from the code.
 *
 * Each admin route is declared once in `adminRouteSpecs` (method, path, summary, body/query schema,
 * responses). The route serves the document for the routes actually mounted next to it under
 * `/api` (it walks the express router at the first request): a spec whose router is not mounted is
 * left out, and a mounted route without a spec still appears, marked undocumented — the test
 * (test/integration/openapi.test.ts) fails on that, so every route gets a spec.
 *
 * Served behind the admin token like the rest of `/api`: it describes operator endpoints, and tools
 * that read it (Swagger UI, code generators) can send the same `Authorization: Bearer` header.
 */
import { Router, type Request } from 'express';
import { z } from 'zod';
import { agentListView, agentView, createAgentSchema, updateAgentSchema } from './admin-agents';
import {
  attachedAnswerView,
  customerPatchBody,
  identityBody,
  mergeAnswerView,
  mergeBody,
  mergeRecordView,
} from './admin-customers';
import { deadLetterListView, deadLetterView, replayAllView, replayOneView } from './admin-dlq';
import { errorBody } from './errors';

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface ApiResponseSpec {
  description: string;
  /** The answer's JSON body: a zod schema, or the name of a schema in `components.schemas`. */
  schema?: z.ZodType | string;
}

export interface ApiRouteSpec {
  method: HttpMethod;
  /** Express path relative to the `/api` mount, e.g. `/agents/:id`. */
  path: string;
  summary: string;
  description?: string;
  tag: string;
  /** The zod schema the handler validates the JSON body with — the very same object. */
  body?: z.ZodType;
  /** Query parameters, one property each. */
  query?: z.ZodObject;
  /** By status code. 401 (and 400 with a body or query, 404 with path parameters) are added. */
  responses: Record<number, ApiResponseSpec>;
}

export type OpenApiDocument = Record<string, unknown> & {
  openapi: string;
  paths: Record<string, Record<string, Record<string, unknown>>>;
  components: Record<string, Record<string, unknown>>;
};

/**
 * Answer schemas published under `components.schemas`, by name: the handlers' own (each handler's
 * answer is typed by its schema, so the document cannot drift from what it sends).
 */
const NAMED_ANSWERS: Record<string, z.ZodType> = {
  Error: errorBody,
  Agent: agentView,
  Merge: mergeRecordView,
  DeadLetter: deadLetterView,
};

/** Request body schemas published under `components.schemas`, by name. */
const NAMED_BODIES = new Map<z.ZodType, string>([
  [createAgentSchema, 'CreateAgent'],
  [updateAgentSchema, 'UpdateAgent'],
  [mergeBody, 'MergeCustomers'],
  [identityBody, 'LinkIdentity'],
]);

const flag = (value: string) => z.enum([value]).optional();

/** Every admin route under `/api`. Add one here when you add a route. */
export const adminRouteSpecs: ApiRouteSpec[] = [
  {
    method: 'get',
    path: '/openapi.json',
    tag: 'meta',
    summary: 'This document',
    responses: { 200: { description: 'The OpenAPI 3.1 document of the admin API' } },
  },
  // Agents (src/http/admin-agents.ts)
  {
    method: 'post',
    path: '/agents',
    tag: 'agents',
    summary: 'Add an agent',
    body: createAgentSchema,
    responses: {
      201: { description: 'Created', schema: 'Agent' },
      409: { description: 'An agent with this slackUserId exists' },
    },
  },
  {
    method: 'get',
    path: '/agents',
    tag: 'agents',
    summary: 'List agents with their open customer counts',
    responses: { 200: { description: 'All agents', schema: agentListView } },
  },
  {
    method: 'get',
    path: '/agents/:id',
    tag: 'agents',
    summary: 'One agent',
    responses: { 200: { description: 'The agent', schema: 'Agent' } },
  },
  {
    method: 'patch',
    path: '/agents/:id',
    tag: 'agents',
    summary: 'Update an agent; `active: false` hands their customers to others',
    body: updateAgentSchema,
    responses: {
      200: { description: 'The updated agent', schema: 'Agent' },
      409: { description: 'An agent cannot be their own backup' },
    },
  },
  // Customers (src/http/admin-customers.ts)
  {
    method: 'get',
    path: '/customers',
    tag: 'customers',
    summary: 'Find a customer by phone, email or PSID (exactly one)',
    query: z.object({
      phone: z.string().optional().describe('A phone number; without a country code DEFAULT_REGION applies'),
      email: z.string().optional(),
      psid: z.string().optional().describe('<pageId>:<psid>'),
    }),
    responses: {
      200: {
        description: 'Zero or one customer',
        schema: z.object({ customers: z.array(z.object({ id: z.string() }).loose()) }),
      },
    },
  },
  {
    method: 'get',
    path: '/customers/:id',
    tag: 'customers',
    summary:
      'A customer: profile, identities and recent messages (a merged-away id answers the live customer)',
    query: z.object({
      follow: z.enum(['true', 'false']).optional().describe('false answers a tombstone itself'),
    }),
    responses: { 200: { description: 'The customer' } },
  },
  {
    method: 'patch',
    path: '/customers/:id',
    tag: 'customers',
    summary:
      "Name or correct a customer's name (`displayName`); the Slack card follows, and a later provider profile name does not replace it",
    body: customerPatchBody,
    responses: {
      200: { description: 'The customer' },
      400: { description: 'Empty, too long or control characters' },
    },
  },
  {
    method: 'post',
    path: '/customers/:id/merge',
    tag: 'customers',
    summary: 'Merge two customers (idempotent)',
    body: mergeBody,
    responses: {
      200: { description: 'The merge record', schema: mergeAnswerView },
      409: { description: 'Self-merge, a tombstone, or a merge in progress' },
    },
  },
  {
    method: 'post',
    path: '/merges/:id/undo',
    tag: 'customers',
    summary: 'Undo a merge',
    responses: {
      200: { description: 'The merge record, undone', schema: mergeAnswerView },
      409: { description: 'A merge or undo is running' },
    },
  },
  {
    method: 'post',
    path: '/customers/:id/identities',
    tag: 'customers',
    summary: 'Link a verified phone number or email to a customer (merges if another customer has it)',
    body: identityBody,
    responses: {
      200: {
        description: 'Attached, or the merge it caused',
        schema: z.union([attachedAnswerView, mergeAnswerView]),
      },
    },
  },
  // Data rights (src/http/admin-privacy.ts)
  {
    method: 'get',
    path: '/customers/:id/export',
    tag: 'privacy',
    summary: 'Export everything held about a customer (JSON attachment)',
    responses: { 200: { description: 'The export' }, 410: { description: 'The customer was erased' } },
  },
  {
    method: 'get',
    path: '/customers/:id/files/:fileId',
    tag: 'privacy',
    summary: "The bytes of one of the customer's files (listed in the export's files[])",
    responses: { 200: { description: 'The file' }, 404: { description: 'No such file for this customer' } },
  },
  {
    method: 'delete',
    path: '/customers/:id',
    tag: 'privacy',
    summary: 'Erase a customer (safe to repeat)',
    responses: {
      200: { description: 'Erased; the audit record' },
      202: {
        description: 'Erased; the Slack part (or a job still being processed) continues in the background',
      },
      409: { description: 'A merge or the erasure is running' },
      503: { description: 'DATA_KEY is not configured (code `data_key_missing`): nothing was erased' },
    },
  },
  {
    method: 'get',
    path: '/customers/:id/erasure',
    tag: 'privacy',
    summary: "A customer's erasure record",
    responses: { 200: { description: 'The erasure' } },
  },
  // Dead letters (src/http/admin-dlq.ts)
  {
    method: 'get',
    path: '/dead-letters',
    tag: 'dead-letters',
    summary: 'Failed jobs across every queue, newest first',
    query: z.object({
      queue: z.string().optional().describe('A queue or partition name; `inbound` means every partition'),
      limit: z.string().regex(/^\d+$/).optional().describe('1 to 1000, default 50'),
      include: flag('data').describe('`data` includes job data (customer data)'),
    }),
    responses: {
      200: {
        description: 'Dead letters, newest first, and how many each queue holds',
        schema: deadLetterListView,
      },
    },
  },
  {
    method: 'post',
    path: '/dead-letters/replay',
    tag: 'dead-letters',
    summary: 'Replay every dead letter (of one queue)',
    query: z.object({ queue: z.string().optional() }),
    responses: {
      200: {
        description: 'How many were replayed (in all and per queue) and refused',
        schema: replayAllView,
      },
    },
  },
  {
    method: 'get',
    path: '/dead-letters/:queue/:id',
    tag: 'dead-letters',
    summary: 'One dead letter with its stack trace',
    query: z.object({ include: flag('data') }),
    responses: {
      200: { description: 'The dead letter', schema: 'DeadLetter' },
      409: { description: 'The job is not in the failed state' },
    },
  },
  {
    method: 'post',
    path: '/dead-letters/:queue/:id/replay',
    tag: 'dead-letters',
    summary: 'Put one dead letter back on its queue',
    responses: {
      200: { description: 'Replayed', schema: replayOneView },
      409: {
        description:
          'The job is not in the failed state, or it belongs to a customer erased since it was queued (code `erased_customer`)',
      },
    },
  },
  {
    method: 'delete',
    path: '/dead-letters/:queue/:id',
    tag: 'dead-letters',
    summary: 'Drop one dead letter for good',
    responses: {
      204: { description: 'Dropped' },
      409: { description: 'The job is not in the failed state' },
    },
  },
];

/**
 * zod → JSON Schema 2020-12 (OpenAPI 3.1's dialect): as a request would be written (`io: 'input'`,
 * the default), or as an answer is sent (`'output'`).
 */
export function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output' = 'input'): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
  }) as Record<string, unknown>;
  return rest;
}

/** The named answer schemas, so the answers that hold one refer to it instead of repeating it. */
const answerNames = z.registry<{ id: string }>();
for (const [id, schema] of Object.entries(NAMED_ANSWERS)) answerNames.add(schema, { id });

/** An answer's JSON Schema (as sent, `io: 'output'`), a named schema inside it as a `$ref` to its component. */
export function answerSchemaOf(schema: z.ZodType): Record<string, unknown> {
  const {
    $schema: _dialect,
    $defs: _named,
    ...rest
  } = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any', metadata: answerNames }) as Record<
    string,
    unknown
  >;
  return JSON.parse(JSON.stringify(rest).replaceAll('"#/$defs/', '"#/components/schemas/')) as Record<
    string,
    unknown
  >;
}

/** `/agents/:id` → `/agents/{id}` and the parameter names. */
export function openApiPath(expressPath: string): { path: string; params: string[] } {
  const params: string[] = [];
  const path = expressPath.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => {
    params.push(name);
    return `{${name}}`;
  });
  return { path, params };
}

const ref = (kind: 'schemas' | 'responses', name: string) => ({ $ref: `#/components/${kind}/${name}` });

function operationId(spec: ApiRouteSpec): string {
  const words = spec.path
    .split('/')
    .filter(Boolean)
    .map((s) => (s.startsWith(':') ? `by-${s.slice(1)}` : s.replace(/\.json$/, '')));
  return [spec.method, ...words]
    .join('-')
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w, i) => (i === 0 ? w.toLowerCase() : w[0]!.toUpperCase() + w.slice(1)))
    .join('');
}

function queryParameters(query: z.ZodObject): Record<string, unknown>[] {
  const schema = jsonSchemaOf(query) as {
    properties?: Record<string, Record<string, unknown>>;
    required?: string[];
  };
  return Object.entries(schema.properties ?? {}).map(([name, property]) => {
    const { description, ...propertySchema } = property;
    return {
      name,
      in: 'query',
      required: (schema.required ?? []).includes(name),
      ...(typeof description === 'string' ? { description } : {}),
      schema: propertySchema,
    };
  });
}

function operation(spec: ApiRouteSpec, params: string[]): Record<string, unknown> {
  const responses: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(spec.responses)) {
    const schema =
      r.schema === undefined
        ? undefined
        : typeof r.schema === 'string'
          ? ref('schemas', r.schema)
          : answerSchemaOf(r.schema);
    responses[status] = {
      description: r.description,
      ...(schema ? { content: { 'application/json': { schema } } } : {}),
    };
  }
  if ((spec.body || spec.query) && !responses['400']) responses['400'] = ref('responses', 'ValidationError');
  if (params.length > 0 && !responses['404']) responses['404'] = ref('responses', 'NotFound');
  responses['401'] = ref('responses', 'Unauthorized');
  responses['429'] = ref('responses', 'RateLimited');
  const bodyName = spec.body ? NAMED_BODIES.get(spec.body) : undefined;
  return {
    operationId: operationId(spec),
    summary: spec.summary,
    ...(spec.description ? { description: spec.description } : {}),
    tags: [spec.tag],
    ...(params.length > 0 || spec.query
      ? {
          parameters: [
            ...params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
            ...(spec.query ? queryParameters(spec.query) : []),
          ],
        }
      : {}),
    ...(spec.body
      ? {
          requestBody: {
            required: true,
            content: {
              'application/json': { schema: bodyName ? ref('schemas', bodyName) : jsonSchemaOf(spec.body) },
            },
          },
        }
      : {}),
    responses,
  };
}

export interface OpenApiOptions {
  /** Where the routes are mounted, as a server URL. @defaultValue '/api' */
  serverUrl?: string;
}

/** The OpenAPI 3.1 document of `routes` (pure). */
export function buildOpenApi(routes: ApiRouteSpec[], options: OpenApiOptions = {}): OpenApiDocument {
  const paths: OpenApiDocument['paths'] = {};
  for (const spec of routes) {
    const { path, params } = openApiPath(spec.path);
    (paths[path] ??= {})[spec.method] = operation(spec, params);
  }
  const schemas: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(NAMED_ANSWERS)) schemas[name] = jsonSchemaOf(schema, 'output');
  for (const [schema, name] of NAMED_BODIES) schemas[name] = jsonSchemaOf(schema);
  const errorResponse = (description: string) => ({
    description,
    content: { 'application/json': { schema: ref('schemas', 'Error') } },
  });
  return {
    openapi: '3.1.0',
    info: {
      title: 'Rapport admin API',
      version: '1.0.0',
      description:
        'Operator API of Rapport. Every call needs `Authorization: Bearer <token>`, an admin token (ADMIN_TOKEN, or one of ' +
        'the named ADMIN_TOKENS; the audit log records its name). Per client: 600 calls a minute, and 10 failed ' +
        'authentications a minute, after which every call answers 429 with Retry-After until the minute ends. Errors are ' +
        '`{ "error": { "code", "message" } }`; a request that fails validation is 400 and the message names the field and the reason.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    servers: [{ url: options.serverUrl ?? '/api' }],
    security: [{ bearerAuth: [] }],
    tags: [...new Set(routes.map((r) => r.tag))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN or a token of ADMIN_TOKENS' },
      },
      schemas,
      responses: {
        ValidationError: errorResponse(
          'Invalid request: the message names the field and the reason (code `invalid_payload`)',
        ),
        Unauthorized: errorResponse('Missing or wrong admin token'),
        NotFound: errorResponse('No such resource'),
        RateLimited: errorResponse(
          'Too many calls, or too many failed authentications, from this client (code `rate_limited`; see Retry-After)',
        ),
      },
    },
  };
}

export interface MountedRoute {
  method: HttpMethod;
  /** Express path relative to the router walked, e.g. `/agents/:id`. */
  path: string;
}

interface LayerLike {
  route?: { path: unknown; methods: Record<string, boolean> };
  handle?: { stack?: LayerLike[] };
  rawPath?: unknown;
}

const METHODS = new Set<string>(['get', 'post', 'put', 'patch', 'delete']);

/** Every route of an express router and its sub-routers (`router.use(sub)` or `router.use('/x', sub)`). */
export function mountedRoutes(router: unknown, prefix = ''): MountedRoute[] {
  const stack = (router as { stack?: LayerLike[] }).stack ?? [];
  const out: MountedRoute[] = [];
  for (const layer of stack) {
    if (layer.route) {
      const path = `${prefix}${String(layer.route.path)}`;
      for (const [method, on] of Object.entries(layer.route.methods)) {
        if (on && METHODS.has(method)) out.push({ method: method as HttpMethod, path });
      }
    } else if (layer.handle?.stack) {
      const at = typeof layer.rawPath === 'string' && layer.rawPath !== '/' ? layer.rawPath : '';
      out.push(...mountedRoutes(layer.handle, `${prefix}${at}`));
    }
  }
  return out;
}

/** The document for the routes mounted on `router`: their specs, plus a stub for any route without one. */
export function openApiFor(
  router: unknown,
  routes: ApiRouteSpec[] = adminRouteSpecs,
  options: OpenApiOptions = {},
): OpenApiDocument {
  const mounted = mountedRoutes(router);
  const key = (r: { method: string; path: string }) => `${r.method} ${r.path}`;
  const mountedKeys = new Set(mounted.map(key));
  const documented = routes.filter((r) => mountedKeys.has(key(r)));
  const documentedKeys = new Set(documented.map(key));
  const stubs: ApiRouteSpec[] = mounted
    .filter((r) => !documentedKeys.has(key(r)))
    .map((r) => ({
      ...r,
      tag: 'undocumented',
      summary: 'Undocumented route (add it to adminRouteSpecs in src/http/openapi.ts)',
      responses: { 200: { description: 'Success' } },
    }));
  return buildOpenApi([...documented, ...stubs], options);
}

/** Finds the router whose stack holds `child` (the router `/api` mounted this route in). */
function parentOf(root: unknown, child: unknown): unknown {
  const stack = (root as { stack?: LayerLike[] }).stack ?? [];
  for (const layer of stack) {
    if (layer.handle === child) return root;
    if (layer.handle?.stack) {
      const found = parentOf(layer.handle, child);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * `GET /openapi.json`: mount it inside the `/api` router (after `adminAuth`), e.g.
 * `api.use(openApiRoute());`. The document covers the routes of that router.
 */
export function openApiRoute(routes: ApiRouteSpec[] = adminRouteSpecs): Router {
  const router = Router();
  let document: OpenApiDocument | undefined;
  router.get('/openapi.json', (req: Request, res) => {
    if (!document) {
      const root = (req.app as unknown as { router: unknown }).router;
      const parent = parentOf(root, router) ?? router;
      document = openApiFor(parent, routes, { serverUrl: req.baseUrl || '/' });
    }
    res.json(document);
  });
  return router;
}
