/**
 * Maintenance calls that change a member's state: defragmentation. etcd blocks every request to a
 * member while it defragments (reads and writes wait, a leader keeps heartbeating), so the caller
 * chooses when and the deadline bounds how long the caller waits for the answer.
 */
import { withDeadline } from '../resilience.js';
import type { EtcdMember } from './client.js';

export async function defragmentMember(member: EtcdMember, timeoutMs: number): Promise<void> {
  await withDeadline('defragment', timeoutMs, () => member.maintenance.defragment({ deadline: Date.now() + timeoutMs }));
}
