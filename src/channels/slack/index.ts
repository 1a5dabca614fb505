/**
 * The Slack channel adapter (the agents' side): request signing, inbound payload parsing and the Web
 * API client. Transport only; the router decides what the events mean.
 */
export { escapeSlackText } from './escape';
export { SLACK_SIGNATURE_MAX_AGE_MS, signSlackRequest, verifySlackSignature } from './signature';
export {
  decodeSlackText,
  isSlackSslCheck,
  mentionsSomeone,
  parseInteraction,
  parseSlackEvent,
  parseSlashCommand,
  type AgentEvent,
  type Interaction,
  type InteractionAction,
  type SlackFile,
  type SlashCommand,
} from './normalize';
export {
  createSlackClient,
  SlackApiError,
  toSlackApiError,
  type SlackClient,
  type SlackClientOptions,
} from './client';
