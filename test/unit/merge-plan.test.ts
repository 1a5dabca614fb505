/**
 * The pure parts of a merge: who survives, what the plan takes from the merged customer, the
 * conditional updates that give it to the survivor and take it back, which messages an undo returns,
 * and the one step table both directions run from.
 */
import { Types } from 'mongoose';
import type { Customer, ProfileField } from '../../src/identity/models';
import { olderOf, planOf, snapshotOf } from '../../src/identity/merge/plan';
import { profileGiveBacks, profileTakes } from '../../src/identity/merge/profile';
import { MERGE_STEPS, messagesBackFilters, undoSteps } from '../../src/identity/merge/steps';
import type { MergeEventDoc } from '../../src/identity/merge/types';

const at = (iso: string) => new Date(iso);
const field = (value: string, source: ProfileField['source'] = 'agent'): ProfileField => ({
  value,
  source,
  at: at('2024-01-01T00:00:00Z'),
});

function customer(overrides: Partial<Customer> = {}): Customer {
  return {
    _id: new Types.ObjectId(),
    profile: {},
    firstSeenAt: at('2024-01-01T00:00:00Z'),
    lastSeenAt: at('2024-01-02T00:00:00Z'),
    createdAt: at('2024-01-01T00:00:00Z'),
    updatedAt: at('2024-01-02T00:00:00Z'),
    ...overrides,
  };
}

function event(overrides: Partial<MergeEventDoc> = {}): MergeEventDoc {
  return {
    _id: new Types.ObjectId(),
    survivorId: new Types.ObjectId(),
    mergedId: new Types.ObjectId(),
    reason: 'admin',
    actor: 'admin',
    status: 'done',
    planned: true,
    identityKeys: [],
    messageIds: [],
    survivorMessageIdsOnKeys: [],
    profileTaken: [],
    createdAt: new Date(),
    updatedAt: new Date(),
    ...overrides,
  } as MergeEventDoc;
}

const noMoves = { identityKeys: [], messageIds: [], survivorMessageIdsOnKeys: [] };

describe('olderOf', () => {
  it('keeps the customer seen first', () => {
    const early = customer({ firstSeenAt: at('2023-06-01T00:00:00Z') });
    const late = customer();
    expect(olderOf(late, early)).toBe(early);
    expect(olderOf(early, late)).toBe(early);
  });

  it('keeps the smaller id when both were first seen at the same moment', () => {
    const first = customer({ _id: new Types.ObjectId('000000000000000000000001') });
    const second = customer({ _id: new Types.ObjectId('000000000000000000000002') });
    expect(olderOf(second, first)).toBe(first);
  });
});

describe('snapshotOf', () => {
  it('records only the fields the customer has', () => {
    const c = customer({ displayName: 'Ada', ownerAgentId: 'U1', profile: { name: field('Ada') } });
    expect(snapshotOf(c)).toEqual({
      profile: { name: field('Ada') },
      firstSeenAt: c.firstSeenAt,
      lastSeenAt: c.lastSeenAt,
      displayName: 'Ada',
      ownerAgentId: 'U1',
    });
  });
});

describe('planOf', () => {
  it('takes only what the survivor lacks: survivor wins conflicts', () => {
    const survivor = customer({ displayName: 'Ada', profile: { name: field('Ada') }, ownerAgentId: 'U1' });
    const merged = customer({
      displayName: 'Ada L.',
      profile: { name: field('Ada L.'), email: field('ada@example.com') },
      ownerAgentId: 'U2',
    });
    const plan = planOf(survivor, merged, noMoves);
    expect(plan.profileTaken).toEqual([{ field: 'email', value: field('ada@example.com') }]);
    expect(plan.displayNameTaken).toBeUndefined();
    expect(plan.ownerTaken).toBeUndefined();
    expect(plan.planned).toBe(true);
    expect(plan.mergedSnapshot?.ownerAgentId).toBe('U2');
    expect(plan.survivorSnapshot?.ownerAgentId).toBe('U1');
  });

  it('takes the display name and owner when the survivor has none, and widens first/last seen', () => {
    const survivor = customer();
    const merged = customer({
      displayName: 'Ada',
      ownerAgentId: 'U2',
      firstSeenAt: at('2023-01-01T00:00:00Z'),
      lastSeenAt: at('2024-02-01T00:00:00Z'),
      lastChannel: 'messenger',
      lastProvider: 'messenger',
    });
    const plan = planOf(survivor, merged, noMoves);
    expect(plan).toMatchObject({
      displayNameTaken: 'Ada',
      ownerTaken: 'U2',
      firstSeenAtTaken: merged.firstSeenAt,
      lastSeenTaken: { at: merged.lastSeenAt, channel: 'messenger', provider: 'messenger' },
    });
  });

  it('takes no first or last seen the survivor already covers', () => {
    const plan = planOf(customer(), customer(), noMoves);
    expect(plan.firstSeenAtTaken).toBeUndefined();
    expect(plan.lastSeenTaken).toBeUndefined();
  });

  it('stores the moves it was given as they are', () => {
    const moves = {
      identityKeys: ['phone:+14155550123'],
      messageIds: [new Types.ObjectId()],
      survivorMessageIdsOnKeys: [new Types.ObjectId()],
    };
    expect(planOf(customer(), customer(), moves)).toMatchObject(moves);
  });
});

describe('profileTakes and profileGiveBacks', () => {
  const email = field('ada@example.com');
  const taken = event({
    profileTaken: [{ field: 'email', value: email }],
    displayNameTaken: 'Ada',
    ownerTaken: 'U2',
    firstSeenAtTaken: at('2023-01-01T00:00:00Z'),
    lastSeenTaken: { at: at('2024-02-01T00:00:00Z'), channel: 'sms', provider: 'twilio' },
    survivorSnapshot: {
      profile: {},
      firstSeenAt: at('2024-01-01T00:00:00Z'),
      lastSeenAt: at('2024-01-02T00:00:00Z'),
    },
  });

  it('sets each taken field only while the survivor still lacks it', () => {
    expect(profileTakes(taken)).toEqual([
      { filter: { 'profile.email': null }, update: { $set: { 'profile.email': email } } },
      { filter: { displayName: null }, update: { $set: { displayName: 'Ada' } } },
      { filter: { ownerAgentId: null }, update: { $set: { ownerAgentId: 'U2' } } },
      { filter: {}, update: { $min: { firstSeenAt: taken.firstSeenAtTaken } } },
      {
        filter: { lastSeenAt: { $lt: taken.lastSeenTaken!.at } },
        update: { $set: { lastSeenAt: taken.lastSeenTaken!.at, lastChannel: 'sms', lastProvider: 'twilio' } },
      },
    ]);
  });

  it('removes each taken field only while it still holds the taken value, and puts last seen back', () => {
    expect(profileGiveBacks(taken)).toEqual([
      {
        filter: {
          'profile.email.value': email.value,
          'profile.email.source': email.source,
          'profile.email.at': email.at,
        },
        update: { $unset: { 'profile.email': 1 } },
      },
      { filter: { displayName: 'Ada' }, update: { $unset: { displayName: 1 } } },
      { filter: { ownerAgentId: 'U2' }, update: { $unset: { ownerAgentId: 1 } } },
      {
        filter: { firstSeenAt: taken.firstSeenAtTaken },
        update: { $set: { firstSeenAt: taken.survivorSnapshot!.firstSeenAt } },
      },
      {
        filter: { lastSeenAt: taken.lastSeenTaken!.at },
        update: {
          $set: { lastSeenAt: taken.survivorSnapshot!.lastSeenAt },
          $unset: { lastChannel: 1, lastProvider: 1 },
        },
      },
    ]);
  });

  it('changes nothing when the merge took nothing', () => {
    expect(profileTakes(event())).toEqual([]);
    expect(profileGiveBacks(event())).toEqual([]);
  });
});

describe('messagesBackFilters', () => {
  it('returns the planned messages and later ones on the returned keys, but not the survivor’s own', () => {
    const e = event({
      identityKeys: ['psid:1:2'],
      messageIds: [new Types.ObjectId()],
      survivorMessageIdsOnKeys: [new Types.ObjectId()],
    });
    expect(messagesBackFilters(e)).toEqual([
      { customerId: e.survivorId, _id: { $in: e.messageIds } },
      {
        customerId: e.survivorId,
        identityKey: { $in: ['psid:1:2'] },
        _id: { $nin: e.survivorMessageIdsOnKeys },
      },
    ]);
  });

  it('returns nothing for a merge that moved nothing', () => {
    expect(messagesBackFilters(event())).toEqual([]);
  });
});

describe('the step table', () => {
  it('reports the merge steps in the documented order', () => {
    expect(MERGE_STEPS.map((s) => s.merge.reported)).toEqual([
      'merged-tombstoned',
      'planned',
      'identities-moved',
      'messages-moved',
      'profile-merged',
    ]);
  });

  it('undoes identities before the tombstone, both before the message sweep, the survivor last', () => {
    expect(undoSteps().map((s) => s.reported)).toEqual([
      'identities-restored',
      'merged-restored',
      'messages-restored',
      'survivor-restored',
    ]);
  });

  it('reverses every step that changes a customer, identity or message (planning only writes the event)', () => {
    expect(MERGE_STEPS.filter((s) => !s.undo).map((s) => s.name)).toEqual(['plan']);
  });
});
