/**
 * plunk_sql's SQL API for a TypeScript service on Prisma 7: the three calls Plunk's
 * CampaignService needs to send through the toolkit (full mode), each one `$queryRaw` tagged
 * template (parameters are bound, never spliced), and the toolkit's SQLSTATEs mapped to errors.
 *
 * The functions and their errors are documented in the toolkit's SQL (sql/30_start.sql,
 * sql/40_claim.sql, sql/60_progress.sql) and in docs/.
 */
import {Prisma} from './generated/prisma/client.ts';
import type {PrismaClient} from './generated/prisma/client.ts';

/** A toolkit error, with the PostgreSQL SQLSTATE it was raised with. */
export class ToolkitError extends Error {
  constructor(
    message: string,
    readonly sqlstate: string,
    options?: {cause?: unknown},
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
/** P0002: no such campaign. */
export class CampaignNotFound extends ToolkitError {}
/** 55000: the campaign is not in a state that allows the call (e.g. start of a SENT campaign,
 * an email for a skipped recipient). */
export class IllegalCampaignState extends ToolkitError {}
/** 22023 / 22004: an argument out of range, null, or an invalid audience. */
export class InvalidArgument extends ToolkitError {}
/** 23505: a second email for a recipient of a toolkit campaign. */
export class DuplicateEmail extends ToolkitError {}
/** 23503: an email for a contact outside the snapshot, or of another project. */
export class NotARecipient extends ToolkitError {}
/** 55P03: rows stayed locked (retry). */
export class Busy extends ToolkitError {}
/** 42501: the role may not call this (see the toolkit's roles, plunk_sql_worker / _operator). */
export class NotAllowed extends ToolkitError {}

const BY_SQLSTATE: Record<string, new (message: string, sqlstate: string, options?: {cause?: unknown}) => ToolkitError> = {
  P0002: CampaignNotFound,
  '55000': IllegalCampaignState,
  '22023': InvalidArgument,
  '22004': InvalidArgument,
  '23505': DuplicateEmail,
  '23503': NotARecipient,
  '55P03': Busy,
  '42501': NotAllowed,
};

type DriverCause = {originalCode?: string; code?: string; originalMessage?: string; message?: string};

/** The SQLSTATE of a Prisma 7 error raised through a driver adapter, if there is one. */
export function sqlstateOf(error: unknown): string | undefined {
  if (!(error instanceof Prisma.PrismaClientKnownRequestError)) return undefined;
  const cause = (error.meta?.driverAdapterError as {cause?: DriverCause} | undefined)?.cause;
  return cause?.originalCode ?? cause?.code;
}

/** The toolkit's error for a Prisma error carrying one of its SQLSTATEs; anything else as is. */
export function toToolkitError(error: unknown): unknown {
  const sqlstate = sqlstateOf(error);
  const Class = sqlstate ? BY_SQLSTATE[sqlstate] : undefined;
  if (!Class || !(error instanceof Prisma.PrismaClientKnownRequestError)) return error;
  const cause = (error.meta?.driverAdapterError as {cause?: DriverCause} | undefined)?.cause;
  return new Class(cause?.originalMessage ?? cause?.message ?? error.message, sqlstate!, {cause: error});
}

async function call<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw toToolkitError(error);
  }
}

export type Recipient = {contactId: string; email: string; data: unknown};

export type Progress = {
  campaignId: string;
  status: string;
  paused: boolean;
  total: number;
  pending: number;
  claimed: number;
  inFlight: number;
  sent: number;
  failed: number;
  skipped: number;
};

export class Toolkit {
  constructor(private readonly prisma: PrismaClient) {}

  /** Snapshot the audience and set the campaign SENDING (SENT when empty); the snapshot size.
   * Idempotent. CampaignNotFound, IllegalCampaignState, InvalidArgument. */
  async startCampaign(campaignId: string): Promise<number> {
    const rows = await call(
      () => this.prisma.$queryRaw<{total: number}[]>`SELECT plunk_sql.start_campaign(${campaignId}) AS total`,
    );
    return rows[0]!.total;
  }

  /** Up to batchSize pending recipients under a lease; unsubscribed/deleted ones are settled
   * skipped and not returned. Empty when the campaign is not sending (or paused).
   * CampaignNotFound, InvalidArgument. */
  async claimBatch(campaignId: string, batchSize = 500, lease = '5 minutes'): Promise<Recipient[]> {
    const rows = await call(
      () => this.prisma.$queryRaw<{contact_id: string; email: string; data: unknown}[]>`
        SELECT contact_id, email, data
        FROM plunk_sql.claim_batch(${campaignId}, ${batchSize}::integer, ${lease}::interval)`,
    );
    return rows.map(r => ({contactId: r.contact_id, email: r.email, data: r.data}));
  }

  /** The campaign's counts, or null when the toolkit did not start it. InvalidArgument. */
  async progress(campaignId: string): Promise<Progress | null> {
    const rows = await call(
      () => this.prisma.$queryRaw<
        {
          campaign_id: string;
          status: string;
          paused: boolean;
          total: number;
          pending: number;
          claimed: number;
          in_flight: number;
          sent: number;
          failed: number;
          skipped: number;
        }[]
      >`SELECT campaign_id, status, paused, total, pending, claimed, in_flight, sent, failed, skipped
        FROM plunk_sql.campaign_progress_of(${campaignId})`,
    );
    const r = rows[0];
    if (!r) return null;
    return {
      campaignId: r.campaign_id,
      status: r.status,
      paused: r.paused,
      total: r.total,
      pending: r.pending,
      claimed: r.claimed,
      inFlight: r.in_flight,
      sent: r.sent,
      failed: r.failed,
      skipped: r.skipped,
    };
  }

  /** Any other Prisma call whose statement the toolkit's triggers may refuse (an emails
   * INSERT), with the same error mapping. */
  run<T>(statement: () => Promise<T>): Promise<T> {
    return call(statement);
  }
}
