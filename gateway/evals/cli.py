"""`gateway eval run PATH...`: runs suites in process (`--config`) or against a running gateway (`--url --key`).

Exit codes: 0 every case passed; 1 a case failed or errored, or a regression against `--baseline`; 2 an invalid suite,
config or argument (nothing ran); 3 the run could not finish (target unreachable, cost cap reached), with the partial
reports written. With several suites, the report, baseline and bless paths get the suite's name before their suffix
(`out.json` -> `out.<suite>.json`) unless they contain `{suite}`; Markdown is appended to one file.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.evals.cassette import Cassette
    from gateway.evals.clients import EvalClient

EXIT_PASSED, EXIT_FAILED, EXIT_INVALID, EXIT_INCOMPLETE = 0, 1, 2, 3
SCHEMA_NAMES = ("schema.json", "schema.yaml", "schema.yml")
# Other `gateway eval ...` commands, added to the same parser: (module, function taking the eval subparsers).
MORE_EVAL_COMMANDS: tuple[tuple[str, str], ...] = (
    ("gateway.evals.runs_cli", "add_runs_parser"),
    ("gateway.evals.promptfoo", "add_import_parser"),
)


class Refused(Exception):
    """A command line, suite or config that cannot run: the message, exit 2."""


def add_eval_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    evals = commands.add_parser("eval", help="run eval suites through the gateway (in process or at a URL)")
    sub = evals.add_subparsers(title="eval commands")
    run = sub.add_parser("run", help="run eval suites; exit 0 pass, 1 fail or regression, 2 invalid, 3 incomplete",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    run.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="suite files, or folders of *.yaml suites")
    where = run.add_argument_group("where the gateway is (default: in process from $GATEWAY_CONFIG or ./gateway.yaml)")
    where.add_argument("--config", type=Path, help="build the gateway in process from this config (no server)")
    where.add_argument("--url", help="a running gateway's base URL")
    where.add_argument("--key", help="the virtual key to call it with (with --url)")
    where.add_argument("--admin-key", help="reads each call's decisions and cost (with --url; governance assertions)")
    where.add_argument(
        "--sync-prompts", type=Path, metavar="DIR", help="in process: load DIR's prompt files as versions first"
    )
    how = run.add_argument_group("how to run")
    how.add_argument("--repeat", type=int, help="attempts per case and target (overrides the suites' repeat)")
    how.add_argument("--concurrency", type=int, default=8, help="attempts in flight (default 8)")
    how.add_argument("--filter", help="only cases whose id matches this glob, or contains this text")
    how.add_argument("--max-cost", type=float, metavar="USD", help="stop when target + judge calls cost this much")
    how.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    how.add_argument("--cache-dir", type=Path, help="the response cache (default ./.gateway-eval-cache)")
    how.add_argument("--record", type=Path, metavar="CASSETTE", help="record provider answers (in process only)")
    how.add_argument("--replay", type=Path, metavar="CASSETTE", help="answer from a cassette (in process only)")
    how.add_argument("--quiet", action="store_true", help="no progress on stderr")
    out = run.add_argument_group("results")
    out.add_argument("--baseline", type=Path, metavar="FILE", help="a previous JSON result: fail on regressions")
    out.add_argument("--tolerance", type=float, default=0.0, help="metric drop allowed against the baseline")
    out.add_argument("--bless", type=Path, metavar="FILE", help="write this run's result as the new baseline")
    out.add_argument("--json", type=Path, metavar="FILE", help="the canonical JSON result")
    out.add_argument("--junit", type=Path, metavar="FILE", help="JUnit XML: a testcase per case and target")
    out.add_argument("--markdown", type=Path, metavar="FILE", help="Markdown summary (appended; fits a CI summary)")
    out.add_argument("--store", action=argparse.BooleanOptionalAction, default=True,
                     help="store the run in the gateway (default: yes)")  # fmt: skip
    run.set_defaults(handler=cmd_run)
    from importlib import import_module

    for module, function in MORE_EVAL_COMMANDS:
        getattr(import_module(module), function)(sub)


def cmd_run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_command(args))
    except Refused as exc:
        print(f"gateway eval: {exc}", file=sys.stderr)
        return EXIT_INVALID


def suite_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.name not in SCHEMA_NAMES)
            if not found:
                raise Refused(f"{path}: no *.yaml suite in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise Refused(f"{path}: no such suite file or folder")
    return list(dict.fromkeys(files))


def check_arguments(args: argparse.Namespace) -> None:
    if args.url and args.config:
        raise Refused("give --config (in process) or --url (a running gateway), not both")
    if args.url and not args.key:
        raise Refused("--url needs --key: the virtual key the run calls with")
    if not args.url and (args.key or args.admin_key):
        raise Refused("--key and --admin-key go with --url")
    if args.record and args.replay:
        raise Refused("give --record or --replay, not both")
    if args.url and (args.record or args.replay):
        raise Refused("--record and --replay work in process only (they sit at the provider boundary); drop --url")
    for name in ("repeat", "concurrency"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise Refused(f"--{name} must be at least 1, got {value}")
    if args.max_cost is not None and not args.max_cost > 0:
        raise Refused(f"--max-cost must be above 0, got {args.max_cost}")
    if args.tolerance < 0:
        raise Refused(f"--tolerance must be 0 or more, got {args.tolerance}")
    if args.url and args.sync_prompts:
        raise Refused("--sync-prompts works in process only; against a gateway run `gateway prompts sync DIR` first")


def load_prompt_files(folder: Path | None) -> list[Any]:
    """The prompt files of --sync-prompts, validated before anything runs (exit 2 naming the file and field)."""
    if folder is None:
        return []
    import yaml
    from pydantic import ValidationError

    from gateway.config import format_validation_error
    from gateway.prompts.spec import PromptSpec

    if not folder.is_dir():
        raise Refused(f"--sync-prompts {folder}: no such folder")
    specs = []
    for file in sorted(folder.glob("*.yaml")):
        try:
            specs.append(PromptSpec.model_validate(yaml.safe_load(file.read_text(encoding="utf-8"))))
        except ValidationError as exc:
            raise Refused(f"invalid prompt file\n{format_validation_error(str(file), exc)}") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise Refused(f"{file}: cannot read the prompt file: {exc}") from None
    return specs


def per_suite(path: Path | None, name: str, several: bool) -> Path | None:
    if path is None:
        return None
    if "{suite}" in str(path):
        return Path(str(path).replace("{suite}", name))
    return path.with_name(f"{path.stem}.{name}{path.suffix}") if several else path


def load_suites(args: argparse.Namespace) -> list[Any]:
    from gateway.evals.runner import selected_cases
    from gateway.evals.spec import SuiteError, load_suite

    suites = []
    for file in suite_files(args.paths):
        try:
            suites.append(load_suite(file))
        except SuiteError as exc:
            raise Refused(f"invalid suite\n{exc}") from None
    names = [s.name for s in suites]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise Refused(f"suite name {twice[0]!r} is used by more than one file; names identify runs and baselines")
    chosen = [s for s in suites if selected_cases(s, args.filter)]
    if not chosen:
        raise Refused(f"--filter {args.filter!r} matches no case" if args.filter else "the suites have no case")
    return chosen


def read_baselines(args: argparse.Namespace, suites: list[Any]) -> dict[str, dict[str, Any]]:
    from gateway.evals.baseline import BaselineError, read_result

    baselines = {}
    for suite in suites:
        path = per_suite(args.baseline, suite.name, len(suites) > 1)
        if path is None:
            continue
        try:
            baseline = read_result(path)
        except BaselineError as exc:
            raise Refused(str(exc)) from None
        if baseline["suite"]["name"] != suite.name:
            raise Refused(f"{path}: the baseline is a run of suite {baseline['suite']['name']!r}, not of "
                          f"{suite.name!r}: compare runs of the same suite")  # fmt: skip
        baselines[suite.name] = baseline
    return baselines


def open_cassette(args: argparse.Namespace) -> Cassette | None:
    from gateway.evals.cassette import Cassette, CassetteError

    if not (args.record or args.replay):
        return None
    try:
        return Cassette(args.record or args.replay, "record" if args.record else "replay")
    except CassetteError as exc:
        raise Refused(str(exc)) from None


def make_client(args: argparse.Namespace, cassette: Cassette | None) -> EvalClient:
    from gateway.evals.clients import HttpClient, InProcessClient

    if args.url:
        return HttpClient(args.url, args.key, args.admin_key, concurrency=args.concurrency)
    from gateway.settings import Settings

    settings = Settings(config=args.config) if args.config else Settings()
    prompts = load_prompt_files(args.sync_prompts)
    return InProcessClient(settings.resolve(), cassette=cassette, prompts=prompts)  # ConfigError: exit 2 in cli.main


async def run_command(args: argparse.Namespace) -> int:
    from gateway.evals.assertions import uses
    from gateway.evals.cache import ResponseCache
    from gateway.evals.clients import TargetUnreachable, UnknownTarget
    from gateway.evals.progress import Progress
    from gateway.evals.runner import RunOptions, run_suite, suite_needs

    check_arguments(args)
    suites = load_suites(args)
    baselines = read_baselines(args, suites)
    needs = set().union(*(suite_needs(s, uses) for s in suites))
    needs_record = bool(needs & {"decisions", "cost"}) or args.max_cost is not None
    if args.url and needs_record and not args.admin_key:
        why = "governance or cost assertions" if needs & {"decisions", "cost"} else "--max-cost"
        raise Refused(f"the suites use {why}, which read each call's record from the gateway: pass --admin-key")
    cassette = open_cassette(args)
    cache = ResponseCache(args.cache_dir, enabled=not args.no_cache, read=args.record is None)
    client = make_client(args, cassette)
    client.needs_record = needs_record and bool(args.url)
    codes: list[int] = []
    spent = 0.0
    try:
        async with client:  # type: ignore[attr-defined]
            for suite in suites:
                try:
                    await client.check_targets(suite.targets)
                except UnknownTarget as exc:
                    raise Refused(f"invalid suite\n{suite.path}: {exc.field}: {exc.message}") from None
                remaining = None if args.max_cost is None else max(args.max_cost - spent, 0.0)
                options = RunOptions(repeat=args.repeat, concurrency=args.concurrency, filter=args.filter,
                                     max_cost=remaining, progress=None if args.quiet else Progress())  # fmt: skip
                result = await run_suite(suite, client, cache, options)
                spent += result["cost_usd"]["target"] + result["cost_usd"]["judge"]
                codes.append(await conclude(args, suite, result, baselines.get(suite.name), len(suites) > 1, client))
                if result["status"] == "incomplete":
                    break  # a cost cap or an unreachable target holds for the suites after it too
    except TargetUnreachable as exc:
        print(f"gateway eval: the run could not start: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    finally:
        if cassette is not None:
            cassette.save()
    return max(codes) if EXIT_INCOMPLETE not in codes else EXIT_INCOMPLETE


async def conclude(args: argparse.Namespace, suite: Any, result: dict[str, Any], baseline: dict[str, Any] | None,
                   several: bool, client: EvalClient) -> int:  # fmt: skip
    """Compares with the baseline, writes the reports, blesses, stores, prints the summary; returns the exit code."""
    from gateway.evals.baseline import BaselineError, bless, compare
    from gateway.evals.reports import write_reports

    comparison = compare(baseline, result, args.tolerance) if baseline is not None else None
    write_reports(
        result,
        json_path=per_suite(args.json, suite.name, several),
        junit_path=per_suite(args.junit, suite.name, several),
        markdown_path=args.markdown,
        append_markdown=True,  # one file for every suite of the run (a CI job summary)
        comparison=comparison.as_json() if comparison is not None else None,
    )
    print(summary_line(result))
    if comparison is not None:
        for change in comparison.regressions:
            print(f"  regression: {change.message}")
        for change in comparison.improvements:
            print(f"  newly passing: {change.message}")
    if args.bless:
        try:
            print(f"  blessed as the baseline: {bless(result, per_suite(args.bless, suite.name, several))}")
        except BaselineError as exc:
            print(f"  {exc}", file=sys.stderr)
    if args.store:
        try:
            print(f"  {await client.store(result)}")
        except Exception as exc:  # noqa: BLE001 - a run that could not be stored still has its reports
            print(f"  not stored: {exc}", file=sys.stderr)
    if result["status"] == "incomplete":
        print(f"  incomplete: {result['incomplete_reason']}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if result["status"] != "passed" or (comparison is not None and not comparison.ok):
        return EXIT_FAILED
    return EXIT_PASSED


def summary_line(result: dict[str, Any]) -> str:
    counts, cost = result["counts"], result["cost_usd"]
    parts = [f"{counts['passed']}/{counts['total']} passed"]
    parts += [f"{counts[k]} {k}" for k in ("failed", "errors", "skipped") if counts[k]]
    money = f"${cost['target']:.4f} target" + (f" + ${cost['judge']:.4f} judge" if cost["judge"] else "")
    return f"{result['suite']['name']}: {result['status']} ({', '.join(parts)}), {money}, run {result['run_id']}"
