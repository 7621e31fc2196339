/**
 * A hash router: `#/chat/:id`, `#/ai-chat`, `#/inspector/:fiberId`, `#/lab`, `#/settings`. Hash routes need no
 * server rewrites, so every view works offline from the precached `index.html`.
 */

import { useEffect, useState } from "react";

export type Route =
  | { page: "chat"; conversationId?: string }
  | { page: "inspector"; fiberId?: string }
  | { page: "ai-chat" }
  | { page: "lab" }
  | { page: "settings" };

export function parseRoute(hash: string): Route {
  const [page, param] = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (page === "inspector") return param ? { page, fiberId: param } : { page };
  if (page === "lab" || page === "settings" || page === "ai-chat") return { page };
  return param ? { page: "chat", conversationId: param } : { page: "chat" };
}

export function href(route: Route): string {
  switch (route.page) {
    case "chat":
      return route.conversationId ? `#/chat/${encodeURIComponent(route.conversationId)}` : "#/chat";
    case "inspector":
      return route.fiberId ? `#/inspector/${encodeURIComponent(route.fiberId)}` : "#/inspector";
    default:
      return `#/${route.page}`;
  }
}

export function navigate(route: Route): void {
  window.location.hash = href(route);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}
