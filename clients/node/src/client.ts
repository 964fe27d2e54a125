// LoyaltyClient: every loyalty.v1 service (and grpc.health.v1.Health) on one grpc-js channel, each
// unary method a promise, retried the way the Python client retries (clients/python/loyalty/client.py).

import { randomUUID } from "node:crypto";

import { ChannelCredentials, Client, Metadata, credentials, status, type ServiceError } from "@grpc/grpc-js";
import type { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";

import { HealthDefinition } from "./gen/grpc/health/v1/health";
import { CertificateServiceDefinition } from "./gen/loyalty/v1/certificate";
import { CheckoutServiceDefinition } from "./gen/loyalty/v1/checkout";
import { EventServiceDefinition } from "./gen/loyalty/v1/events";
import type { DeepPartial } from "./gen/loyalty/v1/common";
import { EventBonusServiceDefinition } from "./gen/loyalty/v1/event_bonus";
import { MemberImportServiceDefinition } from "./gen/loyalty/v1/member_import";
import { MemberServiceDefinition } from "./gen/loyalty/v1/member";
import { MembershipServiceDefinition } from "./gen/loyalty/v1/membership";
import { PointsServiceDefinition } from "./gen/loyalty/v1/points";
import { ProgrammeServiceDefinition } from "./gen/loyalty/v1/programme";

/**
 * How often and how patiently a call is retried. Only codes that say "the same request may succeed
 * later" are retried; a write is retried with the request_id of its first attempt, so the server
 * applies it once even when an earlier attempt did land (DEADLINE_EXCEEDED after commit).
 */
export interface RetryPolicy {
  readonly attempts: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly retryCodes: ReadonlySet<status>;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  attempts: 5,
  initialBackoffMs: 50,
  maxBackoffMs: 1000,
  retryCodes: new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.ABORTED]),
};

/** Whether a call that failed with `err` on attempt `attempt` (1-based) is tried again. */
export function retries(policy: RetryPolicy, err: unknown, attempt: number): boolean {
  const code = (err as Partial<ServiceError>).code;
  return code !== undefined && policy.retryCodes.has(code) && attempt < policy.attempts;
}

/** Full-jitter exponential backoff before retry number `attempt` (1-based). */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  return Math.random() * Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (attempt - 1));
}

/** What ts-proto generates per message (its MessageFns), as far as a call needs it. */
interface Codec<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
  decode(input: BinaryReader | Uint8Array, length?: number): T;
  fromPartial(object: never): T;
}

/** One method of a ts-proto generic service definition. */
interface MethodDefinition {
  readonly name: string;
  readonly requestType: Codec<any>;
  readonly responseType: Codec<any>;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

interface ServiceDefinition {
  readonly fullName: string;
  readonly methods: Readonly<Record<string, MethodDefinition>>;
}

/** Per call: its deadline (each attempt's) and extra metadata. */
export interface CallOptions {
  timeoutMs?: number;
  metadata?: Metadata;
}

type Message<C> = C extends Codec<infer T> ? T : never;

/** The unary methods of a service, by their lowerCamel names, each taking a partial request. */
export type ServiceClient<S extends ServiceDefinition> = {
  [K in keyof S["methods"] as S["methods"][K]["responseStream"] extends false ? K : never]: (
    request: DeepPartial<Message<S["methods"][K]["requestType"]>>,
    options?: CallOptions,
  ) => Promise<Message<S["methods"][K]["responseType"]>>;
};

export interface LoyaltyClientOptions {
  /** Sent as `authorization: Bearer <key>` on every call. */
  apiKey?: string;
  /** PEM of the CA that signed the server's certificate: turns TLS on. Unset: plaintext. */
  rootCertificates?: Buffer;
  /** Each attempt's deadline when a call gives none (5 s). */
  timeoutMs?: number;
  retry?: RetryPolicy;
  /** How the client waits between attempts (tests make it instant). */
  sleep?: (ms: number) => Promise<void>;
}

/** Gives a write request a fresh request_id when the caller left it empty; reads pass through. */
export function ensureRequestId<T extends object>(request: T): T {
  const fields = request as { requestId?: string };
  if ("requestId" in fields && !fields.requestId) fields.requestId = randomUUID();
  return request;
}

/** Attribute -> service, every service of loyalty.v1 and health (tests/clients/test_node.py checks). */
export const SERVICES = {
  programmes: ProgrammeServiceDefinition,
  members: MemberServiceDefinition,
  membership: MembershipServiceDefinition,
  checkout: CheckoutServiceDefinition,
  points: PointsServiceDefinition,
  events: EventServiceDefinition,
  eventBonus: EventBonusServiceDefinition,
  memberImport: MemberImportServiceDefinition,
  certificates: CertificateServiceDefinition,
  health: HealthDefinition,
} as const;

/**
 * Every loyalty.v1 service on one channel; each attribute has the service's unary methods.
 *
 *     const client = new LoyaltyClient("127.0.0.1:50051", { apiKey });
 *     const { pricing } = await client.checkout.quote({ programmeId, member: { phone }, lines });
 */
export class LoyaltyClient {
  readonly programmes: ServiceClient<(typeof SERVICES)["programmes"]>;
  readonly members: ServiceClient<(typeof SERVICES)["members"]>;
  readonly membership: ServiceClient<(typeof SERVICES)["membership"]>;
  readonly checkout: ServiceClient<(typeof SERVICES)["checkout"]>;
  readonly points: ServiceClient<(typeof SERVICES)["points"]>;
  /** Webhook subscriptions; WatchEvents streams and is not wrapped (use a grpc-js client of EventServiceDefinition). */
  readonly events: ServiceClient<(typeof SERVICES)["events"]>;
  readonly eventBonus: ServiceClient<(typeof SERVICES)["eventBonus"]>;
  readonly memberImport: ServiceClient<(typeof SERVICES)["memberImport"]>;
  readonly certificates: ServiceClient<(typeof SERVICES)["certificates"]>;
  readonly health: ServiceClient<(typeof SERVICES)["health"]>;

  private readonly channel: Client;
  private readonly authorization: string | undefined;
  private readonly timeoutMs: number;
  private readonly retry: RetryPolicy;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(target: string, options: LoyaltyClientOptions = {}) {
    const channelCredentials: ChannelCredentials = options.rootCertificates
      ? credentials.createSsl(options.rootCertificates)
      : credentials.createInsecure();
    this.channel = new Client(target, channelCredentials);
    // As metadata rather than call credentials, which grpc-js refuses on a plaintext channel.
    this.authorization = options.apiKey ? `Bearer ${options.apiKey}` : undefined;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.retry = options.retry ?? DEFAULT_RETRY_POLICY;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.programmes = this.bind(SERVICES.programmes);
    this.members = this.bind(SERVICES.members);
    this.membership = this.bind(SERVICES.membership);
    this.checkout = this.bind(SERVICES.checkout);
    this.points = this.bind(SERVICES.points);
    this.events = this.bind(SERVICES.events);
    this.eventBonus = this.bind(SERVICES.eventBonus);
    this.memberImport = this.bind(SERVICES.memberImport);
    this.certificates = this.bind(SERVICES.certificates);
    this.health = this.bind(SERVICES.health);
  }

  close(): void {
    this.channel.close();
  }

  private bind<S extends ServiceDefinition>(service: S): ServiceClient<S> {
    const methods: Record<string, unknown> = {};
    for (const [key, method] of Object.entries(service.methods)) {
      if (method.requestStream || method.responseStream) continue; // Health.Watch, WatchEvents: streams, not unary calls
      const path = `/${service.fullName}/${method.name}`;
      methods[key] = async (request: object, options: CallOptions = {}) => {
        // Encoded once, before the first attempt: an int64 past its range throws here ("invalid
        // int64: ..."), nothing is sent, and every attempt sends the same bytes, request_id included.
        const message = ensureRequestId(method.requestType.fromPartial(request as never));
        const bytes = Buffer.from(method.requestType.encode(message).finish());
        return this.callWithRetry(path, method, bytes, options);
      };
    }
    return methods as ServiceClient<S>;
  }

  private async callWithRetry(path: string, method: MethodDefinition, request: Buffer, options: CallOptions) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.callOnce(path, method, request, options);
      } catch (err) {
        if (!retries(this.retry, err, attempt)) throw err;
        await this.sleep(backoffMs(this.retry, attempt));
      }
    }
  }

  private callOnce(path: string, method: MethodDefinition, request: Buffer, options: CallOptions): Promise<unknown> {
    const metadata = options.metadata?.clone() ?? new Metadata();
    if (this.authorization) metadata.set("authorization", this.authorization);
    const deadline = Date.now() + (options.timeoutMs ?? this.timeoutMs);
    return new Promise((resolve, reject) => {
      this.channel.makeUnaryRequest(
        path,
        (encoded: Buffer) => encoded,
        (bytes: Buffer) => method.responseType.decode(bytes),
        request,
        metadata,
        { deadline },
        (err, response) => (err ? reject(err) : resolve(response)),
      );
    });
  }
}
