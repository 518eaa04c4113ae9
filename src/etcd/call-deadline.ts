import { withDeadline } from '../resilience.js';

/** Grace over the grpc deadline, so that etcd's own "deadline exceeded" is what the caller sees. */
const GRACE_MS = 100;

/**
 * One call to one member, bounded twice: the grpc deadline given to `call` bounds the call, and
 * withDeadline also bounds etcd3's token exchange with auth on, which the grpc deadline does not.
 */
export function callWithin<T>(what: string, timeoutMs: number, call: (deadline: Date) => PromiseLike<T>): Promise<T> {
  return withDeadline(what, timeoutMs + GRACE_MS, () => call(new Date(Date.now() + timeoutMs)));
}
