"""Checkers: each a pure function of a :class:`chaos.history.History` returning a
:class:`Verdict` (valid, invalid or unknown) that names the offending operations.

| module | invariant |
|---|---|
| ``recipients`` | every recipient of each campaign ends with one final outcome |
| ``rpo`` | no outcome committed before (or at) a fault is lost or rewritten |
| ``duplicates`` | re-submissions as a carrier without dedup delivers them, within the |
| | bound of what the failed side had in flight |
| ``fencing`` | no write of a superseded epoch is accepted; refusals counted |
| ``watchdog`` | a dead node's batches move before their lease would have expired |
| ``progress`` | after the heal, each campaign completes within a bound |
"""

from chaos.checkers.verdict import Offence, Validity, Verdict

__all__ = ["Offence", "Validity", "Verdict"]
