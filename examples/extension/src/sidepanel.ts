/**
 * The side panel: asks the assistant, sets reminders and shows the reply as it streams, through
 * `connect({ extension: true })`. The fiber it shows is kept in localStorage, so closing and
 * reopening the panel (or the worker stopping meanwhile) picks the reply up again from its stream:
 * every chunk once, in order.
 */

import { connect } from "../../../src/client/index";
import type { FiberEvent } from "../../../src/index";
import type { ExtensionFibers } from "./fibers";

const CURRENT = "fiberline-example/current";
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $<HTMLParagraphElement>("status");
const reply = $<HTMLDivElement>("reply");
const log = $<HTMLOListElement>("log");
const fiberList = $<HTMLUListElement>("fibers");

const fl = await connect<ExtensionFibers>({ extension: true });
status.textContent = "Connected.";
let reading: AbortController | undefined;

$<HTMLFormElement>("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const content = $<HTMLTextAreaElement>("prompt").value.trim();
  if (!content) return;
  const { id } = await fl.start(
    "assistant",
    { messages: [{ role: "user", content }] },
    { id: `ask-${crypto.randomUUID()}` },
  );
  show(id);
});

$<HTMLFormElement>("remind").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $<HTMLInputElement>("remind-text").value.trim() || "Reminder";
  const seconds = Number($<HTMLInputElement>("remind-seconds").value) || 60;
  const { id } = await fl.start("reminder", { text, seconds }, { id: `remind-${crypto.randomUUID()}` });
  show(id);
});

/** Shows fiber `id`: its whole stream, then live, until `fiber.end`. */
function show(id: string): void {
  localStorage.setItem(CURRENT, id);
  reading?.abort();
  const abort = new AbortController();
  reading = abort;
  reply.textContent = "";
  log.textContent = "";
  status.textContent = `Fiber ${id}`;
  void (async () => {
    try {
      for await (const ev of fl.events(id, { signal: abort.signal })) render(ev);
      status.textContent = `Fiber ${id}: ended`;
    } catch (error) {
      if (!abort.signal.aborted) status.textContent = `Fiber ${id}: ${(error as Error).message}`;
    }
    void refreshList();
  })();
}

function render(ev: FiberEvent): void {
  const item = document.createElement("li");
  item.dataset.seq = String(ev.seq);
  item.dataset.type = ev.type;
  item.textContent = `${ev.seq} ${ev.type}`;
  log.append(item);
  const data = ev.data as Record<string, unknown>;
  if (ev.type === "text.delta") reply.textContent += String(data.delta);
  else if (ev.type === "message.reset") reply.textContent = "";
  else if (ev.type === "tool.result") reply.textContent += `\n[${String(data.name ?? "tool")} answered]\n`;
  else if (ev.type === "reminder.set")
    reply.textContent = `Reminder set for ${new Date(Number(data.dueAt)).toLocaleTimeString()}.`;
  else if (ev.type === "reminder.fired") reply.textContent = `⏰ ${String(data.text)}`;
  else if (ev.type === "fiber.recovered") status.textContent = "Resumed after the background worker stopped.";
}

async function refreshList(): Promise<void> {
  const fibers = await fl.list();
  fiberList.replaceChildren(
    ...fibers.slice(-10).map((f) => {
      const item = document.createElement("li");
      item.textContent = `${f.name} ${f.id}: ${f.status}`;
      item.dataset.id = f.id;
      item.addEventListener("click", () => show(f.id));
      return item;
    }),
  );
}

// sidepanel.html#fiber=<id> shows that fiber; otherwise the one shown last.
const current = new URLSearchParams(location.hash.slice(1)).get("fiber") ?? localStorage.getItem(CURRENT);
if (current && (await fl.get(current))) show(current);
void refreshList();
