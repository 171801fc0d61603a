#!/usr/bin/python
"""Inspect or revert an app's code: a git work tree, or files restored from their backups."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: code
short_description: Check and revert an app's code (git ref or .backup.<stamp> files)
description:
  - C(state=checked) is read-only. It resolves the target (a git commit, or the backup of each
    listed file), checks it exists and that the work tree has no uncommitted change to tracked
    files (unless I(force)), and says whether the code differs from the target (C(needed)).
    Every problem is reported at once; the module fails when there is any.
  - C(state=reverted) records the current code first, so the rollback itself can be undone,
    then reverts. git, C(checkout) mode puts the work tree on the target commit (detached HEAD);
    C(revert) mode keeps history, adding one commit on top of HEAD whose tree is the target's.
    files, each listed file gets its backup's bytes (atomic replace, the current file's mode
    and owner kept; a symlink is kept and its final target replaced; a missing file is
    created with the backup's mode and owner) and each path the release added is removed.
    C(checked) refuses, before any change, a file to restore that has more than one hard link
    or is not a regular file, and a filesystem without room for the temp files (and the
    tarball, when it shares it) plus I(min_free_mb).
  - The record is a ref C(refs/rollback-ops/<run_id>) on the old HEAD (plus
    C(refs/rollback-ops/<run_id>-worktree) holding uncommitted changes when forced), or a
    tarball of the listed files and added paths under I(snapshot_dir), mode 0600.
  - Idempotent.
extends_documentation_fragment:
  - rollback_ops.rollback.run
  - rollback_ops.rollback.space
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
attributes:
  check_mode:
    support: full
    details: Checks everything and says what would change; reverts nothing.
  diff_mode:
    support: full
    details: What differs, and what the revert would do, one line each.
options:
  path:
    description: The app's code directory (the git work tree, or the base of the listed files).
    type: path
    required: true
  method:
    description: How the code is reverted.
    type: str
    choices: [git, files]
    required: true
  state:
    description: C(checked) inspects only; C(reverted) reverts.
    type: str
    choices: [checked, reverted]
    default: checked
  ref:
    description:
      - git, the commit to go back to (a sha, tag or branch). Empty means the previous
        release, the second newest tag matching I(release_tags) in version order.
    type: str
    default: ""
  release_tags:
    description: git, the tags that mark releases (a C(git for-each-ref) pattern).
    type: str
    default: "*"
  git_mode:
    description: git, C(checkout) (detached HEAD on the target) or C(revert) (a new commit).
    type: str
    choices: [checkout, revert]
    default: checkout
  exact:
    description:
      - git, put HEAD exactly on the target commit whatever I(git_mode) says, on I(branch)
        (moved there) or detached when I(branch) is empty; needed until HEAD is that commit
        on that branch. C(rollback-ops undo) uses it to put back the HEAD a run recorded.
    type: bool
    default: false
  branch:
    description: git, with I(exact), the branch to put on the target and check out.
    type: str
    default: ""
  expect_head:
    description:
      - git, the commits HEAD may be on now (empty, any); another is a problem. C(rollback-ops
        undo) sends the HEAD the undone run left and the one it puts back.
    type: list
    elements: str
    default: []
  restore:
    description: files, paths relative to I(path) restored from C(<file>.backup.<stamp>).
    type: list
    elements: str
    default: []
  remove:
    description: files, paths relative to I(path) that the release added, removed.
    type: list
    elements: str
    default: []
  backup_stamp:
    description: files, the stamp of the backups to restore; empty means each file's newest.
    type: str
    default: ""
  force:
    description: Revert even though tracked files have uncommitted changes (they are recorded).
    type: bool
    default: false
  app:
    description: The app's name, naming the tarball.
    type: str
    default: app
  snapshot_dir:
    description: Where tarballs of the current files are kept.
    type: path
    default: /var/lib/rollback-ops/code
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Check the work tree can go back to the previous release tag
  rollback_ops.rollback.code:
    path: /srv/analyticbot/app
    method: git
    release_tags: "v*"
  register: code_check

- name: Put the work tree back on v1.4.2 with a revert commit, recording the current HEAD
  rollback_ops.rollback.code:
    path: /srv/analyticbot/app
    method: git
    state: reverted
    ref: v1.4.2
    git_mode: revert
    run_id: 20240501T101500Z-1a2b
    operator: ana

- name: Restore two files from their backup copies and remove a file the release added
  rollback_ops.rollback.code:
    path: /srv/analyticbot/app
    method: files
    state: reverted
    restore: [app.py, templates/base.html]
    remove: [static/new-widget.js]
    app: analyticbot
    run_id: 20240501T101500Z-1a2b
"""

RETURN = r"""
needed:
  description: Whether the code differs from the target.
  type: bool
  returned: always
reasons:
  description: What differs, one line each.
  type: list
  elements: str
  returned: always
problems:
  description: Every problem found by C(checked) (the module fails when there is any).
  type: list
  elements: str
  returned: always
current:
  description: The code before; git, C(head), C(branch), C(dirty); files, the sha256 per file.
  type: dict
  returned: always
target:
  description: git, C(sha), C(ref), C(description); files, C(backups) (file to backup path).
  type: dict
  returned: always
snapshot:
  description: The record of the code before the revert (C(kind) git-ref or tarball, C(path)).
  type: dict
  returned: when state is reverted and something changed
backup_file:
  description: Where the record is (tarball path, or C(<path>#<ref>) for git).
  type: str
  returned: when state is reverted and something changed
"""

import os
import shutil
import tarfile
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.files import (
    MIB,
    FileError,
    file_problem,
    find_backup,
    free_bytes,
    safe_write,
    sha256,
    tree_size,
    writes_space_problems,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    run_argument_spec,
    space_argument_spec,
)

NO_OPTIONAL_LOCKS = dict(GIT_OPTIONAL_LOCKS="0")


class Git:
    def __init__(self, module, path):
        self.module = module
        self.path = path
        self.bin = module.get_bin_path("git", required=True)

    def run(self, *args, **kwargs):
        check = kwargs.pop("check", True)
        rc, out, err = self.module.run_command(
            [self.bin, "-c", "safe.directory=*", "-C", self.path] + list(args), **kwargs
        )
        if check and rc != 0:
            self.module.fail_json(msg="git %s failed: %s" % (" ".join(args), err.strip() or out))
        return rc, out.strip(), err.strip()

    def commit(self, ref):
        rc, out, _ = self.run("rev-parse", "--verify", "--quiet", ref + "^{commit}", check=False)
        return out if rc == 0 else ""

    def tree(self, ref):
        return self.run("rev-parse", ref + "^{tree}")[1]


def inside(base, rel):
    """rel as an absolute path under base, or None if it is absolute or escapes base."""
    if not rel or os.path.isabs(rel):
        return None
    full = os.path.normpath(os.path.join(base, rel))
    return full if full.startswith(base.rstrip("/") + "/") else None


def inspect_git(module, params, result, problems):
    git = Git(module, params["path"])
    rc, _, err = git.run("rev-parse", "--is-inside-work-tree", check=False)
    if rc != 0:
        problems.append("%s is not a git work tree: %s" % (params["path"], err))
        return None
    head = git.commit("HEAD")
    _, branch, _ = git.run("symbolic-ref", "-q", "--short", "HEAD", check=False)
    # no optional locks: status must not refresh (rewrite) the index, which check mode and
    # state=checked promise not to touch (git 2.15+; older git ignores the variable)
    _, status, _ = git.run(
        "status", "--porcelain", "--untracked-files=no", environ_update=NO_OPTIONAL_LOCKS
    )
    result["current"] = dict(head=head, branch=branch, dirty=bool(status))
    if status and not params["force"]:
        problems.append(
            "%s has uncommitted changes to tracked files (--force records and discards them): %s"
            % (params["path"], "; ".join(status.splitlines()[:5]))
        )
    ref = params["ref"]
    if not ref:
        _, out, _ = git.run(
            "for-each-ref",
            "--sort=-v:refname",
            "--format=%(refname:short)",
            "refs/tags/" + params["release_tags"],
        )
        tags = [t for t in out.splitlines() if t]
        if len(tags) < 2:
            problems.append(
                "no previous release: %d tag(s) match %r in %s (give --to REF)"
                % (len(tags), params["release_tags"], params["path"])
            )
            return None
        ref = tags[1]
    sha = git.commit(ref) if not ref.startswith("-") else ""  # never a git option
    if not sha:
        problems.append("git ref %r not found in %s" % (ref, params["path"]))
        return None
    _, described, _ = git.run("describe", "--tags", "--always", sha, check=False)
    result["target"] = dict(sha=sha, ref=ref, description=described or sha[:12])
    expected = params["expect_head"]
    if expected and head not in expected:
        problems.append(
            "HEAD of %s is %s, not %s: a later change? (rollback-ops undo --force overwrites it)"
            % (params["path"], head[:12], " or ".join(e[:12] for e in expected))
        )
    if params["exact"] and params["branch"]:
        rc, _, _ = git.run("check-ref-format", "--branch", params["branch"], check=False)
        if rc != 0 or params["branch"].startswith("-"):
            problems.append("%r is not a branch name" % params["branch"])
    if params["exact"] and (head != sha or branch != params["branch"]):
        result["reasons"].append(
            "HEAD %s%s is not %s%s"
            % (
                head[:12],
                " on " + branch if branch else " (detached)",
                sha[:12],
                " on " + params["branch"] if params["branch"] else " (detached)",
            )
        )
    if git.tree("HEAD") != git.tree(sha):
        _, log, _ = git.run("log", "--oneline", "--no-decorate", "-n", "20", sha + "..HEAD")
        result["reasons"].append(
            "HEAD %s is not the tree of %s (%s); commits since: %s"
            % (head[:12], ref, sha[:12], "; ".join(log.splitlines()) or "none")
        )
    elif status:
        result["reasons"].append("tracked files have uncommitted changes")
    return git


def inspect_files(params, result, problems):
    base = os.path.realpath(params["path"])
    if not os.path.isdir(base):
        problems.append("code directory %s not found" % params["path"])
        return None
    plan = dict(restore=[], remove=[])
    current, backups = {}, {}
    for rel in params["restore"]:
        full = inside(base, rel)
        if full is None:
            problems.append("restore path %r must be relative to %s, inside it" % (rel, base))
            continue
        backup = find_backup(full, params["backup_stamp"])
        if not backup:
            problems.append(
                "no backup file found for %s (checked %s.backup.%s)"
                % (full, full, params["backup_stamp"] or "*")
            )
            continue
        backups[rel] = backup
        now = sha256(full) if os.path.isfile(full) else ""
        current[rel] = now
        if now != sha256(backup):
            plan["restore"].append((rel, full, backup))
            result["reasons"].append("%s differs from %s" % (full, backup))
            problem = file_problem(full, what="code file", missing_ok=True)
            if problem:
                problems.append(problem)
    for rel in params["remove"]:
        full = inside(base, rel)
        if full is None:
            problems.append("remove path %r must be relative to %s, inside it" % (rel, base))
            continue
        if os.path.lexists(full):
            plan["remove"].append((rel, full))
            result["reasons"].append("%s was added by the release" % full)
    result["current"] = dict(files=current)
    result["target"] = dict(backups=backups, stamp=params["backup_stamp"])
    return plan


def snapshot_files(params, plan):
    """A tarball of the files about to be replaced or removed, mode 0600."""
    directory = params["snapshot_dir"]
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    name = "%s-%s.tar.gz" % (params["app"], params["run_id"] or time.strftime("%Y%m%dT%H%M%SZ"))
    target = os.path.join(directory, name)
    fd, tmp = tempfile.mkstemp(prefix=".snapshot.", dir=directory)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for rel, full, _backup in plan["restore"]:
                if os.path.exists(full):
                    # The bytes about to be replaced: a symlink's target, whose content the
                    # restore replaces (the link itself stays).
                    tar.add(os.path.realpath(full), arcname=rel)
                elif os.path.lexists(full):
                    tar.add(full, arcname=rel)
            for rel, full in plan["remove"]:
                tar.add(full, arcname=rel)
        os.chmod(tmp, 0o600)
        os.rename(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dict(kind="tarball", path=target, base=params["path"])


def restore_file(full, backup):
    """Give full its backup's bytes atomically (files.safe_write): a symlink is kept
    and its final target replaced, mode and owner kept; a missing file gets the backup's."""
    with open(backup, "rb") as handle:
        data = handle.read()
    safe_write(full, None, data, backup=False, reference=os.stat(backup))


def revert_files(params, plan):
    for _rel, full, backup in plan["restore"]:
        restore_file(full, backup)
    for _rel, full in plan["remove"]:
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)


def revert_git(module, git, params, result):
    """Record HEAD (and uncommitted changes) under refs/rollback-ops/, then move to the target."""
    run_id = params["run_id"] or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    ref = "refs/rollback-ops/" + run_id
    head, target = result["current"]["head"], result["target"]["sha"]
    git.run("update-ref", ref, head)
    snapshot = dict(kind="git-ref", path=params["path"], ref=ref, head=head)
    snapshot["branch"] = result["current"]["branch"]
    if result["current"]["dirty"]:
        _, stash, _ = git.run("stash", "create", "rollback-ops run " + run_id)
        if stash:
            git.run("update-ref", ref + "-worktree", stash)
            snapshot["worktree_ref"] = ref + "-worktree"
    how = "--hard" if result["current"]["dirty"] else "--keep"
    force = ["--force"] if how == "--hard" else []
    if params["exact"]:
        place = ["-B", params["branch"]] if params["branch"] else ["--detach"]
        git.run(*(["checkout"] + force + place + [target]))
    elif params["git_mode"] == "checkout":
        git.run(*(["checkout", "--detach"] + force + [target]))
    else:
        _, log, _ = git.run("log", "--oneline", "--no-decorate", target + "..HEAD")
        message = "Roll back to %s (%s)\n\nReverts:\n%s\n\nrollback-ops run %s%s\n" % (
            result["target"]["ref"],
            target[:12],
            "\n".join("  " + line for line in log.splitlines()) or "  (no commits)",
            run_id,
            (", operator " + params["operator"]) if params["operator"] else "",
        )
        who = params["operator"] or "rollback-ops"
        env = dict(
            GIT_AUTHOR_NAME=who,
            GIT_AUTHOR_EMAIL="rollback-ops@localhost",
            GIT_COMMITTER_NAME=who,
            GIT_COMMITTER_EMAIL="rollback-ops@localhost",
        )
        _, commit, _ = git.run(
            "commit-tree", target + "^{tree}", "-p", "HEAD", "-m", message, environ_update=env
        )
        git.run("reset", how, commit)
        result["revert_commit"] = commit
    _, now, _ = git.run("rev-parse", "HEAD")
    result["head_after"] = now
    return snapshot


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            method=dict(type="str", choices=["git", "files"], required=True),
            state=dict(type="str", choices=["checked", "reverted"], default="checked"),
            ref=dict(type="str", default=""),
            release_tags=dict(type="str", default="*"),
            git_mode=dict(type="str", choices=["checkout", "revert"], default="checkout"),
            restore=dict(type="list", elements="str", default=[]),
            remove=dict(type="list", elements="str", default=[]),
            backup_stamp=dict(type="str", default=""),
            force=dict(type="bool", default=False),
            exact=dict(type="bool", default=False),
            branch=dict(type="str", default=""),
            expect_head=dict(type="list", elements="str", default=[]),
            app=dict(type="str", default="app"),
            snapshot_dir=dict(type="path", default="/var/lib/rollback-ops/code"),
            **dict(run_argument_spec(), **space_argument_spec()),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problems = []
    result = dict(changed=False, reasons=[], current={}, target={}, method=params["method"])
    if params["method"] == "git":
        handle = inspect_git(module, params, result, problems)
    else:
        handle = inspect_files(params, result, problems)
    if params["method"] == "files" and handle is not None:
        tarball = tree_size([p[1] for p in handle["restore"]] + [p[1] for p in handle["remove"]])
        needed_mb = tarball // MIB + params["min_free_mb"]
        free_mb = free_bytes(params["snapshot_dir"]) // MIB
        if free_mb < needed_mb:
            problems.append(
                "only %d MiB free for the snapshot in %s (need %d)"
                % (free_mb, params["snapshot_dir"], needed_mb)
            )
        writes = [(full, None, os.path.getsize(backup)) for _rel, full, backup in handle["restore"]]
        extra = [(params["snapshot_dir"], "snapshot", tarball)]
        problems.extend(writes_space_problems(writes, params["min_free_mb"], extra))
    result["needed"] = bool(result["reasons"])
    result["problems"] = problems
    if problems:
        module.fail_json(msg="code: " + "; ".join(problems), **result)
    if params["state"] == "checked" or not result["needed"]:
        module.exit_json(**result)
    before = "\n".join(result["reasons"]) + "\n"
    if params["method"] == "git":
        after = "%s at %s\n" % (result["target"]["ref"], result["target"]["sha"])
    else:
        after = "".join("restore %s from %s\n" % (p[1], p[2]) for p in handle["restore"])
        after += "".join("remove %s\n" % p[1] for p in handle["remove"])
    result["diff"] = dict(before=before, after=after, before_header=params["path"])
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)
    if params["method"] == "git":
        snapshot = revert_git(module, handle, params, result)
        result.update(backup_file="%s#%s" % (snapshot["path"], snapshot["ref"]), snapshot=snapshot)
    else:
        snapshot = snapshot_files(params, handle)
        result.update(backup_file=snapshot["path"], snapshot=snapshot)
        try:
            revert_files(params, handle)
        except FileError as exc:
            module.fail_json(
                msg="code: %s (the code before is in %s)" % (exc, snapshot["path"]), **result
            )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
