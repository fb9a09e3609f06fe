/**
 * The part of Plunk's CampaignService (apps/api/src/services/CampaignService.ts) that changes in
 * full mode: startSending takes the toolkit's snapshot instead of counting the audience, and each
 * batch job claims recipients from the snapshot instead of re-running the audience query. The
 * email rows and the email worker's status updates stay Plunk's own; the toolkit's triggers
 * settle recipients and end the campaign SENT when the last one settles.
 */
import {randomUUID} from 'node:crypto';

import type {PrismaClient} from './generated/prisma/client.ts';
import {type Recipient, Toolkit} from './toolkit.ts';

const BATCH_SIZE = 500;

export class CampaignService {
  readonly toolkit: Toolkit;

  constructor(private readonly prisma: PrismaClient) {
    this.toolkit = new Toolkit(prisma);
  }

  /** Plunk's startSending: the snapshot replaces getRecipientCount + the SENDING update
   * ("totalRecipients", "sentAt" and the status are written by start_campaign). Then Plunk
   * queues batch 1 as before. */
  async startSending(campaignId: string): Promise<number> {
    return this.toolkit.startCampaign(campaignId);
  }

  /** Plunk's processBatch: claim a batch of the snapshot and create one PENDING email per
   * recipient (one statement: the INSERT trigger links them). Returns the email ids (to queue
   * one send job each) and whether more may follow. */
  async processBatch(campaignId: string, batchSize = BATCH_SIZE): Promise<{emails: string[]; hasMore: boolean}> {
    const campaign = await this.prisma.campaign.findUniqueOrThrow({where: {id: campaignId}});
    if (campaign.status !== 'SENDING') return {emails: [], hasMore: false};
    const recipients: Recipient[] = await this.toolkit.claimBatch(campaignId, batchSize);
    if (recipients.length === 0) return {emails: [], hasMore: false};
    const rows = recipients.map(r => ({
      id: randomUUID(),
      contactId: r.contactId,
      subject: campaign.subject, // rendered with Liquid per contact in Plunk
      body: campaign.body,
      from: campaign.from,
      sourceType: 'CAMPAIGN' as const,
      campaignId,
      projectId: campaign.projectId,
    }));
    await this.toolkit.run(() => this.prisma.email.createMany({data: rows}));
    return {emails: rows.map(r => r.id), hasMore: recipients.length === batchSize};
  }

  /** The email worker's SENT write, unchanged from Plunk (guarded on "sentAt" IS NULL). */
  async recordSent(emailId: string, messageId: string): Promise<void> {
    await this.prisma.email.updateMany({
      where: {id: emailId, sentAt: null},
      data: {status: 'SENT', sentAt: new Date(), messageId, error: null},
    });
  }
}
