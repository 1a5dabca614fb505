/**
 * The admin API's OpenAPI document: every route mounted under `/api` in the real app is in it (with
 * a spec, not the undocumented stub), it is a structurally valid OpenAPI 3.1 document (checked
 * below: no validator package is installed), request bodies are the handlers' own zod schemas, and
 * `GET /api/openapi.json` serves it behind the admin token.
 */
import { z } from 'zod';
import { agentView, createAgentSchema, updateAgentSchema } from '../../src/http/admin-agents';
import { identityBody, mergeBody, mergeRecordView } from '../../src/http/admin-customers';
import { deadLetterView } from '../../src/http/admin-dlq';
import { errorBody } from '../../src/http/errors';
import {
  adminRouteSpecs,
  buildOpenApi,
  mountedRoutes,
  openApiFor,
  type OpenApiDocument,
} from '../../src/http/openapi';
import { TEST_ADMIN_TOKEN, startTestApp, type TestApp } from '../helpers/app';

let t: TestApp;

/** The router the app mounts at `/api`. */
function apiRouter(app: TestApp['app']): unknown {
  const stack = (app.http as unknown as { router: { stack: { rawPath?: unknown; handle: unknown }[] } })
    .router.stack;
  const layer = stack.find((l) => l.rawPath === '/api');
  if (!layer) throw new Error('no router mounted at /api');
  return layer.handle;
}

const OPERATION_KEYS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const JSON_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null']);

function resolvePointer(doc: unknown, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = doc;
  for (const raw of ref.slice(2).split('/')) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === null || typeof node !== 'object' || !(part in node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The essentials of the OpenAPI 3.1 schema: version, info, paths, each operation's responses with
 * descriptions, path templates matched by required path parameters, valid parameter locations,
 * unique operationIds, known security schemes, JSON Schema types, and every `$ref` resolving.
 */
function openApiProblems(doc: OpenApiDocument): string[] {
  const problems: string[] = [];
  if (!/^3\.1\.\d+$/.test(doc.openapi)) problems.push(`openapi is ${doc.openapi}, not 3.1.x`);
  const info = doc.info as Record<string, unknown> | undefined;
  if (!isObject(info) || typeof info.title !== 'string' || typeof info.version !== 'string')
    problems.push('info needs title and version');
  if (!isObject(doc.paths)) problems.push('paths must be an object');
  const schemes = isObject(doc.components?.securitySchemes) ? doc.components.securitySchemes : {};
  for (const requirement of (doc.security as Record<string, unknown>[] | undefined) ?? []) {
    for (const name of Object.keys(requirement))
      if (!(name in schemes)) problems.push(`security names unknown scheme ${name}`);
  }
  const deref = (v: unknown) => (isObject(v) && typeof v.$ref === 'string' ? resolvePointer(doc, v.$ref) : v);
  const ids = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    if (!path.startsWith('/')) problems.push(`path ${path} does not start with /`);
    const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const [method, op] of Object.entries(item)) {
      const where = `${method.toUpperCase()} ${path}`;
      if (!OPERATION_KEYS.includes(method)) {
        problems.push(`${where}: ${method} is not an operation`);
        continue;
      }
      const id = op.operationId;
      if (typeof id !== 'string' || ids.has(id))
        problems.push(`${where}: operationId ${String(id)} missing or duplicate`);
      else ids.add(id);
      const params = ((op.parameters as unknown[] | undefined) ?? []).map(deref) as Record<string, unknown>[];
      for (const p of params) {
        if (typeof p.name !== 'string' || !['query', 'header', 'path', 'cookie'].includes(String(p.in)))
          problems.push(`${where}: bad parameter ${JSON.stringify(p)}`);
        if (!('schema' in p) && !('content' in p))
          problems.push(`${where}: parameter ${String(p.name)} has no schema`);
        if (p.in === 'path' && (p.required !== true || !templated.includes(String(p.name))))
          problems.push(`${where}: path parameter ${String(p.name)} not required or not in the path`);
      }
      for (const name of templated) {
        if (!params.some((p) => p.in === 'path' && p.name === name))
          problems.push(`${where}: {${name}} has no path parameter`);
      }
      const responses = op.responses;
      if (!isObject(responses) || Object.keys(responses).length === 0)
        problems.push(`${where}: no responses`);
      else {
        for (const [status, response] of Object.entries(responses)) {
          if (!/^([1-5](\d\d|XX)|default)$/.test(status)) problems.push(`${where}: response key ${status}`);
          const r = deref(response);
          if (!isObject(r) || typeof r.description !== 'string')
            problems.push(`${where}: response ${status} has no description`);
        }
      }
      const body = deref(op.requestBody);
      if (
        body !== undefined &&
        (!isObject(body) || !isObject(body.content) || Object.keys(body.content).length === 0)
      )
        problems.push(`${where}: requestBody without content`);
      for (const tag of (op.tags as string[] | undefined) ?? []) {
        if (!((doc.tags as { name: string }[] | undefined) ?? []).some((t) => t.name === tag))
          problems.push(`${where}: tag ${tag} not declared`);
      }
    }
  }
  // Every $ref resolves, and every `type` is a JSON Schema type.
  const walk = (node: unknown, at: string): void => {
    if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${at}/${i}`));
    if (!isObject(node)) return;
    if (typeof node.$ref === 'string' && resolvePointer(doc, node.$ref) === undefined)
      problems.push(`${at}: $ref ${node.$ref} does not resolve`);
    if (
      typeof node.type === 'string' &&
      at.includes('schema') &&
      !JSON_TYPES.has(node.type) &&
      !at.includes('securitySchemes')
    )
      problems.push(`${at}: type ${node.type}`);
    for (const [k, v] of Object.entries(node)) walk(v, `${at}/${k}`);
  };
  walk(doc, '#');
  return problems;
}

/** Where `value` does not fit the JSON Schema `schema` of `doc` (the subset zod emits: $ref, objects, arrays, anyOf, enum, const, types). */
function misfits(doc: unknown, schema: unknown, value: unknown, at = '$'): string[] {
  if (!isObject(schema)) return [];
  if (typeof schema.$ref === 'string') return misfits(doc, resolvePointer(doc, schema.$ref), value, at);
  if (Array.isArray(schema.anyOf)) {
    const fits = schema.anyOf.some((s) => misfits(doc, s, value, at).length === 0);
    return fits ? [] : [`${at}: fits none of anyOf`];
  }
  if ('const' in schema && value !== schema.const) return [`${at}: not ${JSON.stringify(schema.const)}`];
  if (Array.isArray(schema.enum) && !schema.enum.includes(value))
    return [`${at}: ${String(value)} not in enum`];
  const types = ([] as unknown[]).concat(schema.type ?? []);
  const typeOf = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  const typeFits = (t: unknown) => t === typeOf || (t === 'integer' && Number.isInteger(value));
  if (types.length > 0 && !types.some(typeFits)) return [`${at}: ${typeOf}, not ${types.join('|')}`];
  if (Array.isArray(value)) return value.flatMap((v, i) => misfits(doc, schema.items, v, `${at}[${i}]`));
  if (!isObject(value)) return [];
  const properties = isObject(schema.properties) ? schema.properties : {};
  const problems = ((schema.required as string[] | undefined) ?? [])
    .filter((k) => !(k in value))
    .map((k) => `${at}.${k}: missing`);
  for (const [k, v] of Object.entries(value)) {
    if (k in properties) problems.push(...misfits(doc, properties[k], v, `${at}.${k}`));
    else if (schema.additionalProperties === false) problems.push(`${at}.${k}: not in the schema`);
    else problems.push(...misfits(doc, schema.additionalProperties, v, `${at}.${k}`));
  }
  return problems;
}

beforeAll(async () => {
  t = await startTestApp({ LOG_LEVEL: 'silent' }, { role: 'api' });
});
afterAll(() => t?.stop());

describe('the admin API OpenAPI document', () => {
  it('documents every route the app mounts under /api, each with its own spec', () => {
    const mounted = mountedRoutes(apiRouter(t.app)).map((r) => `${r.method.toUpperCase()} ${r.path}`);
    expect(mounted).toEqual(
      expect.arrayContaining(['POST /agents', 'PATCH /agents/:id', 'POST /customers/:id/merge']),
    );

    const doc = openApiFor(apiRouter(t.app));
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).map((m) => `${m.toUpperCase()} ${path.replace(/\{([^}]+)\}/g, ':$1')}`),
    );
    for (const route of mounted) expect(documented).toContain(route);
    const undocumented = Object.values(doc.paths)
      .flatMap((item) => Object.values(item))
      .filter((op) => (op.tags as string[]).includes('undocumented'));
    expect(undocumented).toEqual([]);
  });

  it('is a structurally valid OpenAPI 3.1 document', () => {
    expect(openApiProblems(openApiFor(apiRouter(t.app)))).toEqual([]);
    // And with every spec, including routes other routers will mount.
    expect(openApiProblems(buildOpenApi(adminRouteSpecs))).toEqual([]);
  });

  it('the structural check catches a broken document', () => {
    const doc = buildOpenApi(adminRouteSpecs);
    const broken = JSON.parse(JSON.stringify(doc)) as OpenApiDocument;
    broken.openapi = '3.0.3';
    delete broken.paths['/agents/{id}']!.get!.responses;
    (
      broken.paths['/agents']!.post!.requestBody as { content: { 'application/json': { schema: unknown } } }
    ).content['application/json'].schema = { $ref: '#/components/schemas/Nope' };
    broken.paths['/agents/{id}']!.patch!.parameters = [];
    expect(openApiProblems(broken)).toEqual(
      expect.arrayContaining([
        'openapi is 3.0.3, not 3.1.x',
        'GET /agents/{id}: no responses',
        expect.stringContaining('$ref #/components/schemas/Nope does not resolve'),
        'PATCH /agents/{id}: {id} has no path parameter',
      ]),
    );
  });

  it('describes request bodies with the very zod schemas the handlers validate with', () => {
    const doc = buildOpenApi(adminRouteSpecs);
    const bodySchema = (path: string, method: string) => {
      const ref = (
        doc.paths[path]![method]!.requestBody as { content: Record<string, { schema: { $ref: string } }> }
      ).content['application/json']!.schema.$ref;
      return resolvePointer(doc, ref);
    };
    const asJson = (s: z.ZodType) => {
      const { $schema: _ignored, ...rest } = z.toJSONSchema(s, {
        io: 'input',
        unrepresentable: 'any',
      }) as Record<string, unknown>;
      return rest;
    };
    expect(bodySchema('/agents', 'post')).toEqual(asJson(createAgentSchema));
    expect(bodySchema('/agents/{id}', 'patch')).toEqual(asJson(updateAgentSchema));
    expect(bodySchema('/customers/{id}/merge', 'post')).toEqual(asJson(mergeBody));
    expect(bodySchema('/customers/{id}/identities', 'post')).toEqual(asJson(identityBody));
    expect(bodySchema('/agents', 'post')).toMatchObject({
      required: ['slackUserId', 'name', 'inboxChannelId'],
    });
  });

  it('answers a body that fails validation with 400 naming the field and the reason, as documented', async () => {
    const res = await fetch(`${t.baseUrl}/api/agents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ slackUserId: 'alex', name: 'Alex', inboxChannelId: 'C0ALEX' }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.message).toMatch(/slackUserId: must be a Slack id/);
    const doc = buildOpenApi(adminRouteSpecs);
    expect(doc.paths['/agents']!.post!.responses).toMatchObject({
      400: { $ref: '#/components/responses/ValidationError' },
    });
  });

  it('is served at GET /api/openapi.json behind the admin token', async () => {
    const anonymous = await fetch(`${t.baseUrl}/api/openapi.json`);
    expect(anonymous.status).toBe(401);

    const res = await fetch(`${t.baseUrl}/api/openapi.json`, {
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    const served = (await res.json()) as OpenApiDocument;
    expect(served).toEqual(JSON.parse(JSON.stringify(openApiFor(apiRouter(t.app)))));
    expect(served.servers).toEqual([{ url: '/api' }]);
    expect(Object.keys(served.paths)).toContain('/openapi.json');
  });
  it('describes answers with the zod schemas the handlers type them by, and real answers fit them', async () => {
    const doc = openApiFor(apiRouter(t.app));
    const answerJson = (s: z.ZodType) => {
      const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { io: 'output', unrepresentable: 'any' });
      return rest;
    };
    expect(doc.components.schemas).toMatchObject({
      Agent: answerJson(agentView),
      Error: answerJson(errorBody),
      Merge: answerJson(mergeRecordView),
      DeadLetter: answerJson(deadLetterView),
    });
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${t.baseUrl}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as unknown };
    };
    const answerSchema = (path: string, method: string, status: number) => {
      const response = doc.paths[path]![method]!.responses as Record<string, unknown>;
      const entry = response[String(status)] as Record<string, unknown>;
      const resolved = (typeof entry.$ref === 'string' ? resolvePointer(doc, entry.$ref) : entry) as {
        content: Record<string, { schema: unknown }>;
      };
      return resolved.content['application/json']!.schema;
    };

    const created = await call('POST', '/agents', {
      slackUserId: 'U0SCHEMA',
      name: 'Sam',
      inboxChannelId: 'C0SCHEMA',
    });
    expect(created.status).toBe(201);
    expect(misfits(doc, answerSchema('/agents', 'post', 201), created.body)).toEqual([]);
    const id = (created.body as { id: string }).id;
    const answers: [string, string, string, number][] = [
      ['GET', '/agents', '/agents', 200],
      ['GET', `/agents/${id}`, '/agents/{id}', 200],
      ['PATCH', `/agents/${id}`, '/agents/{id}', 200],
      ['GET', '/dead-letters', '/dead-letters', 200],
      ['POST', '/dead-letters/replay', '/dead-letters/replay', 200],
      ['GET', '/agents/0123456789abcdef01234567', '/agents/{id}', 404],
    ];
    for (const [method, path, documented, status] of answers) {
      const answer = await call(
        method,
        path,
        method === 'PATCH' ? { capacity: 7, active: false } : undefined,
      );
      expect([path, answer.status]).toEqual([path, status]);
      expect(misfits(doc, answerSchema(documented, method.toLowerCase(), status), answer.body)).toEqual([]);
    }
    // The check itself catches an answer that does not fit.
    expect(
      misfits(doc, answerSchema('/agents', 'post', 201), { ...(created.body as object), extra: 1 }),
    ).toEqual(['$.extra: not in the schema']);
  });
});
