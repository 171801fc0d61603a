"""`rollback-ops undo RUN_ID` end to end on a lab host: a flag, a code and a config run, each
undone in check mode first (no byte, ref, image, container or unit changes), then for real,
back to the exact previous state as the host shows it (env file bytes; git HEAD, branch, work
tree bytes; the image rebuilt from the same context and the container running it; the config
file's bytes, mode and owner, from the copy the run made). One host (web1) each, to keep lab
time small.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import ENV_FILE, LabHosts
from tests.integration.test_code_level import APP, MAINTENANCE, CodeLab

HOST = "web1"
LABEL = "org.rollback-ops.context"  # plugins/modules/containers.py: the context's hash
# a release 1.4.1 on top of the good 1.4.0 whose worker differs by a comment: both healthy,
# so the undo of a code rollback from 1.4.1 to 1.4.0 ends as healthy as the host began
MAKE_141 = (
    f"cd {APP} && printf '# 1.4.1: nothing but this comment\\n' >> worker/orchestrator.sh "
    "&& git -c safe.directory='*' -c user.name=lab -c user.email=lab@rollback-ops.invalid "
    "commit -qam 'Release 1.4.1' "
    "&& git -c safe.directory='*' -c user.name=lab -c user.email=lab@rollback-ops.invalid "
    "tag -a -m 'Release 1.4.1' release-1.4.1 "
    "&& cd worker && export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0 "
    "&& docker-compose build -q --force-rm worker >/dev/null && docker-compose up -d worker"
)


def test_undo_of_a_flag_run_puts_back_the_env_files_bytes_and_restarts(lab: LabHosts):
    original = lab.read(HOST)
    run = lab.cli(
        "apply", "--level", "flag", "-i", lab.inventory, "--limit", HOST,
        "--flag", "ENABLE_TIME_WEIGHTING=false", "--yes", "--json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    run_id = run.receipt["run_id"]
    assert lab.health(HOST)["config"]["ENABLE_TIME_WEIGHTING"] is False

    before = lab.fingerprint(HOST)
    check = lab.cli("undo", run_id, "--check", "--diff", "--yes", "--json")
    assert check.code == 0, check.stderr
    assert check.receipt["check"] is True
    assert check.receipt["hosts"][HOST]["flags"] == [
        {"key": "ENABLE_TIME_WEIGHTING", "before": "false", "after": "true", "changed": True}
    ]
    assert "ENABLE_TIME_WEIGHTING=true" in check.stderr  # the diff of what would change
    lab.assert_unchanged(before)

    since = lab.unit_since(HOST)
    done = lab.cli("undo", run_id, "-i", lab.inventory, "--yes", "--json")
    assert done.code == 0, done.stderr
    receipt = done.receipt
    assert (receipt["level"], receipt["undoes"]) == ("flag", run_id)
    assert list(receipt["hosts"]) == [HOST]
    assert lab.read(HOST) == original  # every byte as before the flag run
    assert lab.sh(HOST, f"stat -c '%a %U' {ENV_FILE}").strip() == "640 root"
    assert lab.unit_since(HOST) > since  # restarted, and the process sees the value back
    assert lab.health(HOST)["config"]["ENABLE_TIME_WEIGHTING"] is True
    (copy,) = receipt["hosts"][HOST]["backups"]  # the undo copied the file before changing it
    assert "ENABLE_TIME_WEIGHTING=false" in lab.read(HOST, copy)

    again = lab.cli("undo", run_id, "--yes")
    assert again.code == 2
    assert f"already undone by run {receipt['run_id']}" in again.stderr
    assert lab.read(HOST) == original


@pytest.fixture
def release_141(lab: LabHosts) -> Iterator[CodeLab]:
    """web1 at a release 1.4.1 (main, one commit on top of 1.4.0), its worker built and
    running; the tag removed and the host reset afterwards."""
    code = CodeLab(lab)
    lab.sh(HOST, f"lab-release reset && {MAKE_141}")
    yield code
    lab.sh(HOST, f"git -c safe.directory='*' -C {APP} tag -d release-1.4.1; lab-release reset")


def test_undo_of_a_code_run_puts_back_head_branch_files_and_image(release_141: CodeLab):
    code, lab = release_141, release_141.lab
    head = code.git(HOST, "rev-parse", "HEAD")
    orchestrator = lab.sh(HOST, f"sha256sum {APP}/worker/orchestrator.sh")
    in_image = code.worker(HOST)["orchestrator"]
    assert in_image.endswith("# 1.4.1: nothing but this comment\n")

    run = code.apply("--limit", HOST, "--to", "release-1.4.0")
    assert run.code == 0, run.stderr
    run_id = run.receipt["run_id"]
    assert code.git(HOST, "rev-parse", "HEAD^") == head  # the revert commit on top of 1.4.1
    assert "1.4.1" not in code.worker(HOST)["orchestrator"]
    built = code.lab.lab.container(HOST).client.images.get(f"analyticbot-worker:test-{HOST}")
    rolled_back_label = built.labels[LABEL]

    before = lab.fingerprint(HOST)
    check = lab.cli("undo", run_id, "--check", "--diff", "--yes", "--json")
    assert check.code == 0, check.stderr
    assert check.receipt["check"] is True and check.receipt["changed"] > 0
    lab.assert_unchanged(before)  # code, refs, image, containers, units

    done = lab.cli("undo", run_id, "--yes", "--json")
    assert done.code == 0, done.stderr
    receipt = done.receipt
    assert (receipt["level"], receipt["undoes"], receipt["result"]) == ("code", run_id, "ok")
    # git: the exact commit the run recorded (not a new one with its tree), on its branch
    assert code.git(HOST, "rev-parse", "HEAD") == head
    assert code.git(HOST, "symbolic-ref", "--short", "HEAD") == "main"
    assert code.git(HOST, "status", "--porcelain", "--untracked-files=no") == ""
    assert lab.sh(HOST, f"sha256sum {APP}/worker/orchestrator.sh") == orchestrator
    # the image: rebuilt from the restored context (a new build has a new id: what we can
    # claim is its content): the file in the running container is the 1.4.1 one again, the
    # image is labelled with another context hash than the rollback's, and runs
    worker = code.worker(HOST)
    assert worker["orchestrator"] == in_image
    image = code.lab.lab.container(HOST).client.images.get(f"analyticbot-worker:test-{HOST}")
    assert image.labels[LABEL] != rolled_back_label
    assert worker["image"] == worker["tag_id"] == image.id
    assert worker["status"] == "running" and not worker["restarting"]
    health = lab.health(HOST)
    assert (health["version"], health["status"], health["maintenance"]) == (
        "1.4.0",
        "healthy",
        False,
    )
    assert lab.sh(HOST, f"test ! -e {MAINTENANCE} && echo gone").strip() == "gone"
    snapshot = receipt["hosts"][HOST]["code"]["snapshot"]  # the undo recorded what it replaced
    assert (
        code.git(HOST, "rev-parse", snapshot["ref"])
        == run.receipt["hosts"][HOST]["code"]["head_after"]
    )

    # the same run undone again: refused, naming the undo; the undo's own undo would redo
    again = lab.cli("undo", run_id, "--yes")
    assert again.code == 2 and f"already undone by run {receipt['run_id']}" in again.stderr


SETTINGS = "/etc/analyticbot/settings.yml"
STAT = f"stat -c '%a %U %G' {SETTINGS}"


@pytest.fixture
def reset_web1(lab: LabHosts) -> Iterator[LabHosts]:
    lab.sh(HOST, "lab-release reset")
    yield lab
    lab.sh(HOST, "lab-release reset")


def test_undo_of_a_config_run_puts_back_each_files_bytes_mode_and_owner(reset_web1: LabHosts):
    lab = reset_web1
    made = lab.cli("backup", "create", "-i", lab.inventory, "--limit", HOST, "--json")
    assert made.code == 0, made.stderr
    good = lab.read(HOST, SETTINGS)
    # the config before the rollback: a healthy edit (a comment) with another mode and group
    lab.sh(HOST, f"echo '# tuned by hand' >> {SETTINGS} && chmod 600 {SETTINGS}")
    lab.sh(HOST, f"chgrp daemon {SETTINGS}")
    edited, edited_stat = lab.read(HOST, SETTINGS), lab.sh(HOST, STAT)
    assert edited_stat == "600 root daemon\n"
    run = lab.cli(
        "apply", "--level", "config", "-i", lab.inventory, "--limit", HOST, "--yes", "--json"
    )
    assert run.code == 0, run.stderr
    run_id = run.receipt["run_id"]
    assert lab.read(HOST, SETTINGS) == good

    before = lab.fingerprint(HOST)
    check = lab.cli("undo", run_id, "--check", "--diff", "--yes", "--json")
    assert check.code == 0, check.stderr
    assert check.receipt["check"] is True and check.receipt["changed"] > 0
    assert "# tuned by hand" in check.stderr  # the diff of what would change
    lab.assert_unchanged(before)

    since = lab.unit_since(HOST)
    done = lab.cli("undo", run_id, "--yes", "--json")
    assert done.code == 0, done.stderr
    receipt = done.receipt
    assert (receipt["level"], receipt["undoes"], receipt["result"]) == ("config", run_id, "ok")
    assert lab.read(HOST, SETTINGS) == edited  # every byte, the mode and owner as before
    assert lab.sh(HOST, STAT) == edited_stat
    assert lab.unit_since(HOST) > since and lab.health(HOST)["status"] == "healthy"
    (copy,) = receipt["hosts"][HOST]["backups"]  # the undo kept what the run had written
    assert copy.startswith(f"{SETTINGS}.backup.") and lab.read(HOST, copy) == good

    again = lab.cli("undo", run_id, "--yes")
    assert again.code == 2 and f"already undone by run {receipt['run_id']}" in again.stderr
    assert lab.read(HOST, SETTINGS) == edited
