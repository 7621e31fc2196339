/** A fiber status as a coloured badge with its name in text (colour is never the only cue). */

import type { ReactNode } from "react";
import type { FiberStatus } from "../../src/core/records";

export function StatusBadge({ status }: { status: FiberStatus }): ReactNode {
  return (
    <span className={`badge status-${status}`} data-status={status}>
      {status === "running" && <span className="dot live" aria-hidden="true" />}
      {status}
    </span>
  );
}
