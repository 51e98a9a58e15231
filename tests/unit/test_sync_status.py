"""The statuses of a sync pass are an Enum whose values are what `inbox sync --json` has always said."""

from __future__ import annotations

import json

from inbox.sync.account import ERROR_STATUSES, AccountSyncResult, SyncStatus, exit_code


def test_the_values_are_the_json_words() -> None:
    assert [s.value for s in SyncStatus] == [
        "ok", "dry-run", "stopped", "skipped", "retry-later", "needs-reauth", "conflict", "failed", "config-error",
    ]
    assert set(ERROR_STATUSES) == {"retry-later", "needs-reauth", "conflict", "failed", "config-error"}


def test_a_result_says_its_status_as_a_plain_string() -> None:
    d = AccountSyncResult("shop", "x", SyncStatus.RETRY_LATER).as_dict()
    assert type(d["status"]) is str and d["status"] == "retry-later" and d["errors"] == 1
    assert json.loads(json.dumps(d))["status"] == "retry-later"
    assert f"{SyncStatus.NEEDS_REAUTH}" == "needs-reauth"


def test_exit_codes_by_status() -> None:
    def code(*statuses: SyncStatus) -> int:
        return exit_code([AccountSyncResult(f"a{i}", "x", s) for i, s in enumerate(statuses)])

    assert code(SyncStatus.OK, SyncStatus.DRY_RUN, SyncStatus.STOPPED, SyncStatus.SKIPPED) == 0
    assert code(SyncStatus.CONFLICT) == 6
    assert code(SyncStatus.CONFLICT, SyncStatus.RETRY_LATER) == 7
    assert code(SyncStatus.FAILED, SyncStatus.NEEDS_REAUTH) == 4
    assert code(SyncStatus.NEEDS_REAUTH, SyncStatus.CONFIG_ERROR) == 3
