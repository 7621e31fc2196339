/**
 * Times readwrite transactions by database and scope, for B1's split of a step's time: how long
 * each transaction lasts (`transaction()` to its `complete` event) and how long its caller then
 * takes to start the next one of the same database and scope (its own code between two commits).
 * A wait is counted only when no other watched transaction started in it, so the gaps where a
 * workload hands over to its baseline are left out.
 */

interface Timing {
  transactions: number;
  inside: number;
  gaps: number;
  between: number;
}

export interface TransactionTimes {
  /**
   * Mean ms from `transaction()` to `complete`, and between one's `complete` and the next, of
   * database `name`'s transactions (those on `stores` alone, e.g. "records,rows", if given).
   */
  of(name: string, stores?: string): { transactions: number; insideMs: number; betweenMs: number };
  stop(): void;
}

export function watchTransactions(names: readonly string[]): TransactionTimes {
  const timings = new Map<string, Timing>();
  const lastEnd = new Map<string, number>();
  let lastStarted = "";
  const original = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (
    this: IDBDatabase,
    ...args: Parameters<IDBDatabase["transaction"]>
  ): IDBTransaction {
    const tx = original.apply(this, args);
    if (args[1] !== "readwrite" || !names.includes(this.name)) return tx;
    const key = `${this.name}|${String(args[0])}`;
    const t0 = performance.now();
    const timing = timings.get(key) ?? { transactions: 0, inside: 0, gaps: 0, between: 0 };
    timings.set(key, timing);
    const end = lastEnd.get(key);
    if (end !== undefined && lastStarted === key) {
      timing.gaps++;
      timing.between += t0 - end;
    }
    lastStarted = key;
    tx.addEventListener("complete", () => {
      const t1 = performance.now();
      timing.transactions++;
      timing.inside += t1 - t0;
      lastEnd.set(key, t1);
    });
    return tx;
  } as IDBDatabase["transaction"];
  return {
    of(name, stores) {
      const t = { transactions: 0, inside: 0, gaps: 0, between: 0 };
      for (const [key, timing] of timings) {
        const [db, scope] = key.split("|");
        if (db !== name || (stores !== undefined && scope !== stores)) continue;
        t.transactions += timing.transactions;
        t.inside += timing.inside;
        t.gaps += timing.gaps;
        t.between += timing.between;
      }
      return {
        transactions: t.transactions,
        insideMs: t.inside / Math.max(1, t.transactions),
        betweenMs: t.between / Math.max(1, t.gaps),
      };
    },
    stop() {
      IDBDatabase.prototype.transaction = original;
    },
  };
}
