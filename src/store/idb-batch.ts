/**
 * `CallBatcher`: group commit for a store method. Calls made while the previous batch's
 * transaction is in flight (and calls made in the same turn) are answered by one transaction
 * instead of one each. `IdbStore` batches claims with it: after a restart, `recover()` claims
 * every interrupted fiber at once, and IndexedDB runs their readwrite transactions one after
 * another, each paying its own round trips to the backend.
 */

interface Pending<Call, Result> {
  call: Call;
  resolve(result: Result): void;
  reject(error: unknown): void;
}

/**
 * Runs calls in batches through `run`, which answers a batch in one transaction, one result per
 * call in order. Calls with the same `key` never share a batch: a later one waits for the next
 * batch and sees what the earlier one wrote.
 *
 * Failure semantics: when `run` rejects, every call of that batch rejects with its error (the
 * transaction aborted, so none of them wrote anything); later batches still run.
 */
export class CallBatcher<Call, Result> {
  readonly #run: (calls: Call[]) => Promise<Result[]>;
  readonly #key: (call: Call) => string;
  #queue: Array<Pending<Call, Result>> = [];
  #busy = false;

  constructor(run: (calls: Call[]) => Promise<Result[]>, key: (call: Call) => string) {
    this.#run = run;
    this.#key = key;
  }

  submit(call: Call): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      this.#queue.push({ call, resolve, reject });
      if (!this.#busy) {
        this.#busy = true;
        // A microtask lets every call made in this turn join the first batch.
        queueMicrotask(() => this.#next());
      }
    });
  }

  #next(): void {
    if (this.#queue.length === 0) {
      this.#busy = false;
      return;
    }
    const batch: Array<Pending<Call, Result>> = [];
    const later: Array<Pending<Call, Result>> = [];
    const keys = new Set<string>();
    for (const pending of this.#queue) {
      let key: string;
      try {
        key = this.#key(pending.call);
      } catch (error) {
        pending.reject(error);
        continue;
      }
      if (keys.has(key)) later.push(pending);
      else {
        keys.add(key);
        batch.push(pending);
      }
    }
    this.#queue = later;
    if (batch.length === 0) {
      this.#next();
      return;
    }
    let answer: Promise<Result[]>;
    try {
      answer = this.#run(batch.map((pending) => pending.call));
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer
      .then(
        (results) => {
          batch.forEach((pending, i) => {
            pending.resolve(results[i] as Result);
          });
        },
        (error: unknown) => {
          for (const pending of batch) pending.reject(error);
        },
      )
      .finally(() => this.#next());
  }
}
