/**
 * The app shell: top navigation (Chat, AI SDK chat, Inspector, Crash lab, Settings), the current page, and
 * a notice while offline or after the worker restarted, and one when storage runs out or was wiped.
 */

import { lazy, type ReactNode, Suspense, useEffect } from "react";
import { ChatPage } from "../chat/chat-page";
import { InspectorPage } from "../inspector/inspector-page";
import { LabPage } from "../lab/lab-page";
import { href, type Route, useRoute } from "../router";
import { SettingsPage } from "../settings/settings-page";
import { Skeleton } from "./skeleton";
import { StorageBanner } from "./storage-banner";
import { useOnline } from "./use-online";

/**
 * The AI SDK chat is loaded when first opened: `ai` and `@ai-sdk/react` are most of its weight,
 * and the other pages use neither. The worker precaches the chunk, so it opens offline too.
 */
const AiChatPage = lazy(async () => ({ default: (await import("../ai-chat/ai-chat-page")).AiChatPage }));

const TABS: Array<{ label: string; route: Route }> = [
  { label: "Chat", route: { page: "chat" } },
  { label: "AI SDK chat", route: { page: "ai-chat" } },
  { label: "Inspector", route: { page: "inspector" } },
  { label: "Crash lab", route: { page: "lab" } },
  { label: "Settings", route: { page: "settings" } },
];

export function App(): ReactNode {
  const route = useRoute();
  const online = useOnline();
  useEffect(() => {
    const title = TABS.find((t) => t.route.page === route.page)?.label ?? "Chat";
    document.title = `${title} · Fiberline demo`;
  }, [route.page]);
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <a className="brand" href="#/chat" aria-label="Fiberline demo, chat">
          <img src="/icons/icon-192.png" alt="" width="28" height="28" />
          <span>Fiberline</span>
        </a>
        <nav aria-label="Main">
          <ul className="tabs">
            {TABS.map((tab) => (
              <li key={tab.label}>
                <a
                  href={href(tab.route)}
                  className={route.page === tab.route.page ? "active" : ""}
                  aria-current={route.page === tab.route.page ? "page" : undefined}
                >
                  {tab.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
      </header>
      {!online && (
        <p className="banner" role="status">
          You are offline. The app and its fibers still work; the model needs the network, so a reply waits
          for it and goes on by itself when you are back online.
        </p>
      )}
      <StorageBanner />
      <main id="main" className="main" tabIndex={-1}>
        {route.page === "chat" && <ChatPage conversationId={route.conversationId} />}
        {route.page === "ai-chat" && (
          <Suspense fallback={<Skeleton label="Opening the AI SDK chat" />}>
            <AiChatPage />
          </Suspense>
        )}
        {route.page === "inspector" && <InspectorPage fiberId={route.fiberId} />}
        {route.page === "lab" && <LabPage />}
        {route.page === "settings" && <SettingsPage />}
      </main>
    </div>
  );
}
