/**
 * `/sandbox`: a page where one person plays the customers and the agents, and its small JSON API
 * (`/sandbox/api/…`). Mounted only in sandbox mode (see index.ts `serve`), never on a normal app.
 *
 * The server side does what the providers and Slack would do, through Rapport's real routes:
 * a customer's message becomes a webhook signed as Twilio or Meta sign them, POSTed to
 * /webhooks/…; an agent's reply is stored in the Slack emulator (`postAsUser`) and POSTed to
 * /slack/events signed as Slack signs it; a `/rapport` command goes to /slack/commands. What
 * Rapport sends back is read from the emulators' records. Agents and customer profiles come from
 * the admin API (`/api/…`) with the admin token, so the page itself needs none: that is why this
 * router is only ever served on loopback in sandbox mode.
 *
 * Requests go to Rapport at the address and port the page's own request arrived on, so it works
 * on any port (including 0 in tests).
 */
import express, { Router, type ErrorRequestHandler, type Request } from 'express';
import { z } from 'zod';
import type { Config } from '../config';
import { PayloadError, isAppError } from '../errors';
import { normalizePhone } from '../identity/phone';
import type { Logger } from '../logger';
import { SANDBOX_CREDENTIALS, type SandboxEmulators } from './credentials';
import { recordsOf, type EmulatorJournal, type JournalRecord } from './emulators/journal';
import type { EmulatedMessage } from './emulators/slack';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page';
import {
  APPS,
  customerMessage,
  deliveryReport,
  blockAction,
  slackChangeEvent,
  slackMessageEvent,
  slashCommand,
  type App,
  type DeliveryState,
  type ProviderSecrets,
  type SignedRequest,
} from './signed-requests';

export interface SandboxRoutesOptions {
  emulators: SandboxEmulators;
  /** The app's config: the page signs with the secrets Rapport verifies with. */
  config: Readonly<Config>;
  log: Logger;
  /** Where people, what they wrote and delivery reports are kept (sandbox mode: MongoDB). */
  journal?: EmulatorJournal;
  /** What the journal kept from earlier runs, oldest first. */
  records?: readonly JournalRecord[];
}

interface Person {
  id: string;
  name: string;
  /** E.164. */
  phone: string;
  /** The person's Messenger id for the sandbox page. */
  psid: string;
}

interface WrittenByCustomer {
  personId: string;
  app: App;
  text: string;
  at: number;
  /** Provider message id. */
  ref: string;
  /** Rapport's HTTP answer to the webhook. */
  status: number;
}

interface AgentView {
  id: string;
  name: string;
  slackUserId: string;
  inboxChannelId: string;
  status: string;
  openCustomers?: number;
}

const SEED_AGENTS = [
  { name: 'Alex', slackUserId: 'U0ALEX', inboxChannelId: 'C0INBOXALEX' },
  { name: 'Sam', slackUserId: 'U0SAM', inboxChannelId: 'C0INBOXSAM' },
];

const SEED_CUSTOMERS: { name: string; phone: string; app: App; text: string }[] = [
  {
    name: 'Dana Whitfield',
    phone: '+14155550123',
    app: 'sms',
    text: "Hi! My order #1042 hasn't arrived yet.",
  },
  {
    name: 'Lee Carter',
    phone: '+447700900123',
    app: 'whatsapp-cloud',
    text: 'Hello, do you ship to Manchester?',
  },
  {
    name: 'Maria Rossi',
    phone: '+393471234567',
    app: 'messenger',
    text: 'Can I change the delivery address on my order?',
  },
  {
    name: 'Ravi Menon',
    phone: '+919812345678',
    app: 'twilio-whatsapp',
    text: 'Is the blue jacket back in stock in size M?',
  },
];

const appSchema = z.enum(APPS);
const personBody = z.object({
  name: z.string().trim().min(1).max(60),
  phone: z.string().trim().max(32).optional(),
});
const sendBody = z.object({ person: z.string(), app: appSchema, text: z.string().trim().min(1).max(1600) });
const statusBody = z.object({
  person: z.string(),
  app: appSchema,
  ref: z.string().min(1),
  state: z.enum(['delivered', 'read']),
});
const actionBody = z.object({
  user: z.string().min(1),
  channel: z.string().min(1),
  cardTs: z.string().min(1),
  actionId: z.enum(['rapport_close', 'rapport_template', 'rapport_handoff']),
  value: z.string().optional(),
  selectedUser: z.string().optional(),
});
const changeBody = z.object({
  channel: z.string().min(1),
  ts: z.string().min(1),
  text: z.string().trim().min(1).max(4000).optional(),
});
const agentBody = z.object({ name: z.string().trim().min(1).max(40) });
const replyBody = z.object({
  user: z.string().min(1),
  channel: z.string().min(1),
  threadTs: z.string().optional(),
  text: z.string().trim().min(1).max(4000),
});

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  throw new PayloadError(
    result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '),
  );
}

const digits = (s: string) => s.replace(/\D/g, '');
const randomDigits = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 10)).join('');
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** "Added agents Alex, Sam and 4 customers (Dana, …). Already there: …" for the page. */
export function seedSummary(
  added: { agents: string[]; customers: string[] },
  existing: { agents: string[]; customers: string[] },
): string {
  const list = (what: { agents: string[]; customers: string[] }) =>
    [
      what.agents.length ? `agents ${what.agents.join(', ')}` : '',
      what.customers.length ? `customers ${what.customers.join(', ')}` : '',
    ]
      .filter(Boolean)
      .join('; ');
  const parts = [
    list(added) ? `Added ${list(added)}.` : 'Added nothing new.',
    list(existing) ? `Already there: ${list(existing)}.` : '',
  ];
  return parts.filter(Boolean).join(' ');
}

/** Rapport as reached from here: the address and port this request came in on. */
function rapportBase(req: Request): string {
  let host = req.socket.localAddress ?? '127.0.0.1';
  if (host.startsWith('::ffff:')) host = host.slice('::ffff:'.length);
  if (host === '::' || host === '0.0.0.0') host = '127.0.0.1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${req.socket.localPort}`;
}

/** What a provider record says, as the customer's phone would show it. */
function describeTwilio(m: { body?: string; mediaUrls: string[]; contentSid?: string }): string {
  const parts = [m.body ?? '', ...m.mediaUrls.map((u) => `[media] ${u}`)];
  if (m.contentSid) parts.push(`[template ${m.contentSid}]`);
  return parts.filter(Boolean).join('\n');
}

function describeCloud(body: Record<string, unknown>, type: string): string {
  const part = body[type];
  if (!isRecord(part)) return `[${type}]`;
  if (type === 'text') return String(part.body ?? '');
  if (type === 'template') return `[template ${String(part.name ?? '')}]`;
  return [
    `[${type}] ${String(part.link ?? part.id ?? '')}`,
    typeof part.caption === 'string' ? part.caption : '',
  ]
    .filter(Boolean)
    .join('\n');
}

function describeMessenger(message: Record<string, unknown>): string {
  if (typeof message.text === 'string') return message.text;
  const attachment = message.attachment;
  if (!isRecord(attachment)) return '[message]';
  const payload = isRecord(attachment.payload) ? attachment.payload : {};
  return `[${String(attachment.type)}] ${String(payload.url ?? '')}`.trim();
}

export function sandboxRoutes(o: SandboxRoutesOptions): Router {
  const { emulators, config, log } = o;
  const { slack, twilio, graph } = emulators;
  if (
    !config.twilio?.smsFrom ||
    !config.twilio.whatsappFrom ||
    !config.meta ||
    !config.whatsappCloud ||
    !config.slack
  ) {
    throw new Error(
      'sandboxRoutes needs the sandbox config (every channel on): build it from startSandbox().env',
    );
  }
  const secrets: ProviderSecrets = {
    publicUrl: config.publicUrl,
    twilio: {
      accountSid: config.twilio.accountSid,
      authToken: config.twilio.authToken,
      smsFrom: config.twilio.smsFrom,
      whatsappFrom: config.twilio.whatsappFrom,
    },
    meta: {
      appSecret: config.meta.appSecret,
      pageId: SANDBOX_CREDENTIALS.meta.pageId,
      phoneNumberId: config.whatsappCloud.phoneNumberId,
      wabaId: SANDBOX_CREDENTIALS.meta.wabaId,
      displayPhoneNumber: SANDBOX_CREDENTIALS.meta.displayPhoneNumber,
    },
    slack: { signingSecret: config.slack.signingSecret, teamId: slack.teamId, apiUrl: slack.url },
  };
  const escalationChannel = config.slack.escalationChannel;

  // The page's own memory: who the customers are and what they wrote (Rapport's side is in Rapport).
  const kept = o.records ?? [];
  const people: Person[] = recordsOf<Person>(kept, 'page.person');
  const written: WrittenByCustomer[] = recordsOf<WrittenByCustomer>(kept, 'page.written');
  const reported = new Map<string, DeliveryState>(
    recordsOf<{ ref: string; state: DeliveryState }>(kept, 'page.reported').map((r) => [r.ref, r.state]),
  );
  const keep = (kind: string, id: string, doc: unknown) => o.journal?.write(kind, id, doc);

  function personOf(id: string): Person {
    const person = people.find((p) => p.id === id);
    if (!person) throw new PayloadError('person: no such customer in the sandbox');
    return person;
  }

  async function addPerson(name: string, phone: string): Promise<Person> {
    const existing = people.find((p) => p.phone === phone);
    if (existing) return existing;
    const person: Person = { id: `p${people.length + 1}`, name, phone, psid: `7${randomDigits(15)}` };
    people.push(person);
    await keep('page.person', person.id, person);
    // Rapport may ask the Graph API for a Messenger user's name, as it would for a real page.
    const [first, ...rest] = name.split(/\s+/);
    graph.setProfile(person.psid, { first_name: first ?? name, last_name: rest.join(' ') });
    return person;
  }

  async function post(req: Request, r: SignedRequest): Promise<{ status: number; text: string }> {
    const res = await fetch(`${rapportBase(req)}${r.path}`, {
      method: 'POST',
      headers: r.headers,
      body: r.body,
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, text: await res.text() };
  }

  async function admin(
    req: Request,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${rapportBase(req)}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${config.adminToken}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // keep the text
    }
    return { status: res.status, body: parsed };
  }

  async function agents(req: Request): Promise<AgentView[]> {
    const res = await admin(req, 'GET', '/agents');
    if (res.status !== 200 || !isRecord(res.body) || !Array.isArray(res.body.agents)) return [];
    return res.body.agents as AgentView[];
  }

  async function createAgent(
    req: Request,
    agent: { name: string; slackUserId: string; inboxChannelId: string },
  ) {
    slack.addUser({ id: agent.slackUserId, name: agent.name.toLowerCase(), realName: agent.name });
    const res = await admin(req, 'POST', '/agents', agent);
    if (res.status !== 201 && res.status !== 409) throw new Error(`creating agent failed: ${res.status}`);
    return res;
  }

  async function writeAsCustomer(req: Request, person: Person, app: App, text: string) {
    const { request, ref } = customerMessage(secrets, app, person, text);
    const res = await post(req, request);
    const entry: WrittenByCustomer = {
      personId: person.id,
      app,
      text,
      at: Date.now(),
      ref,
      status: res.status,
    };
    written.push(entry);
    await keep('page.written', ref, entry);
    return { status: res.status, ref };
  }

  /** Everything Rapport sent this person on this app, from the emulators' records. */
  function received(person: Person, app: App): { text: string; at: number; ref: string }[] {
    if (app === 'sms' || app === 'twilio-whatsapp') {
      const to = app === 'sms' ? person.phone : `whatsapp:${person.phone}`;
      return twilio
        .messages()
        .filter((m) => m.to === to)
        .map((m) => ({ text: describeTwilio(m), at: m.at, ref: m.sid }));
    }
    if (app === 'whatsapp-cloud') {
      const waId = digits(person.phone);
      return graph
        .whatsappMessages()
        .filter((m) => m.waId === waId)
        .map((m) => ({ text: describeCloud(m.body, m.type), at: m.at, ref: m.id }));
    }
    return graph
      .messengerMessages()
      .filter((m) => m.recipientId === person.psid)
      .map((m) => ({ text: describeMessenger(m.message), at: m.at, ref: m.messageId }));
  }

  function phoneView(person: Person, app: App) {
    const mine = written
      .filter((w) => w.personId === person.id && w.app === app)
      .map((w) => ({ from: 'customer' as const, text: w.text, at: w.at, ref: w.ref, status: w.status }));
    const theirs = received(person, app).map((r) => ({
      from: 'business' as const,
      ...r,
      state: reported.get(r.ref) ?? null,
    }));
    const counts = Object.fromEntries(APPS.map((a) => [a, received(person, a).length]));
    return { person, app, counts, messages: [...mine, ...theirs].sort((a, b) => a.at - b.at) };
  }

  function slackView(list: AgentView[]) {
    const byUser = new Map(list.map((a) => [a.slackUserId, a.name]));
    const view = (m: EmulatedMessage) => ({
      ts: m.ts,
      author: m.bot_id ? (m.username ?? 'Rapport') : (byUser.get(m.user) ?? m.user),
      bot: Boolean(m.bot_id),
      text: m.text,
      reactions: m.reactions,
      kind: m.metadata?.event_type ?? null,
      customerId:
        typeof m.metadata?.event_payload.customerId === 'string' ? m.metadata.event_payload.customerId : null,
    });
    const channels = [
      ...list.map((a) => ({
        id: a.inboxChannelId,
        name: `inbox-${a.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`,
        agent: a.slackUserId,
      })),
      ...(escalationChannel ? [{ id: escalationChannel, name: 'rapport-escalations', agent: null }] : []),
    ].filter((c, i, all) => all.findIndex((d) => d.id === c.id) === i);
    return channels.map((c) => ({
      ...c,
      threads: slack
        .messages(c.id)
        .filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts)
        .map((m) => ({ ...view(m), replies: slack.thread(c.id, m.ts).slice(1).map(view) })),
    }));
  }

  /** The customer(s) Rapport knows for this person (phone and Messenger may still be two), with history. */
  async function customersOf(req: Request, person: Person | undefined, customerId: string | undefined) {
    const ids = new Map<string, string[]>();
    if (customerId) ids.set(customerId, ['selected']);
    else if (person) {
      const lookups = [
        ['phone', `phone=${encodeURIComponent(person.phone)}`],
        ['Messenger', `psid=${encodeURIComponent(`${secrets.meta.pageId}:${person.psid}`)}`],
      ] as const;
      for (const [via, query] of lookups) {
        const res = await admin(req, 'GET', `/customers?${query}`);
        const found = isRecord(res.body) && Array.isArray(res.body.customers) ? res.body.customers : [];
        for (const c of found)
          if (isRecord(c) && typeof c.id === 'string') ids.set(c.id, [...(ids.get(c.id) ?? []), via]);
      }
    }
    const details = await Promise.all(
      [...ids].map(async ([id, via]) => {
        const res = await admin(req, 'GET', `/customers/${encodeURIComponent(id)}`);
        return res.status === 200 && isRecord(res.body) ? { ...res.body, via } : undefined;
      }),
    );
    return details.filter((d) => d !== undefined);
  }

  const router = Router();
  const asset = (type: string, body: string) => (_req: Request, res: express.Response) => {
    res.set('content-type', type);
    // The page loads nothing from anywhere else.
    res.set('content-security-policy', "default-src 'self'; img-src 'self' data:");
    res.set('cache-control', 'no-store');
    res.send(body);
  };
  router.get('/sandbox', asset('text/html; charset=utf-8', PAGE_HTML));
  router.get('/sandbox/app.js', asset('text/javascript; charset=utf-8', PAGE_JS));
  router.get('/sandbox/app.css', asset('text/css; charset=utf-8', PAGE_CSS));

  const api = Router();
  api.use(express.json({ limit: '64kb' }));

  api.get('/state', async (req, res) => {
    const q = (name: string) =>
      typeof req.query[name] === 'string' ? (req.query[name] as string) : undefined;
    const person = people.find((p) => p.id === q('person'));
    const app = appSchema.safeParse(q('app')).data ?? 'sms';
    const customerId = q('customer');
    const [list, customers] = await Promise.all([
      agents(req),
      person || customerId ? customersOf(req, person, customerId) : Promise.resolve([]),
    ]);
    res.json({
      people,
      agents: list,
      phone: person ? phoneView(person, app) : null,
      slack: { channels: slackView(list) },
      customers,
    });
  });

  api.post('/people', async (req, res) => {
    const body = parse(personBody, req.body);
    const phone = body.phone
      ? normalizePhone(body.phone, config.defaultRegion)
      : `+1415555${randomDigits(4)}`;
    if (!phone) throw new PayloadError('phone: not a valid phone number');
    res.status(201).json(await addPerson(body.name, phone));
  });

  api.post('/customer/send', async (req, res) => {
    const body = parse(sendBody, req.body);
    res.json(await writeAsCustomer(req, personOf(body.person), body.app, body.text));
  });

  api.post('/customer/status', async (req, res) => {
    const body = parse(statusBody, req.body);
    const answer = await post(
      req,
      deliveryReport(secrets, body.app, personOf(body.person), body.ref, body.state),
    );
    if (answer.status < 300) {
      reported.set(body.ref, body.state);
      await keep('page.reported', body.ref, { ref: body.ref, state: body.state });
    }
    res.json({ status: answer.status });
  });

  api.post('/agents', async (req, res) => {
    const { name } = parse(agentBody, req.body);
    const slug =
      name
        .toUpperCase()
        .replace(/[^A-Z0-9]/g, '')
        .slice(0, 12) || randomDigits(4);
    const result = await createAgent(req, {
      name,
      slackUserId: `U0${slug}`,
      inboxChannelId: `C0INBOX${slug}`,
    });
    res.status(result.status).json(result.body);
  });

  api.post('/agent/reply', async (req, res) => {
    const body = parse(replyBody, req.body);
    const stored = slack.postAsUser(body.channel, {
      user: body.user,
      text: body.text,
      threadTs: body.threadTs,
    });
    await slack.persisted();
    const answer = await post(
      req,
      slackMessageEvent(secrets, {
        channel: body.channel,
        user: body.user,
        text: body.text,
        ts: stored.ts,
        threadTs: body.threadTs,
      }),
    );
    res.json({ status: answer.status, ts: stored.ts });
  });

  /** What Rapport answered to a card button through `response_url`, by request id. */
  const answers = new Map<string, (text: string) => void>();
  api.post('/slack-response/:id', (req, res) => {
    const text = isRecord(req.body) && typeof req.body.text === 'string' ? req.body.text : '';
    answers.get(req.params.id)?.(text);
    res.json({ ok: true });
  });

  /** A card's button (Close, Send template) or its "Hand off to…" picker, pressed as the agent. */
  api.post('/agent/action', async (req, res) => {
    const body = parse(actionBody, req.body);
    const id = randomDigits(12);
    const answered = new Promise<string>((resolve) => {
      answers.set(id, resolve);
      setTimeout(() => resolve(''), 5_000).unref();
    });
    const answer = await post(
      req,
      blockAction(secrets, { ...body, responseUrl: `${rapportBase(req)}/sandbox/api/slack-response/${id}` }),
    );
    const text = answer.status < 300 ? await answered : '';
    answers.delete(id);
    res.json({ status: answer.status, text });
  });

  /** The agent edits (text given) or deletes their reply, as in Slack: Rapport gets the event. */
  api.post('/agent/change', async (req, res) => {
    const body = parse(changeBody, req.body);
    const wire = (m: EmulatedMessage) => ({
      user: m.user,
      text: m.text,
      ts: m.ts,
      ...(m.thread_ts ? { thread_ts: m.thread_ts } : {}),
    });
    const before = body.text
      ? slack.editAsUser(body.channel, body.ts, body.text)
      : slack.deleteAsUser(body.channel, body.ts);
    if (!before) throw new PayloadError('ts: no agent message with this ts in this channel');
    await slack.persisted();
    const after = body.text ? { ...wire(before), text: body.text } : undefined;
    const answer = await post(
      req,
      slackChangeEvent(secrets, { channel: body.channel, before: wire(before), after }),
    );
    res.json({ status: answer.status });
  });

  api.post('/agent/command', async (req, res) => {
    const body = parse(replyBody, req.body);
    const list = await agents(req);
    const userName = (list.find((a) => a.slackUserId === body.user)?.name ?? body.user).toLowerCase();
    const text = body.text.replace(/^\/rapport\b\s*/, '');
    const answer = await post(
      req,
      slashCommand(secrets, {
        channel: body.channel,
        user: body.user,
        userName,
        text,
        threadTs: body.threadTs,
      }),
    );
    let reply = answer.text;
    try {
      const json: unknown = JSON.parse(answer.text);
      if (isRecord(json) && typeof json.text === 'string') reply = json.text;
      else if (isRecord(json) && isRecord(json.error)) reply = String(json.error.message);
    } catch {
      // not JSON: show it as it is
    }
    res.json({ status: answer.status, text: reply });
  });

  api.post('/seed', async (req, res) => {
    const added = { agents: [] as string[], customers: [] as string[] };
    const existing = { agents: [] as string[], customers: [] as string[] };
    for (const agent of SEED_AGENTS) {
      const result = await createAgent(req, agent);
      (result.status === 201 ? added : existing).agents.push(agent.name);
    }
    for (const c of SEED_CUSTOMERS) {
      if (people.some((p) => p.phone === c.phone)) {
        existing.customers.push(c.name);
        continue;
      }
      await writeAsCustomer(req, await addPerson(c.name, c.phone), c.app, c.text);
      added.customers.push(c.name);
    }
    log.info({ agents: added.agents.length, customers: added.customers.length }, 'sandbox seeded');
    res.json({ added, existing, message: seedSummary(added, existing), people });
  });

  const errors: ErrorRequestHandler = (err: unknown, _req, res, _next) => {
    if (isAppError(err)) {
      res.status(err.status).json({ error: { code: err.code, message: err.message } });
      return;
    }
    if (isRecord(err) && typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
      res
        .status(err.status)
        .json({ error: { code: 'invalid_payload', message: String(err.type ?? 'bad request') } });
      return;
    }
    log.warn({ err }, 'sandbox request failed');
    res
      .status(502)
      .json({ error: { code: 'sandbox', message: err instanceof Error ? err.message : String(err) } });
  };
  api.use(errors);
  router.use('/sandbox/api', api);
  return router;
}
