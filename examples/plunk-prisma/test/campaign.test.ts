/**
 * Full mode through Prisma 7 against a real PostgreSQL with Plunk's tables and the toolkit
 * (run-ci.sh prepares it; DATABASE_URL points at it). A campaign is sent the way Plunk's
 * CampaignService would with the toolkit: snapshot, claimed batches, Plunk's own email rows and
 * SENT writes; the toolkit ends it SENT. Then the toolkit's refusals arrive as typed errors.
 */
import assert from 'node:assert/strict';
import {randomUUID} from 'node:crypto';
import {after, before, test} from 'node:test';

import {PrismaPg} from '@prisma/adapter-pg';

import {CampaignService} from '../src/campaignService.ts';
import {PrismaClient} from '../src/generated/prisma/client.ts';
import {
  CampaignNotFound,
  DuplicateEmail,
  IllegalCampaignState,
  InvalidArgument,
  NotARecipient,
} from '../src/toolkit.ts';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL must point at a database migrated with plunk-sql migrate');

const prisma = new PrismaClient({adapter: new PrismaPg({connectionString: url})});
const service = new CampaignService(prisma);
let project: string;

async function contacts(n: number, prefix: string): Promise<string[]> {
  const ids = Array.from({length: n}, (_, i) => `${prefix}-${String(i).padStart(4, '0')}-${randomUUID().slice(0, 8)}`);
  for (const id of ids) {
    await prisma.$executeRaw`
      INSERT INTO public.contacts (id, email, subscribed, "projectId", "updatedAt")
      VALUES (${id}, ${`${id}@example.com`}, true, ${project}, timezone('UTC', now()))`;
  }
  return ids;
}

async function campaign(): Promise<string> {
  const id = randomUUID();
  await prisma.campaign.create({
    data: {id, name: 'launch', subject: 'Hello', body: '<p>Hi</p>', from: 'news@example.com', projectId: project},
  });
  return id;
}

before(async () => {
  project = randomUUID();
  await prisma.$executeRaw`
    INSERT INTO public.projects (id, name, public, secret, "updatedAt")
    VALUES (${project}, 'prisma example', ${randomUUID()}, ${randomUUID()}, timezone('UTC', now()))`;
});

after(async () => {
  await prisma.$disconnect();
});

test('a campaign sent through the toolkit ends SENT when its last email is sent', async () => {
  const ids = await contacts(25, 'user');
  const id = await campaign();
  assert.equal(await service.startSending(id), 25);
  assert.equal(await service.startSending(id), 25); // idempotent

  // One contact unsubscribes mid-send: the claim skips it, nobody mails it.
  await prisma.$executeRaw`UPDATE public.contacts SET subscribed = false WHERE id = ${ids[20]}`;
  const sent: string[] = [];
  for (;;) {
    const {emails, hasMore} = await service.processBatch(id, 10);
    for (const email of emails) {
      await prisma.email.update({where: {id: email}, data: {status: 'SENDING'}});
      await service.recordSent(email, `msg-${email}`);
      sent.push(email);
    }
    if (!hasMore) break;
  }
  assert.equal(sent.length, 24);

  const progress = await service.toolkit.progress(id);
  assert.deepEqual(
    {...progress, campaignId: undefined},
    {campaignId: undefined, status: 'SENT', paused: false, total: 25, pending: 0, claimed: 0, inFlight: 0, sent: 24, failed: 0, skipped: 1},
  );
  const row = await prisma.campaign.findUniqueOrThrow({where: {id}});
  assert.equal(row.status, 'SENT');
  assert.equal(row.totalRecipients, 25);
  assert.equal(row.sentCount, 24);
});

test('toolkit errors arrive as typed errors with their SQLSTATE', async () => {
  await assert.rejects(service.startSending('no-such-campaign'), (e: unknown) => {
    assert.ok(e instanceof CampaignNotFound);
    assert.equal(e.sqlstate, 'P0002');
    assert.match(e.message, /does not exist/);
    return true;
  });

  const id = await campaign();
  await assert.rejects(service.toolkit.claimBatch(id, 0), (e: unknown) => e instanceof InvalidArgument && e.sqlstate === '22023');
  await contacts(1, 'one');
  await service.startSending(id);
  const [claimed] = await service.toolkit.claimBatch(id, 10);
  assert.ok(claimed);
  const email = {subject: 's', body: 'b', from: 'f@example.com', sourceType: 'CAMPAIGN' as const, campaignId: id, projectId: project};
  await service.toolkit.run(() => prisma.email.create({data: {id: randomUUID(), contactId: claimed.contactId, ...email}}));
  await assert.rejects(
    service.toolkit.run(() => prisma.email.create({data: {id: randomUUID(), contactId: claimed.contactId, ...email}})),
    (e: unknown) => e instanceof DuplicateEmail && e.sqlstate === '23505',
  );
  const [outsider] = await contacts(1, 'late');
  await assert.rejects(
    service.toolkit.run(() => prisma.email.create({data: {id: randomUUID(), contactId: outsider!, ...email}})),
    (e: unknown) => e instanceof NotARecipient && e.sqlstate === '23503',
  );

  const done = await campaign();
  await prisma.campaign.update({where: {id: done}, data: {status: 'SENT'}});
  await assert.rejects(service.startSending(done), (e: unknown) => e instanceof IllegalCampaignState && e.sqlstate === '55000');
  assert.equal(await service.toolkit.progress(done), null);
});
