"""English CX words VADER's lexicon lacks, added to it (VADER's scale: -4..4).

VADER was built on social-media text: it knows "terrible" and "rude" but not "crashed",
"buggy", "overcharged" or "convenient", so complaints stated as facts ("the app crashes
every time I open it") read neutral. These are the words customers of banks, retailers
and telcos state their experience with; each valence is set beside a word VADER has
("crashed" as "crash", -1.7; "condescending" as "rude", -2.0). Single words only: VADER
scores word by word.

docs/scoring.md ("Feedback text") has VADER's accuracy on the labelled set with and
without them.
"""

from __future__ import annotations

CX_WORDS: dict[str, float] = {
    # things broken or not working
    "crashes": -1.7,
    "crashed": -1.7,
    "crashing": -1.7,
    "buggy": -1.8,
    "glitch": -1.2,
    "glitchy": -1.5,
    "unusable": -2.2,
    "froze": -1.2,
    "freezes": -1.2,
    "frozen": -1.1,
    "errored": -1.7,
    "outage": -1.8,
    "declined": -1.0,
    "swallowed": -1.2,
    "overcharged": -2.2,
    "expensive": -1.3,
    "absurd": -1.5,
    "late": -1.2,
    "slow": -1.3,
    "nobody": -0.8,
    # people
    "unhelpful": -1.8,
    "condescending": -2.0,
    "dismissive": -1.8,
    "shrugged": -0.8,
    # praise VADER has no entry for
    "convenient": 1.6,
    "polite": 1.7,
    "professional": 1.2,
    "fast": 1.2,
    "quick": 1.1,
    "refunded": 1.2,
    "unblocked": 1.0,
    # read negative in complaints, not as a funny thing
    "joke": -1.2,
}
