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
    git with I(paths) restores only those paths from the target (HEAD stays), and removes the
    files the target lacks under them (I(remove_added)) and the I(remove) paths. archive
    restores the files of the newest archive directory into I(archive_to). Both write each
    file atomically, keeping the current file's mode and owner.
    C(checked) refuses, before any change, a file to restore that has more than one hard link
    or is not a regular file, and a filesystem without room for the temp files (and the
    tarball, when it shares it) plus I(min_free_mb).
  - The record is a ref C(refs/rollback-ops/<run_id>) on the old HEAD (plus
    C(refs/rollback-ops/<run_id>-worktree) holding uncommitted changes when forced), or a
    tarball of the listed files and added paths under I(snapshot_dir), mode 0600 (for git
    with I(paths) and archive, a tarball of every file about to be overwritten or removed).
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
    choices: [git, files, archive]
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
    description: files, git, paths relative to I(path) that the release added, removed.
    type: list
    elements: str
    default: []
  backup_stamp:
    description: files, the stamp of the backups to restore; empty means each file's newest.
    type: str
    default: ""
  paths:
    description:
      - git, restore only these paths (files or directories, relative to I(path)) from the
        target, C(git checkout REF -- PATHS) semantics without moving HEAD (the index follows);
        the rest of the work tree is left alone. Each file is written atomically.
    type: list
    elements: str
    default: []
  remove_added:
    description:
      - git with I(paths), also remove the tracked files under I(paths) that the target does
        not have (the files the release added); untracked and ignored files stay.
    type: bool
    default: false
  archive_dir:
    description:
      - archive, a glob relative to I(path) naming the archive directories (e.g.
        C(scripts/archive/monoliths_*)); the newest by the stamp in its name (the digits the
        glob matched) is used, or the one holding I(backup_stamp).
    type: str
    default: ""
  archive_files:
    description: archive, the files of the archive directory to restore (a glob, not recursive).
    type: str
    default: "*"
  archive_to:
    description: archive, where the files go, relative to I(path).
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

- name: Seed 001 phases 4-6, restore two paths from the previous release, remove what it added
  rollback_ops.rollback.code:
    path: /srv/reddit_harbor
    method: git
    state: reverted
    paths: [scripts/core/batch_opportunity_scoring.py, core]
    remove_added: true
    run_id: 20240501T101500Z-1a2b

- name: Seed 001 phase 11, copy the newest archived monoliths back
  rollback_ops.rollback.code:
    path: /srv/reddit_harbor
    method: archive
    state: reverted
    archive_dir: scripts/archive/monoliths_*
    archive_files: "*.py"
    archive_to: scripts/core
    run_id: 20240501T101500Z-1a2b

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
  description:
    - git, C(sha), C(ref), C(description) (with I(paths), also C(paths), C(restore),
      C(remove)); files, C(backups) (file to backup path); archive, C(archive) (the directory
      chosen), C(candidates) (every directory matching, newest first), C(files).
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

import fnmatch
import glob
import os
import re
import shutil
import stat
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
# paths from the inventory are paths, never pathspec magic or globs
LITERAL = dict(NO_OPTIONAL_LOCKS, GIT_LITERAL_PATHSPECS="1")


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

    def names(self, *args):
        """A git command's NUL-separated output (-z), names kept byte for byte."""
        rc, out, err = self.module.run_command(
            [self.bin, "-c", "safe.directory=*", "-C", self.path] + list(args),
            environ_update=LITERAL,
        )
        if rc != 0:
            self.module.fail_json(msg="git %s failed: %s" % (" ".join(args), err.strip() or out))
        return [name for name in out.split("\0") if name]

    def blob(self, sha):
        rc, out, err = self.module.run_command(
            [self.bin, "-c", "safe.directory=*", "-C", self.path, "cat-file", "blob", sha],
            encoding=None,
        )
        if rc != 0:
            self.module.fail_json(msg="git cat-file blob %s failed: %s" % (sha, err))
        return out


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
    if status and not params["force"] and not partial(params):
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
    if partial(params):
        return git
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


def partial(params):
    """git with paths or remove: only those paths go back; HEAD stays."""
    return params["method"] == "git" and bool(params["paths"] or params["remove"])


def _relative(base, rel, key, problems):
    full = inside(base, rel)
    if full is None:
        problems.append("%s path %r must be relative to %s, inside it" % (key, rel, base))
        return None
    return os.path.relpath(full, base)


def _under(name, paths):
    return any(name == p or name.startswith(p + "/") for p in paths)


def inspect_git_paths(git, params, result, problems):
    """git with paths: the files under them that differ from the target (restored from it),
    the tracked files under them the target lacks (removed with remove_added), the remove
    paths; a file with an uncommitted change that is neither HEAD's nor the target's is a
    problem unless force (it would be lost; it is recorded with force)."""
    base = os.path.realpath(params["path"])
    sha, ref = result["target"]["sha"], result["target"]["ref"]
    paths = [r for r in (_relative(base, p, "git", problems) for p in params["paths"]) if r]
    removes = [r for r in (_relative(base, p, "remove", problems) for p in params["remove"]) if r]
    plan = dict(restore=[], remove=[], tracked=[])
    if problems:
        return plan
    in_ref = {}
    if paths:
        for line in git.names("ls-tree", "-r", "-z", "-l", sha, "--", *paths):
            meta, name = line.split("\t", 1)
            mode, _kind, blob, size = meta.split()
            in_ref[name] = dict(mode=mode, blob=blob, size=int(size) if size.isdigit() else 0)
    for rel in paths:
        if not _under_any_ref(rel, in_ref) and not params["remove_added"]:
            problems.append(
                "%s is not in %s (%s): nothing to restore it from (remove_added removes it)"
                % (rel, ref, sha[:12])
            )
    differ = (
        git.names("diff", "--name-only", "-z", "--no-renames", sha, "--", *paths) if paths else []
    )
    local = set(
        git.names("diff", "--name-only", "-z", "--no-renames", "HEAD", "--", *(paths + removes))
    )
    lost = []
    for name in differ:
        full = os.path.join(base, name)
        if name in in_ref:
            entry = in_ref[name]
            if entry["mode"] not in ("100644", "100755"):
                problems.append(
                    "%s is not a regular file in %s (mode %s)" % (name, ref, entry["mode"])
                )
                continue
            problem = file_problem(full, what="code file", missing_ok=True)
            if problem:
                problems.append(problem)
            plan["restore"].append((name, full, entry))
            result["reasons"].append("%s differs from %s" % (full, ref))
        elif params["remove_added"] and os.path.lexists(full):
            plan["remove"].append((name, full))
            plan["tracked"].append(name)
            result["reasons"].append("%s is not in %s: added by the release" % (full, ref))
        elif params["remove_added"]:
            plan["tracked"].append(name)  # gone from the work tree, still in the index
            result["reasons"].append("%s is not in %s: still in the index" % (full, ref))
        else:
            continue
        if name in local:
            lost.append(name)
    for rel in removes:
        full = os.path.join(base, rel)
        tracked = git.names("ls-files", "-z", "--", rel)
        if os.path.lexists(full) and not _under(rel, [r for r, _f in plan["remove"]]):
            plan["remove"].append((rel, full))
            result["reasons"].append("%s is to be removed" % full)
            lost += [name for name in tracked if name in local]
        plan["tracked"] += [name for name in tracked if name not in plan["tracked"]]
        if tracked and not os.path.lexists(full) and not any(r[0] == rel for r in plan["remove"]):
            result["reasons"].append("%s is removed but still in the index" % full)
    if lost and not params["force"]:
        problems.append(
            "%s has uncommitted changes that would be lost (--force records and discards them): %s"
            % (params["path"], "; ".join(sorted(set(lost))[:5]))
        )
    result["target"].update(
        paths=paths,
        restore=[r[0] for r in plan["restore"]],
        remove=[r[0] for r in plan["remove"]],
    )
    return plan


def _under_any_ref(rel, in_ref):
    return any(name == rel or name.startswith(rel + "/") for name in in_ref)


def _mode_like_git(current, git_mode):
    """The current mode with the executable bits git's mode asks for (100755 or 100644)."""
    if git_mode == "100755":
        return current | ((current & 0o444) >> 2)
    return current & ~0o111


def revert_git_paths(git, plan):
    """Each file to restore gets the target's bytes atomically (mode and owner kept, the
    executable bit as git has it; a new file gets its directory's owner), the removed paths
    go; then the index follows, as `git checkout REF -- PATHS` and `git rm` leave it."""
    for _rel, full, entry in plan["restore"]:
        data = git.blob(entry["blob"])
        directory = os.path.dirname(full)
        if not os.path.isdir(directory):
            os.makedirs(directory)
        try:
            current = stat.S_IMODE(os.stat(full).st_mode)
        except OSError:
            current = 0o666 & ~_umask()
        safe_write(
            full,
            None,
            data,
            backup=False,
            mode=_mode_like_git(current, entry["mode"]),
            reference=os.stat(directory),
        )
    for _rel, full in plan["remove"]:
        remove_path(full)
    _prune_empty(git.path, [os.path.dirname(r[1]) for r in plan["remove"]])
    restored = [r[0] for r in plan["restore"]]
    if restored:
        git.run("update-index", "--add", "--", *restored, environ_update=LITERAL)
    if plan["tracked"]:
        git.run("update-index", "--force-remove", "--", *plan["tracked"], environ_update=LITERAL)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _prune_empty(base, directories):
    """Remove the directories a removal left empty, up to (not including) base."""
    base = os.path.realpath(base)
    for directory in sorted(set(directories), key=len, reverse=True):
        while directory.startswith(base + "/") and os.path.isdir(directory):
            if os.listdir(directory):
                break
            os.rmdir(directory)
            directory = os.path.dirname(directory)


def remove_path(full):
    if os.path.isdir(full) and not os.path.islink(full):
        shutil.rmtree(full)
    elif os.path.lexists(full):
        os.unlink(full)


def archive_stamp(pattern, name):
    """The digits the glob's wildcards matched in name ("" when none): the stamp."""
    if "[" in pattern:
        matched = name
    else:
        regex = "".join(
            "(.*)" if c == "*" else "(.)" if c == "?" else re.escape(c) for c in pattern
        )
        found = re.match(regex + r"\Z", name, re.S)
        matched = "".join(found.groups()) if found else name
    return re.sub(r"\D", "", matched)


def inspect_archive(params, result, problems):
    """archive: the newest directory matching archive_dir by the stamp in its name (or the
    one holding backup_stamp), and its files that differ from those in archive_to."""
    base = os.path.realpath(params["path"])
    if not os.path.isdir(base):
        problems.append("code directory %s not found" % params["path"])
        return None
    pattern = params["archive_dir"]
    if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
        problems.append("archive dir %r must be a glob relative to %s, inside it" % (pattern, base))
        return None
    to = base if params["archive_to"] in ("", ".") else inside(base, params["archive_to"])
    if to is None or not os.path.isdir(to):
        problems.append(
            "archive destination %s is not a directory inside %s" % (params["archive_to"], base)
        )
        return None
    leaf = pattern.rstrip("/").split("/")[-1]
    candidates = []
    for found in glob.glob(os.path.join(base, pattern)):
        real = os.path.realpath(found)
        if not os.path.isdir(real) or not real.startswith(base + "/"):
            continue
        stamp = archive_stamp(leaf, os.path.basename(found.rstrip("/")))
        if stamp:
            candidates.append((stamp, os.path.getmtime(real), found.rstrip("/")))
    candidates.sort(reverse=True)
    wanted = params["backup_stamp"]
    chosen = [c for c in candidates if not wanted or wanted in os.path.basename(c[2])]
    result["target"] = dict(
        candidates=[c[2] for c in candidates], stamp=wanted, archive="", files=[]
    )
    if not chosen:
        problems.append(
            "no archive directory %s under %s%s (a directory needs a stamp in its name)"
            % (pattern, base, " holding %r" % wanted if wanted else "")
        )
        return None
    archive = chosen[0][2]
    result["target"]["archive"] = archive
    names = sorted(
        n
        for n in os.listdir(archive)
        if fnmatch.fnmatchcase(n, params["archive_files"])
        and os.path.isfile(os.path.join(archive, n))
        and not os.path.islink(os.path.join(archive, n))
    )
    if not names:
        problems.append("%s holds no file matching %r" % (archive, params["archive_files"]))
        return None
    result["target"]["files"] = names
    plan = dict(restore=[], remove=[])
    current = {}
    for name in names:
        source, full = os.path.join(archive, name), os.path.join(to, name)
        now = sha256(full) if os.path.isfile(full) else ""
        current[os.path.relpath(full, base)] = now
        if now != sha256(source):
            plan["restore"].append((os.path.relpath(full, base), full, source))
            result["reasons"].append("%s differs from %s" % (full, source))
            problem = file_problem(full, what="code file", missing_ok=True)
            if problem:
                problems.append(problem)
    result["current"] = dict(files=current)
    return plan


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
        remove_path(full)


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
            method=dict(type="str", choices=["git", "files", "archive"], required=True),
            state=dict(type="str", choices=["checked", "reverted"], default="checked"),
            ref=dict(type="str", default=""),
            release_tags=dict(type="str", default="*"),
            git_mode=dict(type="str", choices=["checkout", "revert"], default="checkout"),
            restore=dict(type="list", elements="str", default=[]),
            remove=dict(type="list", elements="str", default=[]),
            paths=dict(type="list", elements="str", default=[]),
            remove_added=dict(type="bool", default=False),
            archive_dir=dict(type="str", default=""),
            archive_files=dict(type="str", default="*"),
            archive_to=dict(type="str", default=""),
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
    method = params["method"]
    result = dict(changed=False, reasons=[], current={}, target={}, method=method)
    handle = plan = None
    if method == "git":
        handle = inspect_git(module, params, result, problems)
        if handle is not None and partial(params):
            plan = inspect_git_paths(handle, params, result, problems)
    elif method == "files":
        plan = inspect_files(params, result, problems)
    else:
        plan = inspect_archive(params, result, problems)
    if plan is not None:
        tarball = tree_size([p[1] for p in plan["restore"]] + [p[1] for p in plan["remove"]])
        needed_mb = tarball // MIB + params["min_free_mb"]
        free_mb = free_bytes(params["snapshot_dir"]) // MIB
        if free_mb < needed_mb:
            problems.append(
                "only %d MiB free for the snapshot in %s (need %d)"
                % (free_mb, params["snapshot_dir"], needed_mb)
            )
        writes = [(full, None, _size(source)) for _rel, full, source in plan["restore"]]
        extra = [(params["snapshot_dir"], "snapshot", tarball)]
        problems.extend(writes_space_problems(writes, params["min_free_mb"], extra))
    result["needed"] = bool(result["reasons"])
    result["problems"] = problems
    if problems:
        module.fail_json(msg="code: " + "; ".join(problems), **result)
    if params["state"] == "checked" or not result["needed"]:
        module.exit_json(**result)
    before = "\n".join(result["reasons"]) + "\n"
    if plan is None:
        after = "%s at %s\n" % (result["target"]["ref"], result["target"]["sha"])
    else:
        origin = result["target"].get("ref")
        after = "".join(
            "restore %s from %s\n" % (p[1], origin if isinstance(p[2], dict) else p[2])
            for p in plan["restore"]
        )
        after += "".join("remove %s\n" % p[1] for p in plan["remove"])
        if method == "archive":
            after = (
                "archive %s (the newest of %s)\n"
                % (
                    result["target"]["archive"],
                    ", ".join(result["target"]["candidates"]),
                )
                + after
            )
    result["diff"] = dict(before=before, after=after, before_header=params["path"])
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)
    if plan is None:
        snapshot = revert_git(module, handle, params, result)
        result.update(backup_file="%s#%s" % (snapshot["path"], snapshot["ref"]), snapshot=snapshot)
        module.exit_json(**result)
    snapshot = snapshot_files(params, plan)
    snapshot["source"] = "git-paths" if method == "git" else method
    if method == "git":
        snapshot.update(head=result["current"]["head"], ref=result["target"]["ref"])
    result.update(backup_file=snapshot["path"], snapshot=snapshot)
    try:
        if method == "git":
            revert_git_paths(handle, plan)
        else:
            revert_files(params, plan)
    except (FileError, OSError) as exc:
        module.fail_json(
            msg="code: %s (the code before is in %s)" % (exc, snapshot["path"]), **result
        )
    module.exit_json(**result)


def _size(source):
    return source["size"] if isinstance(source, dict) else os.path.getsize(source)


if __name__ == "__main__":
    main()
