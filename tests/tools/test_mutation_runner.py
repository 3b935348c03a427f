"""Tests for tools/mutate: what each operator changes, ids that survive unrelated edits, and the forked runner
telling a killed mutant from a survivor on a toy module."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from tools.mutate.operators import list_mutants, mutated_tree
from tools.mutate.report import ModuleResult, load_equivalent
from tools.mutate.runner import KILLED, SURVIVED, run_mutant
from tools.mutate.targets import TARGETS, Target

TOY = '''
"""A toy budget rule."""
import logging

log = logging.getLogger(__name__)
LIMIT = 100


def refuses(spent: int, amount: int, *, strict: bool = True) -> bool:
    """Docstrings are not mutated."""
    log.info("checking %s", amount)
    if amount < 0 and strict:
        raise ValueError("negative")
    return not spent + amount <= LIMIT  # pragma: no mutate
'''


def ids(source: str) -> list[str]:
    return [m.id for m in list_mutants(textwrap.dedent(source))]


def test_each_operator_changes_what_it_names_and_nothing_else() -> None:
    found = ids(TOY)
    assert found == [
        "<module>|num|100 -> 101|0",
        "<module>|num|100 -> 99|0",
        "refuses|bool|True -> False|0",  # a default: evaluated at import, so the module reloads
        "refuses|not|amount < 0 and strict -> not (amount < 0 and strict)|0",
        "refuses|bool|amount < 0 and strict -> amount < 0 or strict|0",
        "refuses|cmp|amount < 0 -> amount <= 0|0",
        "refuses|num|0 -> 1|0",
        "refuses|num|0 -> -1|0",
        "refuses|del|raise ValueError('negative') -> pass|0",
        "refuses|str|'negative' -> 'XXnegativeXX'|0",
    ]  # the logging call, the docstring, annotations and the pragma line stay untouched


def test_mutant_ids_survive_unrelated_edits_above_them() -> None:
    edited = TOY.replace("LIMIT = 100\n", "LIMIT = 100\nOTHER = 'x'\n\n\ndef helper() -> None:\n    pass\n")
    assert set(ids(TOY)) <= set(ids(edited))


def test_mutated_tree_applies_exactly_one_change() -> None:
    source = "def f(a, b):\n    return a < b and b > 2\n"
    mutants = list_mutants(source)
    boundary = next(m for m in mutants if m.id == "f|cmp|a < b -> a <= b|0")
    assert ast.unparse(mutated_tree(source, boundary.index)) == "def f(a, b):\n    return a <= b and b > 2"
    assert boundary.function == "f"  # inside one function: the runner swaps that function's code


def test_functions_called_at_import_reload_instead_of_swapping() -> None:
    mutants = list_mutants("def make(n):\n    return n + 1\n\n\nTABLE = make(1)\n")
    assert {m.function for m in mutants if m.id.startswith("make|")} == {None}


TOY_TEST = """
from toy.rule import refuses


def test_over_the_limit_is_refused():
    assert refuses(90, 20)
    assert not refuses(10, 20)
"""


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text("")
    (tmp_path / "toy" / "rule.py").write_text("def refuses(spent, amount):\n    return spent + amount > 100\n")
    (tmp_path / "test_toy.py").write_text(TOY_TEST)
    return tmp_path


def run(toy: Path, mutant_id: str) -> str:
    path = toy / "toy" / "rule.py"
    source = path.read_text()
    mutant = next(m for m in list_mutants(source) if m.id == mutant_id)
    outcome = run_mutant(
        source, module="toy.rule", path=str(path), index=mutant.index, tests=(str(toy / "test_toy.py"),), timeout_s=60
    )
    return outcome.status


def test_runner_kills_a_tested_mutant_and_reports_a_boundary_left_untested(toy: Path) -> None:
    assert run(toy, "refuses|arith|spent + amount -> spent - amount|0") == KILLED
    assert run(toy, "refuses|cmp|spent + amount > 100 -> spent + amount >= 100|0") == SURVIVED  # 100 never tried

    boundary = "\n\ndef test_at_the_limit_is_allowed():\n    assert not refuses(50, 50)\n"
    (toy / "test_toy.py").write_text(TOY_TEST + boundary)
    assert run(toy, "refuses|cmp|spent + amount > 100 -> spent + amount >= 100|0") == KILLED


def test_score_counts_timeouts_as_killed_and_leaves_equivalents_out() -> None:
    result = ModuleResult("m", "m.py", mutants=12, killed=8, timeout=1, equivalent=2)
    result.survivors = [{"id": "x", "line": 1}]
    assert (result.survived, round(result.score, 1)) == (1, 90.0)


def test_a_target_may_shorten_the_mutant_timeout_but_not_below_twice_its_baseline() -> None:
    assert Target("a", "a.py", ("t.py",)).mutant_timeout(2.0) == 38.0
    assert Target("b", "b.py", ("t.py",), timeout_s=12).mutant_timeout(2.0) == 12
    assert Target("c", "c.py", ("t.py",), timeout_s=12).mutant_timeout(9.0) == 18.0


def test_equivalent_list_names_only_known_modules_and_says_why() -> None:
    listed = load_equivalent()
    assert set(listed) <= {t.path for t in TARGETS}
    assert all(why.strip() for entries in listed.values() for why in entries.values())
