/**
 * `AppSession`: one Chromium on a persistent profile, pointed at one app origin, with the faults a
 * crash test injects (`crashBrowser`, `relaunch`, `stopServiceWorker`, `reload`, `closeTab`,
 * `openTab`, `goOffline`, `goOnline`) and the readers that prove the app's streams survive them
 * (`readEvents`, `follow`). Node-only; the Playwright fixture in `fixtures.ts` hands one to each test.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BrowserContext, Page } from "@playwright/test";
import type { FiberEvent } from "../core/records";
import {
  closeBrowser,
  crashBrowser,
  type LaunchedBrowser,
  launchBrowser,
  relaunchBrowser,
  stopServiceWorkers,
} from "./browser-process";
import { type ReaderMessage, StreamFollower } from "./stream-follower";

/** Options of {@link AppSession.launch}. */
export interface AppSessionOptions {
  /**
   * The app's origin, e.g. `http://localhost:5199`. Keep the port fixed: IndexedDB and the
   * Service Worker registration belong to an origin, port included.
   */
  origin: string;
  /** The profile directory (default: a fresh temporary one, removed by `close()`). */
  userDataDir?: string;
  /** The Chromium binary (default: `CHROMIUM_PATH`, a system Chromium, or Playwright's). */
  executablePath?: string;
  /** Extra Chromium flags. */
  args?: readonly string[];
  /** Headless (default true). */
  headless?: boolean;
  /** The page global that holds the connected `FiberlineClient` (default `"fiberline"`). */
  clientGlobal?: string;
  /** How long a page may take to be ready (default 30 s). */
  readyTimeoutMs?: number;
  /** Resolves once `page` is ready for the test (default: the client global is defined). */
  ready?(page: Page): Promise<void>;
}

/** Options of {@link AppSession.readEvents}. */
export interface ReadEventsOptions {
  /** Chunks with `seq > after` (default 0: the whole stream). */
  after?: number;
  /** The page to read in (default: the session's current page). */
  page?: Page;
  /** Stop after this many chunks instead of at `fiber.end`. */
  limit?: number;
}

const BINDING = "__fiberlineTestingDeliver";

/**
 * A browser on a persistent profile at a fixed origin, with crash and reload controls.
 *
 * @example
 * const app = await AppSession.launch({ origin: "http://localhost:5199" });
 * const page = await app.openTab("/");
 * const { id } = await page.evaluate(() => window.fiberline!.start("lab.ticker", { count: 20, intervalMs: 100 }));
 * const log = app.follow(id);
 * await log.count(5, "tick");
 * await app.crashBrowser();
 * await app.relaunch();
 * await app.openTab("/");          // the follower resumes here, after the last seq it received
 * const events = await log.done();
 * expect(checkStream(events)).toMatchObject({ lost: [], duplicated: [], reordered: [], ended: true });
 * await app.close();
 */
export class AppSession {
  /** The app's origin. */
  readonly origin: string;
  /** The page global that holds the connected client. */
  readonly clientGlobal: string;
  readonly #options: AppSessionOptions;
  readonly #userDataDir: string;
  readonly #ownsProfile: boolean;
  readonly #pages: Page[] = [];
  readonly #followers = new Set<StreamFollower>();
  #current: LaunchedBrowser | null = null;
  #lastLaunch: LaunchedBrowser | null = null;
  #offline = false;
  #closed = false;

  private constructor(options: AppSessionOptions) {
    this.#options = options;
    this.origin = new URL(options.origin).origin;
    this.clientGlobal = options.clientGlobal ?? "fiberline";
    this.#ownsProfile = options.userDataDir === undefined;
    this.#userDataDir = options.userDataDir ?? mkdtempSync(join(tmpdir(), "fiberline-testing-"));
  }

  /** Launches Chromium on the profile; open a page with {@link openTab}. */
  static async launch(options: AppSessionOptions): Promise<AppSession> {
    const session = new AppSession(options);
    try {
      await session.#start(
        await launchBrowser({
          userDataDir: session.#userDataDir,
          ...(options.executablePath === undefined ? {} : { executablePath: options.executablePath }),
          ...(options.args === undefined ? {} : { args: options.args }),
          ...(options.headless === undefined ? {} : { headless: options.headless }),
        }),
      );
    } catch (error) {
      if (session.#ownsProfile) rmSync(session.#userDataDir, { recursive: true, force: true });
      throw error;
    }
    return session;
  }

  /** The running browser process; throws after {@link crashBrowser} until {@link relaunch}. */
  get browser(): LaunchedBrowser {
    if (!this.#current) throw new Error("The browser is down: call relaunch() first.");
    return this.#current;
  }

  /** The persistent context of the running browser. */
  get context(): BrowserContext {
    return this.browser.context;
  }

  /** The profile directory (kept across crashes and relaunches). */
  get userDataDir(): string {
    return this.#userDataDir;
  }

  /** Whether the browser is running. */
  get running(): boolean {
    return this.#current !== null;
  }

  /** The app's pages opened by this session that are still open, oldest first. */
  get pages(): readonly Page[] {
    return this.#pages.filter((p) => !p.isClosed());
  }

  /** The most recently opened page that is still open; throws when none is. */
  get page(): Page {
    const page = this.pages.at(-1);
    if (!page) throw new Error("No page of the app is open: call openTab() first.");
    return page;
  }

  /** The absolute URL of `path` on the app's origin. */
  url(path = "/"): string {
    return new URL(path, this.origin).href;
  }

  /**
   * Opens `path` in a new tab and waits until it is ready (its client is connected); stream
   * followers waiting for a page resume in it.
   */
  async openTab(path = "/"): Promise<Page> {
    const page = await this.context.newPage();
    this.#pages.push(page);
    page.on("close", () => this.#pageGone());
    await page.goto(this.url(path));
    await this.#waitReady(page);
    this.#attachDetached();
    return page;
  }

  /** Closes a tab (default: the current one). Its stream readers move to another open tab, if any. */
  async closeTab(page: Page = this.page): Promise<void> {
    await page.close();
  }

  /** Reloads a tab (default: the current one) and waits until it is ready again. */
  async reload(page: Page = this.page): Promise<void> {
    await page.reload();
    await this.#waitReady(page);
    this.#attachDetached();
  }

  /**
   * SIGKILLs the browser's whole process group, like a crash or a power cut of the browser, and
   * waits until no process of it is left. Every tab and the Service Worker die mid-instruction;
   * what IndexedDB had committed stays on the profile.
   */
  async crashBrowser(): Promise<void> {
    const current = this.browser;
    this.#current = null;
    for (const follower of this.#followers) follower.unbind();
    await crashBrowser(current);
  }

  /** Starts Chromium again on the same profile (after a crash or a close); online, no tab open. */
  async relaunch(): Promise<void> {
    if (this.#current) throw new Error("The browser is running: crash or close it before relaunch().");
    const previous = this.#lastLaunch;
    if (!previous) throw new Error("relaunch() needs a browser launched before.");
    await this.#start(await relaunchBrowser(previous));
  }

  /** Quits the browser gracefully (the profile is flushed); {@link relaunch} starts it again. */
  async closeBrowser(): Promise<void> {
    const current = this.#current;
    if (!current) return;
    this.#current = null;
    for (const follower of this.#followers) follower.unbind();
    await closeBrowser(current);
  }

  /**
   * Stops every Service Worker of the browser over CDP (`ServiceWorker.stopAllWorkers`), as
   * Chromium stops an idle worker: its fetches in flight fail, and the next event starts a new
   * instance. Under Playwright this is the only way a worker stops (DevTools keep it alive).
   */
  async stopServiceWorker(): Promise<void> {
    const open = this.pages[0];
    if (open) {
      await stopServiceWorkers(open);
      return;
    }
    const blank = await this.context.newPage();
    try {
      await stopServiceWorkers(blank);
    } finally {
      await blank.close();
    }
  }

  /**
   * Takes the browser offline: the pages' and the Service Worker's network requests fail, while
   * page-to-worker messages and reads of the worker's own routes go on.
   */
  async goOffline(): Promise<void> {
    await this.context.setOffline(true);
    this.#offline = true;
  }

  /** Brings the browser back online. */
  async goOnline(): Promise<void> {
    await this.context.setOffline(false);
    this.#offline = false;
  }

  /** Whether {@link goOffline} is in force (a relaunch comes back online). */
  get offline(): boolean {
    return this.#offline;
  }

  /**
   * Reads a fiber's stream in a page through the client's `events(id, { after })` and returns the
   * chunks, up to `fiber.end` (or `limit`). The reader reconnects by itself when the worker stops.
   *
   * @example
   * const events = await app.readEvents(id);
   * expect(events.at(-1)?.type).toBe("fiber.end");
   */
  async readEvents(id: string, options: ReadEventsOptions = {}): Promise<FiberEvent[]> {
    const page = options.page ?? this.page;
    return await page.evaluate(
      async ({ id, after, limit, global }) => {
        const client = (window as unknown as Record<string, unknown>)[global] as
          | { events(id: string, o: { after: number }): AsyncIterable<FiberEvent> }
          | undefined;
        if (!client) throw new Error(`window.${global} is not a connected Fiberline client.`);
        const events: FiberEvent[] = [];
        for await (const event of client.events(id, { after })) {
          events.push(event);
          if (limit !== undefined && events.length >= limit) break;
        }
        return events;
      },
      { id, after: options.after ?? 0, limit: options.limit, global: this.clientGlobal },
    );
  }

  /**
   * Follows a fiber's stream through every fault: a page-side reader pushes each chunk to Node as
   * it arrives; when its page reloads, closes or the browser crashes, the next ready page resumes
   * after the last seq received. The follower's log is what a user's reader would have shown.
   *
   * @example
   * const log = app.follow(id);
   * await app.reload();
   * expect(checkStream(await log.done())).toMatchObject({ lost: [], duplicated: [], ended: true });
   */
  follow(id: string, options: { after?: number } = {}): StreamFollower {
    const follower = new StreamFollower(id, options.after ?? 0);
    this.#followers.add(follower);
    this.#attachDetached();
    return follower;
  }

  /** Stops the followers, quits the browser and removes a temporary profile. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const follower of this.#followers) follower.stop();
    await this.closeBrowser();
    if (this.#ownsProfile) rmSync(this.#userDataDir, { recursive: true, force: true });
  }

  async #start(launched: LaunchedBrowser): Promise<void> {
    this.#current = launched;
    this.#lastLaunch = launched;
    this.#offline = false;
    await launched.context.exposeBinding(BINDING, (_source, message: ReaderMessage) => {
      for (const follower of this.#followers) {
        if (!follower.owns(message.token)) continue;
        follower.receive(message);
        if (follower.detached) this.#reattachLater(follower);
      }
    });
  }

  async #waitReady(page: Page): Promise<void> {
    if (this.#options.ready) {
      await this.#options.ready(page);
      return;
    }
    await page.waitForFunction(
      (global) => (window as unknown as Record<string, unknown>)[global] !== undefined,
      this.clientGlobal,
      {
        timeout: this.#options.readyTimeoutMs ?? 30_000,
        polling: 100,
      },
    );
  }

  #pageGone(): void {
    // Readers of a closed tab move to the newest tab still open.
    if (this.#current) this.#attachDetached();
  }

  #attachDetached(): void {
    for (const follower of this.#followers) if (follower.detached) this.#attach(follower);
  }

  /** Starts a page-side reader for `follower` in the current page, if one is open. */
  #attach(follower: StreamFollower): void {
    if (!this.#current) return;
    const page = this.pages.at(-1);
    if (!page) return;
    const token = follower.bind();
    page
      .evaluate(
        async ({ id, after, token, global, binding }) => {
          const scope = window as unknown as Record<string, unknown>;
          const client = scope[global] as
            | { events(id: string, o: { after: number }): AsyncIterable<unknown> }
            | undefined;
          const deliver = scope[binding] as (message: unknown) => Promise<void>;
          try {
            if (!client) throw new Error(`window.${global} is not a connected Fiberline client.`);
            for await (const event of client.events(id, { after }))
              await deliver({ token, kind: "chunk", event });
            await deliver({ token, kind: "end" });
          } catch (error) {
            const e = error as { code?: unknown; message?: unknown } | null;
            await deliver({
              token,
              kind: "error",
              error: `${String(e?.code ?? "error")}: ${String(e?.message ?? error)}`,
            });
          }
        },
        { id: follower.fiberId, after: follower.lastSeq, token, global: this.clientGlobal, binding: BINDING },
      )
      .catch(() => {
        // The page navigated, closed or crashed: its reader is gone; resume in a ready page.
        if (!follower.owns(token)) return;
        follower.unbind(token);
        this.#reattachLater(follower);
      });
  }

  #reattachLater(follower: StreamFollower): void {
    setTimeout(() => {
      if (!follower.detached || !this.#current) return;
      const page = this.pages.at(-1);
      if (!page) return;
      this.#waitReady(page).then(
        () => {
          if (follower.detached) this.#attach(follower);
        },
        () => {
          // Not ready (closing, crashed): openTab() or reload() attaches it later.
        },
      );
    }, 250);
  }
}
