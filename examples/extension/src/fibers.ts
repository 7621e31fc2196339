/**
 * The example extension's fibers: the demo's assistant agent (calculator and clock tools, the
 * demo's system prompt) on the in-worker mock model, and a reminder that sleeps on a durable
 * timer. Imported by the background worker (which runs them) and by the side panel (for types).
 */

import { calculatorTool, clockTool, defineAgent } from "../../../src/agent/index";
import { defineFiber } from "../../../src/index";
import { inWorkerMockModel } from "./mock-provider";

/** The demo assistant's prompt, so the mock model gives the demo's replies. */
const SYSTEM_PROMPT =
  "You are the Fiberline demo assistant. Answer briefly. Use the calculator for arithmetic, the clock for the time, and delete_file only when asked to delete a file.";

/** `start("assistant", { messages: [{ role: "user", content }] })`. */
export const assistant = defineAgent({
  name: "assistant",
  model: inWorkerMockModel({ delayMs: 60 }),
  tools: [calculatorTool(), clockTool()],
  system: SYSTEM_PROMPT,
  maxTurns: 6,
});

/** Sleeps `seconds` on a durable timer, then says `text`: it fires with the side panel closed. */
export const reminder = defineFiber("reminder", {
  async run(ctx, input: { text: string; seconds: number }) {
    ctx.emit("reminder.set", { dueAt: (await ctx.now()) + input.seconds * 1000 });
    await ctx.sleep("until-due", input.seconds * 1000);
    const firedAt = await ctx.now();
    ctx.emit("reminder.fired", { text: input.text, firedAt });
    return { text: input.text, firedAt };
  },
});

/** The fibers by name, to type the side panel's client. */
export type ExtensionFibers = { assistant: typeof assistant; reminder: typeof reminder };
