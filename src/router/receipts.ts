/**
 * Provider delivery reports shown on the agent's Slack message: one reaction for the message's
 * current state (read replaces delivered; a failure removes both). Reports arriving out of order
 * never step a receipt back: the stored state decides.
 */
import type { DeliveryState, DeliveryStatus } from '../canonical';
import type { IdentityModels } from '../identity/models';
import type { CustomerSend, RouterModels } from './models';
import type { Outbox } from './outbox';
import { explainDeliveryFailure } from './texts';

const STATUS_REACTION: Record<string, string | undefined> = {
  sent: undefined,
  delivered: 'white_check_mark',
  read: 'eyes',
  played: 'eyes',
  failed: 'x',
  undelivered: 'x',
};

/** The receipt reactions; showing one removes the others. */
const RECEIPT_REACTIONS = ['white_check_mark', 'eyes', 'x'];

/** States a watermark report must not overwrite (it would step the receipt back). */
const AT_OR_AFTER: Partial<Record<DeliveryState, DeliveryState[]>> = {
  delivered: ['delivered', 'read', 'played', 'failed', 'undelivered'],
  read: ['read', 'played', 'failed', 'undelivered'],
};

type React = (ref: { channel: string; ts: string }, name: string, remove: string[]) => Promise<void>;

export interface ReceiptsOptions {
  models: RouterModels & IdentityModels;
  outbox: Pick<Outbox, 'postToAgent'>;
  react: React;
}

export function createReceipts({ models, outbox, react }: ReceiptsOptions) {
  /** Shows `state` on the agent's message of `send`, if it has one and the state has a reaction. */
  const showState = async (send: CustomerSend | null, state: string) => {
    const reaction = STATUS_REACTION[state];
    if (send?.slack && reaction)
      await react(
        send.slack,
        reaction,
        RECEIPT_REACTIONS.filter((r) => r !== reaction),
      );
  };

  /**
   * A Messenger delivery or read watermark: every reply to that customer sent before it is delivered
   * (or read). Each such reply's stored state moves forward and its Slack message shows it.
   */
  const onWatermark = async (status: DeliveryStatus): Promise<void> => {
    const skip = AT_OR_AFTER[status.state];
    const to = status.recipient;
    if (status.provider !== 'messenger' || !status.watermark || to?.kind !== 'psid' || !skip) return;
    const filter = {
      provider: 'messenger' as const,
      direction: 'out' as const,
      identityKey: `psid:${to.pageId}:${to.psid}`,
      sentAt: { $lte: new Date(status.watermark) },
      'status.state': { $nin: skip },
    };
    const covered = await models.Message.find(filter, { providerMessageId: 1 })
      .sort({ sentAt: -1 })
      .limit(20)
      .lean<{ providerMessageId: string }[]>();
    const entry = { key: status.key, state: status.state, at: new Date(status.at), providerErrors: [] };
    for (const { providerMessageId } of covered) {
      const moved = await models.Message.updateOne(
        { ...filter, providerMessageId },
        { $set: { status: entry } },
      );
      if (moved.modifiedCount === 0) continue;
      const send = await models.CustomerSend.findOne({
        provider: 'messenger',
        providerMessageId,
      }).lean<CustomerSend>();
      await showState(send, status.state);
    }
  };

  /**
   * A provider's delivery report about one of our sends: the receipt reaction, and for a failure of
   * an agent's reply or a template a note with the provider's reason and what to do.
   */
  const onStatus = async (status: DeliveryStatus): Promise<void> => {
    if (!status.providerMessageId) return onWatermark(status);
    const send = await models.CustomerSend.findOne({
      provider: status.provider,
      providerMessageId: status.providerMessageId,
    }).lean<CustomerSend>();
    if (!send) return;
    const stored = await models.Message.findOne(
      { key: `${status.provider}:${status.providerMessageId}` },
      { status: 1 },
    ).lean<{ status?: { state: string } }>();
    await showState(send, stored?.status?.state ?? status.state);
    if (
      (status.state === 'failed' || status.state === 'undelivered') &&
      (send.origin === 'agent' || send.origin === 'template')
    ) {
      await outbox.postToAgent(send.customerId, {
        key: `status-note:${status.key}`,
        kind: 'note',
        username: 'Rapport',
        text: explainDeliveryFailure(status.channel, status.errors[0]),
      });
    }
  };

  return { onStatus };
}
