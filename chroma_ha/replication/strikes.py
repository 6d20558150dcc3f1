"""When a failure is the entry's own. Pure.

A connection refused, a timeout, a 5xx: the applier retries them with capped backoff, because an instance that
restarts, or is busy, answers again soon. But an entry that fails the same way again and again while its instance
answers everything else would hold its instance back forever, and every entry after it. `Strikes` counts the
failures of the entry at the head of an applier's log, by their signature (the status and the start of the answer,
or the error); after `limit` of the same in a row, the applier gives the entry up on that instance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Strikes:
    limit: int
    seq: int = 0
    signature: str = ""
    count: int = 0

    def failed(self, seq: int, signature: str) -> bool:
        """Count one more failure; True when the entry has failed this way `limit` times in a row."""
        if (seq, signature) == (self.seq, self.signature):
            self.count += 1
        else:
            self.seq, self.signature, self.count = seq, signature, 1
        return self.count >= self.limit
