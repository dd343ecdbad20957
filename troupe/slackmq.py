"""The seed library's API, for code written against it: `SlackMQ(...).ack()` / `.unack()`.

The seed (meltaxa/slackmq) claimed a message by pinning it — `pins.add` as a
test-and-set — and released it by removing the pin. Its flaws, and what this facade,
built on troupe.claims, does instead (docs/claims.md has the whole protocol):

- **Any error meant "someone else has it".** `ack()` caught every exception and returned
  False, so a rate limit or a network error silently dropped the command. Here only
  `already_pinned` (or a live claim of another replica in the thread) means lost; rate
  limits, 5xx and transient errors are retried by slack_sdk's retry handlers, and any
  other error is raised (a SlackError naming the method and Slack's error code).
- **No done marker.** `unack()` removed the pin, and the message looked like it had never
  been run, so anyone could run it again. Here `unack()` means **done**: a done record in
  the thread and a ✅ reaction, written before the pin is removed. Done is permanent:
  a later `ack()` by anyone returns False.
- **A crashed owner kept the pin forever.** Here a claim is a lease that the owner renews
  (`heartbeat()`); once it runs out, another replica takes the command over (generation
  + 1), and the old owner finds out at its next `heartbeat()` (ClaimLost).
- **`sleep(3)` between calls against rate limits.** Here 429 answers are waited out as
  long as Slack's `Retry-After` says, and the claim spends as few calls as it can.
- **It assumed `pins.add` is atomic.** Slack does not document that. Here every claimant
  posts a claim record in the thread and, after a settle delay, the record with the lowest
  `ts` wins, so even two successful `pins.add` calls give one owner.

Not carried over: the seed's constructor took a token (here: a WebClient, so that it can
point at localslack), its star, and its optional `emoji` reaction.
"""

from __future__ import annotations

from slack_sdk import WebClient

from troupe.chat import Chat, TransientErrorRetryHandler, retry_handlers
from troupe.claims import Claim, Claimer, ClaimLost, Lease


class SlackMQ:
    """One command message, seen by one replica.

    `replica` names this replica in the claim records (default: the client's bot user ID,
    from auth.test). `fleet` is the set of bot user IDs whose records and ✅/❌ count
    (default: only the client's own user, which fits a fleet of replicas sharing one
    Slack app; with one app per replica, pass every replica's bot user ID, or a replica
    will not see the others' claims and done markers). `client` gets Troupe's retry
    handlers added if it lacks them.
    """

    def __init__(
        self,
        client: WebClient,
        channel: str,
        ts: str,
        replica: str | None = None,
        fleet: set[str] | None = None,
        lease: Lease | None = None,
    ) -> None:
        _add_retry_handlers(client)
        self.chat = Chat(client, channel)
        self.ts = ts
        if replica is None or fleet is None:
            user_id = str(self.chat.call("auth.test")["user_id"])
            replica = user_id if replica is None else replica
            fleet = {user_id} if fleet is None else fleet
        self.claimer = Claimer(self.chat, replica, fleet, lease)
        self.claim: Claim | None = None

    @property
    def replica(self) -> str:
        return self.claimer.replica

    def ack(self) -> bool:
        """Claim the message: True if this replica owns it now; False if another replica
        has it or it is done. Once True, later calls return True without asking Slack
        (`heartbeat()` is what finds out about a takeover)."""
        if self.claim is None:
            self.claim = self.claimer.try_claim(self.ts)
        return self.claim is not None

    def heartbeat(self) -> None:
        """Renew the lease (call it well within Lease.seconds, every Lease.heartbeat);
        raises ClaimLost if another replica took over meanwhile."""
        self.claimer.heartbeat(self._owned())

    def unack(self, ok: bool = True, summary: str = "") -> None:
        """Mark the message done — ✅ (or ❌ with ok=False) and a done record — then remove
        the pin. Unlike the seed's unack, nobody will run the message again. Raises
        ClaimLost if this replica does not own it (never acked, or taken over)."""
        self.claimer.finish(self._owned(), ok, summary)
        self.claim = None

    def _owned(self) -> Claim:
        if self.claim is None:
            raise ClaimLost(self.ts, self.replica, "nobody: ack() did not win it")
        return self.claim


def _add_retry_handlers(client: WebClient) -> None:
    """Give a caller's client Troupe's retry policy, once (slack_sdk's default retries a
    dropped connection once and nothing else)."""
    if not any(isinstance(h, TransientErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.extend(retry_handlers())
