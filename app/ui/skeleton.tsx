/** The loading placeholder: shimmering rows, announced to screen readers as loading. */

import type { ReactNode } from "react";

export function Skeleton({ label, rows = 3 }: { label: string; rows?: number }): ReactNode {
  return (
    <div className="skeleton-list" role="status">
      <span className="sr-only">{label}</span>
      {Array.from({ length: rows }, (_, i) => (
        // biome-ignore lint/suspicious/noArrayIndexKey: static placeholder rows.
        <span key={i} aria-hidden="true" />
      ))}
    </div>
  );
}
