"""Speed sanity: every check scans a KB of chat text fast enough for the hot path (figures with -s).

The bounds are ten times the measured cost (module docstrings give the figures) so a loaded CI machine
does not flake; a regression of that size is what this test is for.
"""

from __future__ import annotations

import time

from gateway.checks.registry import BUILTIN_CHECKS

CHAT = (
    "Thanks for the update on the Q3 roadmap. I went through the draft and have a few comments: the section on "
    "onboarding should mention the new SSO flow, and we need numbers for the 2023 cohort (about 1,200 users). "
    "Could you also check whether the API changes in version 2.4 break the mobile client? Let me know by Friday, "
    "otherwise we push the review to next week. Here's the snippet that fails:\n\n    def load(path: str) -> dict:\n"
    "        with open(path) as f:\n            return json.load(f)\n\nIt raises a KeyError on line 42 when the "
    "config has no 'token' field. "
) * 3
TEXT = CHAT[:1024]
PARAMS = {
    "regex": {"patterns": [r"\bEMP-\d{6}\b", r"\bPRJ-(?:ATLAS|ORION|VEGA)\b"]},
    "keywords": {"words": [f"codename{i}" for i in range(990)] + ["bluebird", "merger", "layoffs", "review", "draft"]},
    "topics": {"topics": {"gambling": ["casino*", "bet", "odds", "poker"], "weapons": ["gun", "rifle*", "ammo"]}},
}
BOUND_US_PER_KB = {"pii": 200, "secrets": 100, "injection": 100, "regex": 100, "keywords": 200, "topics": 100}


def us_per_kb(scan, text: str, rounds: int = 200) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            scan(text)
        best = min(best, (time.perf_counter() - start) / rounds)
    return best * 1e6 * 1024 / len(text)


def test_speed_each_check_scans_a_kb_of_chat_within_bounds() -> None:
    figures = {}
    for name, cls in BUILTIN_CHECKS.items():
        figures[name] = us_per_kb(cls(**PARAMS.get(name, {})).scan, TEXT)
    print("\n" + "\n".join(f"{name:10} {us:7.1f} µs/KB" for name, us in figures.items()))
    print(f"{'all':10} {sum(figures.values()):7.1f} µs/KB")
    assert all(figures[name] < BOUND_US_PER_KB[name] for name in figures), figures
