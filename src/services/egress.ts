/**
 * Outbound `fetch` under the egress policy (docs/spec.md §8): what the server's host-call path imports.
 * egress-policy.ts decides where a connection may go (pure); outbound-fetch.ts performs the
 * request with undici and asks the policy about every connection and every redirect hop.
 */
export { createEgressPolicy, parseEgressAllow } from './egress-policy';
export type { AllowRule, EgressDecision, EgressPolicy, EgressPolicyOptions } from './egress-policy';
export { MAX_REDIRECTS, performFetch } from './outbound-fetch';
export type { FetchLimits, OutboundRequest, OutboundResponse } from './outbound-fetch';
export { EgressError } from '../errors';
export type { EgressErrorCode } from '../errors';
