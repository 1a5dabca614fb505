/**
 * The agents' side over HTTP: `POST /slack/events`, `/slack/commands`, `/slack/interactions`.
 * Every request is verified (v0 signature over the raw bytes, 5-minute window) before anything
 * else. Events are answered within Slack's 3 s after being queued (deduplicated on `event_id`, so
 * Slack's retries add nothing); commands and button presses answer with an ephemeral text.
 */
import express, { Router } from 'express';
import type { Queue } from 'bullmq';
import type { RedisClient } from '../queue/connection';
import {
  isSlackSslCheck,
  parseInteraction,
  parseSlackEvent,
  parseSlashCommand,
} from '../channels/slack/normalize';
import { verifySlackSignature } from '../channels/slack/signature';
import { AppError, UnavailableError } from '../errors';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { AgentEventJob } from '../router/agent-events';
import type { createCommands } from '../router/commands';

export interface SlackRoutesOptions {
  signingSecret: string;
  agentEvents: Queue<AgentEventJob>;
  redis: RedisClient;
  prefix: string;
  commands: ReturnType<typeof createCommands>;
  log: Logger;
  metrics: Metrics;
  maxBytes: number;
}

export function slackRoutes(o: SlackRoutesOptions): Router {
  const router = Router();
  const raw = express.raw({ type: () => true, limit: o.maxBytes });
  const reject = (route: string) => (err: unknown) => {
    if (err instanceof AppError) o.metrics.webhookRejections.inc({ route, reason: err.code });
    throw err;
  };

  router.post('/slack/events', raw, async (req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    try {
      verifySlackSignature(o.signingSecret, req.headers, body);
      const event = parseSlackEvent(body);
      if (event.type === 'url_verification') {
        res.type('text/plain').send(event.challenge);
        return;
      }
      if (event.type === 'ignored') {
        o.log.info({ eventId: event.eventId, reason: event.reason }, 'slack event ignored');
        res.status(200).end();
        return;
      }
      const seenKey = `${o.prefix}:seen:slack:${event.eventId}`;
      try {
        if (!(await o.redis.exists(seenKey))) {
          await o.agentEvents.add(event.type, event, { jobId: `ev~${event.eventId.replaceAll(':', '~')}` });
          await o.redis.set(seenKey, '1', 'EX', 3 * 24 * 3600);
        }
      } catch (err) {
        throw new UnavailableError('queue unavailable', { cause: err });
      }
      res.status(200).end();
    } catch (err) {
      reject('/slack/events')(err);
    }
  });

  router.post('/slack/commands', raw, async (req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    try {
      verifySlackSignature(o.signingSecret, req.headers, body);
      if (isSlackSslCheck(body)) {
        res.status(200).end();
        return;
      }
      const command = parseSlashCommand(body);
      const text = await o.commands.run(
        { userId: command.userId, channelId: command.channelId, threadTs: command.threadTs },
        command.text,
      );
      o.log.info({ user: command.userId, sub: command.text.split(/\s+/)[0] }, 'slash command');
      res.json({ response_type: 'ephemeral', text });
    } catch (err) {
      reject('/slack/commands')(err);
    }
  });

  router.post('/slack/interactions', raw, async (req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    try {
      verifySlackSignature(o.signingSecret, req.headers, body);
      const interaction = parseInteraction(body);
      if (interaction.type === 'ignored') {
        res.status(200).end();
        return;
      }
      const replies: string[] = [];
      for (const action of interaction.actions) {
        const text = await o.commands.interaction({
          userId: interaction.userId,
          channelId: interaction.channelId,
          threadTs: interaction.threadTs ?? interaction.messageTs,
          actionId: action.actionId,
          selectedUser: action.selectedUser,
          value: action.value,
        });
        if (text) replies.push(text);
      }
      res.status(200).end();
      // Slack shows nothing from the HTTP answer to a button press: reply through response_url.
      if (replies.length > 0 && interaction.responseUrl) {
        fetch(interaction.responseUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            response_type: 'ephemeral',
            replace_original: false,
            text: replies.join('\n'),
          }),
          signal: AbortSignal.timeout(5_000),
        }).catch((err: unknown) => o.log.warn({ err: { message: String(err) } }, 'response_url post failed'));
      }
    } catch (err) {
      reject('/slack/interactions')(err);
    }
  });

  return router;
}
