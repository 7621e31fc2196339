import { describe, expect, it } from "vitest";
import { ModelError } from "../../src/agent/errors";
import { StepFailedError, serializeError } from "../../src/core/errors";
import { explainFailure } from "./failure-text";

/** A model step's failure as `fiber.end` carries it. */
function stepFailure(error: ModelError): unknown {
  return serializeError(
    new StepFailedError("step_failed", `Step "model#1" failed after 1 attempt(s): ${error.message}`, {
      cause: error,
    }),
  );
}

describe("explainFailure", () => {
  it("an unreachable model: a sentence saying what to check, the codes in the details", () => {
    const error = new ModelError("Could not reach custom: Failed to fetch", {
      kind: "network",
      retryable: true,
    });
    const { sentence, detail } = explainFailure(stepFailure(error));
    expect(sentence).toBe(
      "the model could not be reached. Check your connection and the base URL in Settings, then Ask again.",
    );
    expect(detail).toContain("step_failed: Step");
    expect(detail).toContain("model_error: Could not reach custom: Failed to fetch");
  });
  it("a refused key (HTTP 401) points at the key", () => {
    const error = new ModelError("custom answered 401", {
      kind: "http_status",
      retryable: false,
      status: 401,
    });
    expect(explainFailure(stepFailure(error)).sentence).toContain("refused the API key (HTTP 401)");
  });
  it("a header the browser cannot send points at saving the key again", () => {
    const error = new ModelError("Could not reach custom: String contains non ISO-8859-1 code point.", {
      kind: "network",
      retryable: false,
    });
    expect(explainFailure(stepFailure(error)).sentence).toContain("Save the key again in Settings");
  });
  it("any other error keeps its own message as the sentence", () => {
    const { sentence } = explainFailure({ name: "Error", message: "This conversation was deleted" });
    expect(sentence).toBe("This conversation was deleted.");
  });
});
