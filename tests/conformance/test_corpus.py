"""The malformed-request corpus: every strategy's outcome equals bare gunicorn sync's.

Each case's raw bytes go to the reference and to every strategy on a fresh
connection; the outcome class (a status and whether the connection then closed, what
the app saw of a 2xx request, ``closed without response`` or ``waits for more``) is
compared.
All outcomes are measured once per session, one thread per server, so a test
per (group, strategy) only looks its cases up and lists every mismatch.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conformance.conftest import REFERENCE, STRATEGIES, Servers
from tests.conformance.corpus import CASES, GROUPS, by_group
from tests.conformance.wire import outcome

pytestmark = [pytest.mark.conformance, pytest.mark.server]

Outcomes = dict[str, dict[str, str]]


def _run_corpus(servers: Servers, name: str) -> dict[str, str]:
    """Every case's outcome on server ``name``, restarting it if a case killed it."""
    results: dict[str, str] = {}
    for case in CASES:
        try:
            server = servers[name]
        except pytest.fail.Exception as exc:
            results[case.id] = f"server unavailable: {str(exc).splitlines()[0]}"
            continue
        try:
            results[case.id] = outcome(server.port, case.raw)
        except OSError as exc:
            results[case.id] = f"client error {type(exc).__name__}: {exc}"
        if not server.alive():
            results[case.id] += " (and the server died)"
    return results


@pytest.fixture(scope="session")
def outcomes(servers: Servers) -> Iterator[Outcomes]:
    """Each server's outcome for each case, measured once, all servers in parallel."""
    names = [REFERENCE, *STRATEGIES]
    with ThreadPoolExecutor(len(names)) as pool:
        measured = dict(zip(names, pool.map(lambda n: _run_corpus(servers, n), names), strict=True))
    yield measured


def test_corpus_is_large_and_unique() -> None:
    """The corpus holds at least 60 cases of its own, with unique ids."""
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 60


def test_reference_accepts_the_baselines(outcomes: Outcomes) -> None:
    """The reference serves the well-formed baseline requests (so its outcomes mean something)."""
    reference = outcomes[REFERENCE]
    for case_id in ("cl-valid", "chunk-valid", "get-valid", "version-1-0"):
        assert reference[case_id].startswith("200 app saw"), (case_id, reference[case_id])
    assert reference["cl-and-te"].startswith("400"), reference["cl-and-te"]


#: where servekit's werkzeug and gunicorn strategies answer otherwise than bare gunicorn, by design: a
#: declared body over max_body_size (1 GiB by default) is refused at once (bare gunicorn
#: waits for it)
DESIGNED = {"cl-huge": "413 then closed", "cl-2-pow-64": "413 then closed"}
LIMITED = {"dev", "threaded", "processes", "sync", "gthread", "gevent", "eventlet", "tornado"}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("group", GROUPS)
def test_corpus_group(outcomes: Outcomes, group: str, strategy: str) -> None:
    """Every case of the group gets the same outcome class from the strategy as from the reference."""
    reference, got = dict(outcomes[REFERENCE]), outcomes[strategy]
    if strategy in LIMITED:
        reference.update({k: v for k, v in DESIGNED.items() if k in reference})
    mismatches = [
        f"  {case.id}: reference {reference[case.id]!r}, {strategy} {got[case.id]!r}"
        + (f"  [{case.note}]" if case.note else "")
        for case in by_group(group)
        if got[case.id] != reference[case.id]
    ]
    if mismatches:
        pytest.fail(
            f"{len(mismatches)} of {len(by_group(group))} {group} cases differ on {strategy}:\n"
            + "\n".join(mismatches),
            pytrace=False,
        )
