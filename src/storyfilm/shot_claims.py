"""A shot that calls its host is claimed first, so two runs of one film (two workers, a manual run beside a
scheduled one) never both pay for it. The claim is the ledger's leased row (ledger.py says why a lease).

    no live claim        -> this run claims the shot, decides again (the ledger may have moved on while it
                            waited) and carries that out; the lease is renewed in the background every third
                            of its length while it submits, polls and fetches; released when the shot is done
                            or has failed
    another run's claim  -> wait: ask again every poll interval; once the holder releases it, this run
                            claims it and the decision is "reuse" (done), or the holder's failure to retry
    an expired claim     -> the holder died: taken over, and the fresh decision resumes the job it recorded
                            (a submitted job is polled, an unanswered submit replayed or refused as decide.py
                            says), never a blind new submit

So a waiter waits at most the holder's job plus one poll interval (it does not wait for the lease to run
out), a dead holder costs its lease, and `intent(claim=...)` refuses a submit by a run whose claim was taken
over (it stalled past its lease).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from storyfilm.errors import ClaimLost, LedgerError
from storyfilm.ledger import Claim, Ledger

Log = Callable[[str], None]
LEASE_ENV = "STORYFILM_CLAIM_LEASE"


@dataclass(frozen=True)
class ClaimSettings:
    lease: float = 60.0  # how long a dead worker holds a shot up; renewed every third of it while alive
    wait: float = 5.0  # how often a waiting run asks again (the runner passes its poll interval)

    @classmethod
    def from_env(cls, wait: float, env: Mapping[str, str] | None = None) -> ClaimSettings:
        env = os.environ if env is None else env
        raw = env.get(LEASE_ENV, "").strip()
        try:
            lease = float(raw) if raw else 60.0
        except ValueError:
            lease = math.nan
        if not (0 < lease < math.inf):
            raise LedgerError(f"{LEASE_ENV}={raw!r} is not a claim lease: give the seconds a dead worker may hold "
                              "a shot up, a number more than 0 (default 60; renewed every third of it)")
        return cls(lease=lease, wait=max(wait, 0.05))


class Lease:
    """A claim held by this run, renewed in a background thread until `stop`."""

    def __init__(self, ledger: Ledger, claim: Claim, settings: ClaimSettings, log: Log, shot_id: str):
        self.claim = claim
        self.lost = False
        self._ledger, self._settings, self._log, self._shot = ledger, settings, log, shot_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{shot_id}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self._settings.lease / 3):
            try:
                self.claim = self._ledger.renew(self.claim, self._settings.lease)
            except ClaimLost:
                # another run took the shot over: it resumes the same job (never a second one); this run may
                # finish fetching beside it, and `intent` refuses it a submit
                self.lost = True
                self._log(f"{self._shot}: its claim ran out and another run took the shot over")
                return
            except LedgerError as exc:  # a passing database fault: the lease has two more thirds to go
                self._log(f"{self._shot}: could not renew its claim ({exc}); trying again")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if not self.lost:
            self._ledger.release(self.claim)


@contextmanager
def claimed(ledger: Ledger, key: str, shot_id: str, run_id: str, settings: ClaimSettings,
            log: Log) -> Iterator[Lease]:
    """Hold the shot `key` for the block, waiting while another live run holds it."""
    waited_for: str | None = None
    started = time.monotonic()
    while True:
        got = ledger.claim(key, run_id, settings.lease)
        if isinstance(got, Claim):
            break
        if waited_for != got.by:
            log(f"{shot_id}: run {got.by} ({got.owner}) is generating it; waiting for its result")
            waited_for = got.by
        time.sleep(settings.wait)
    if waited_for:
        log(f"{shot_id}: waited {time.monotonic() - started:.1f} s for run {waited_for}")
    if got.taken_over:
        log(f"{shot_id}: run {got.taken_over} held it but stopped renewing its claim; taking over its job")
    lease = Lease(ledger, got, settings, log, shot_id)
    try:
        yield lease
    finally:
        lease.stop()
