/**
 * Assistant text as Markdown, safely: react-markdown without any raw-HTML plugin (HTML in model
 * output is shown as text, never parsed), links limited to http(s), mailto and same-origin paths
 * and opened in a new tab, images shown as links (no request to a URL the model chose).
 */

import type { ReactNode } from "react";
import Markdown, { type Components } from "react-markdown";

const SAFE_URL = /^(?:https?:|mailto:|\/(?!\/)|#)/i;

/** Keeps only URLs that cannot run script or leave the page silently; anything else becomes "". */
export function safeUrl(url: string): string {
  const trimmed = url.trim();
  return SAFE_URL.test(trimmed) ? trimmed : "";
}

const components: Components = {
  a({ href, children }) {
    if (!href) return <span className="md-dead-link">{children}</span>;
    return (
      <a href={href} target="_blank" rel="noopener noreferrer nofollow">
        {children}
      </a>
    );
  },
  img({ src, alt }) {
    const url = typeof src === "string" ? src : "";
    return url ? (
      <a href={url} target="_blank" rel="noopener noreferrer nofollow">
        [image: {alt || url}]
      </a>
    ) : (
      <span>[image: {alt}]</span>
    );
  },
};

/** Renders untrusted Markdown. */
export function SafeMarkdown({ text }: { text: string }): ReactNode {
  return (
    <Markdown components={components} urlTransform={safeUrl}>
      {text}
    </Markdown>
  );
}
