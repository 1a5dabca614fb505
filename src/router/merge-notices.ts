/**
 * What agents are told when customers are merged or a merge is undone: a note in each thread
 * concerned, and both customers' cards refreshed.
 */
import { Types } from 'mongoose';
import { escapeSlackText } from '../channels/slack/escape';
import type { IdentityModels } from '../identity/models';
import type { CardUpdates } from './card-updates';
import type { Outbox } from './outbox';
import type { Ownership } from './ownership';

export interface MergeNoticesOptions {
  models: IdentityModels;
  ownership: Pick<Ownership, 'agentById'>;
  outbox: Pick<Outbox, 'postToAgent'>;
  cards: Pick<CardUpdates, 'requestRefresh'>;
}

export function createMergeNotices({ models, ownership, outbox, cards }: MergeNoticesOptions) {
  /**
   * The other owner of a merge is told in their thread; the survivor's thread gets one note: the
   * history note, or `survivorNote` (a verified claim's own account of the merge).
   */
  const onMerged = async (
    m: { survivorId?: string; mergedId?: string; otherOwnerAgentId?: string },
    survivorNote?: string,
  ) => {
    if (!m.mergedId || !m.survivorId) return;
    const merged = new Types.ObjectId(m.mergedId);
    const survivor = await models.Customer.findById(m.survivorId).lean();
    const owner = await ownership.agentById(survivor?.ownerAgentId);
    await outbox.postToAgent(merged, {
      key: `merged-away:${m.mergedId}:${m.survivorId}`,
      kind: 'note',
      username: 'Rapport',
      text: `:twisted_rightwards_arrows: This customer turned out to be the same person as ${escapeSlackText(survivor?.displayName ?? 'another customer')} (\`${m.survivorId}\`), owned by ${owner?.name ?? 'nobody'}. Their conversation continues there; a reply here still reaches them if you may act on that customer (its owner, their cover or a lead).`,
    });
    await outbox.postToAgent(new Types.ObjectId(m.survivorId), {
      key: `merged-into:${m.mergedId}:${m.survivorId}`,
      kind: 'note',
      username: 'Rapport',
      text:
        survivorNote ??
        `:twisted_rightwards_arrows: Merged with customer \`${m.mergedId}\`: their identities and history are now part of this customer.`,
    });
    await cards.requestRefresh(m.survivorId);
    await cards.requestRefresh(m.mergedId);
  };

  /**
   * A merge was undone: the restored customer's owner gets them back and is told in that customer's
   * thread; the survivor's thread says what left. Both cards are refreshed.
   */
  const onUnmerged = async (m: { survivorId: string; restoredId: string; mergeId: string }) => {
    const [survivor, restored] = await Promise.all([
      models.Customer.findById(m.survivorId).lean(),
      models.Customer.findById(m.restoredId).lean(),
    ]);
    const owner = await ownership.agentById(restored?.ownerAgentId);
    await outbox.postToAgent(new Types.ObjectId(m.restoredId), {
      key: `unmerged:${m.mergeId}:${m.restoredId}`,
      kind: 'note',
      username: 'Rapport',
      text: `:leftwards_arrow_with_hook: ${owner ? `<@${owner.slackUserId}> ` : ''}The merge with customer \`${m.survivorId}\` was undone: this customer is separate again${owner ? ` and yours (${owner.name})` : ''}, with their own identities and history. Replies here reach them.`,
    });
    await outbox.postToAgent(new Types.ObjectId(m.survivorId), {
      key: `unmerged:${m.mergeId}:${m.survivorId}`,
      kind: 'note',
      username: 'Rapport',
      text: `:leftwards_arrow_with_hook: The merge with customer \`${m.restoredId}\` was undone: their identities and history left this customer${survivor?.ownerAgentId !== restored?.ownerAgentId && owner ? ` and are back with ${owner.name}` : ''}.`,
    });
    await cards.requestRefresh(m.survivorId);
    await cards.requestRefresh(m.restoredId);
  };

  return { onMerged, onUnmerged };
}

export type MergeNotices = ReturnType<typeof createMergeNotices>;
