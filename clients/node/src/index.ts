// loyalty-client: the client (retries, key, TLS), the refusal reader, and the generated messages
// of every package, by proto package and file: `checkout.QuoteRequest`, `common.MemberRef`.

export * from "./client";
export * from "./errors";
export * as certificate from "./gen/loyalty/v1/certificate";
export * as checkout from "./gen/loyalty/v1/checkout";
export * as common from "./gen/loyalty/v1/common";
export * as event_bonus from "./gen/loyalty/v1/event_bonus";
export * as member from "./gen/loyalty/v1/member";
export * as membership from "./gen/loyalty/v1/membership";
export * as points from "./gen/loyalty/v1/points";
export * as programme from "./gen/loyalty/v1/programme";
export * as health from "./gen/grpc/health/v1/health";
