import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { NodeMonitor } from '../src/routing/node-monitor.ts';

/** A monitor of three nodes that checks nothing (all up as listed), with `busy` as each node's statements in flight. */
function monitor(weights: number[], busy?: number[]): NodeMonitor {
  return new NodeMonitor(
    weights.map((weight, i) => ({ host: '127.0.0.1', port: 5000 + i, weight })),
    {
      connect: null,
      checkUser: () => null,
      healthCheckPeriodMs: 1000,
      healthCheckTimeoutMs: 1000,
      maxRetries: 1,
      replicationCheckPeriodMs: 1000,
      maxReplicaLagMs: 1000,
      log: pino({ level: 'silent' }),
      ...(busy === undefined ? {} : { busy: (node: number) => busy[node] }),
    },
  );
}

function spread(m: NodeMonitor, n = 30_000): number[] {
  const counts = [0, 0, 0];
  for (let i = 0; i < n; i++) counts[m.pickReadNode()]++;
  return counts.map((c) => c / n);
}

describe('reads spread over nodes', () => {
  it('follow the weights when no node is busy', () => {
    const [a, b, c] = spread(monitor([1, 2, 2], [0, 0, 0]));
    expect(a).toBeCloseTo(0.2, 1);
    expect(b).toBeCloseTo(0.4, 1);
    expect(c).toBeCloseTo(0.4, 1);
  });

  it('pass over a node whose statements pile up', () => {
    // Node 2 holds 12 statements (a host short of CPU), the others 1 each:
    // it gets a read only when every draw lands on it, not a third of them.
    const [a, b, slow] = spread(monitor([1, 1, 1], [1, 1, 12]));
    expect(slow).toBeLessThan(0.05);
    expect(a).toBeCloseTo(0.5, 1);
    expect(b).toBeCloseTo(0.5, 1);
  });

  it('weigh busyness per unit of weight', () => {
    // Node 1 has twice the weight: 4 in flight there is as busy as 2 on node 0.
    const [a, b] = spread(monitor([1, 2, 0], [3, 4, 0]));
    expect(b).toBeGreaterThan(a);
  });

  it('never go to a node of weight 0', () => {
    expect(spread(monitor([1, 1, 0], [5, 5, 0]))[2]).toBe(0);
  });
});
