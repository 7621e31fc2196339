import { describe, expect, it } from "vitest";
import { CallBatcher } from "./idb-batch";

/** A batcher whose `run` records each batch and answers when the test says so. */
function recorded() {
  const batches: string[][] = [];
  const answers: Array<(fail?: Error) => void> = [];
  const batcher = new CallBatcher<string, string>(
    (calls) => {
      batches.push(calls);
      return new Promise((resolve, reject) => {
        answers.push((fail) => (fail ? reject(fail) : resolve(calls.map((call) => `done ${call}`))));
      });
    },
    (call) => call.split(":")[0] as string,
  );
  return { batcher, batches, answer: (fail?: Error) => answers.shift()?.(fail) };
}

const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("CallBatcher", () => {
  it("runs the calls of one turn together, and those made meanwhile in the next batch", async () => {
    const { batcher, batches, answer } = recorded();
    const first = [batcher.submit("a"), batcher.submit("b")];
    await turn();
    const second = [batcher.submit("c"), batcher.submit("d")];
    await turn();
    expect(batches).toEqual([["a", "b"]]);
    answer();
    expect(await Promise.all(first)).toEqual(["done a", "done b"]);
    await turn();
    expect(batches).toEqual([
      ["a", "b"],
      ["c", "d"],
    ]);
    answer();
    expect(await Promise.all(second)).toEqual(["done c", "done d"]);
  });

  it("never puts two calls with the same key in one batch", async () => {
    const { batcher, batches, answer } = recorded();
    const calls = [batcher.submit("x:1"), batcher.submit("y"), batcher.submit("x:2")];
    await turn();
    answer();
    await turn();
    answer();
    expect(await Promise.all(calls)).toEqual(["done x:1", "done y", "done x:2"]);
    expect(batches).toEqual([["x:1", "y"], ["x:2"]]);
  });

  it("rejects only the calls of a failed batch, and goes on with the next", async () => {
    const { batcher, batches, answer } = recorded();
    const failed = [batcher.submit("a"), batcher.submit("b")];
    await turn();
    const next = batcher.submit("c");
    answer(new Error("aborted"));
    await expect(failed[0]).rejects.toThrow("aborted");
    await expect(failed[1]).rejects.toThrow("aborted");
    await turn();
    answer();
    expect(await next).toBe("done c");
    expect(batches).toEqual([["a", "b"], ["c"]]);
  });

  it("rejects a call whose key cannot be computed, and runs the others", async () => {
    const batcher = new CallBatcher<string, string>(
      async (calls) => calls.map((call) => `done ${call}`),
      (call) => {
        if (call === "bad") throw new Error("no key");
        return call;
      },
    );
    const [bad, good] = [batcher.submit("bad"), batcher.submit("good")];
    await expect(bad).rejects.toThrow("no key");
    expect(await good).toBe("done good");
    expect(await batcher.submit("later")).toBe("done later");
  });

  it("rejects the batch when run throws instead of returning a promise", async () => {
    const batcher = new CallBatcher<string, string>(
      () => {
        throw new Error("no transaction");
      },
      (call) => call,
    );
    await expect(batcher.submit("a")).rejects.toThrow("no transaction");
    // Nothing is left stuck: the next call runs (and fails the same way).
    await expect(batcher.submit("b")).rejects.toThrow("no transaction");
  });
});
