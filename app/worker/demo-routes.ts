/**
 * The demo worker's `/demo-api/` routes: settings (the key is accepted but never returned),
 * the crash lab's effect counts, the deletion log and a reply's model call attempts. Registered by `app/sw.ts` after the
 * Fiberline host, so Fiberline's own routes are answered first.
 */

import { readEffects } from "../lab-fibers";
import { DEMO_API, type DemoApiError, type SettingsUpdate } from "../shared/demo-api";
import { publicSettings, readDeletions, readSettings, updateSettings } from "./demo-db";
import { modelCallStatus } from "./model-watch";

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

function failure(status: number, code: string, message: string): Response {
  return json(status, { error: { code, message } } satisfies DemoApiError);
}

/** Answers a demo route, or returns undefined for any other request. */
export function handleDemoRequest(request: Request, origin: string): Promise<Response> | undefined {
  const url = new URL(request.url);
  if (url.origin !== origin || !url.pathname.startsWith(`${DEMO_API}/`)) return undefined;
  return route(request, url).catch((error: unknown) =>
    failure(500, "demo_api_error", error instanceof Error ? error.message : String(error)),
  );
}

async function route(request: Request, url: URL): Promise<Response> {
  const path = url.pathname.slice(DEMO_API.length);
  if (path === "/settings") {
    if (request.method === "GET") return json(200, publicSettings(await readSettings()));
    if (request.method === "PUT") {
      let update: SettingsUpdate;
      try {
        update = (await request.json()) as SettingsUpdate;
      } catch {
        return failure(400, "invalid_json", "The settings must be sent as a JSON object.");
      }
      try {
        return json(200, publicSettings(await updateSettings(update)));
      } catch (error) {
        if (error instanceof TypeError) return failure(400, "invalid_settings", error.message);
        throw error;
      }
    }
    return failure(405, "method_not_allowed", "Use GET or PUT for /demo-api/settings.");
  }
  if (path === "/lab/effects" && request.method === "GET")
    return json(200, await readEffects(url.searchParams.get("fiberId") ?? undefined));
  if (path === "/deletions" && request.method === "GET") return json(200, await readDeletions());
  if (path === "/model-call" && request.method === "GET") {
    const fiberId = url.searchParams.get("fiberId");
    if (!fiberId)
      return failure(400, "invalid_argument", "Name the reply's fiber: /demo-api/model-call?fiberId=<id>.");
    return json(200, modelCallStatus(fiberId));
  }
  return failure(404, "not_found", `No demo route for ${request.method} ${url.pathname}.`);
}
