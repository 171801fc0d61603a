#!/usr/bin/python
"""Where a host stands: the app's flags, code, images, containers, units, maintenance, lock
and newest verified backup set, read in one call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: status_info
short_description: Read where a host stands for one app (flags, code, containers, lock, backups)
description:
  - Reads, in one call and without changing anything, what C(rollback-ops status) shows per
    host, the values of the app's env keys (secret ones masked, never returned), its code
    (git HEAD, branch, C(git describe), the release tag whose tree is HEAD's, uncommitted
    changes; or the sha256 of each listed file), its images' ids and its compose services'
    containers, its units' states, whether maintenance is on, who holds the host's rollback
    lock, and its newest verified backup set with its age.
  - What cannot be read (an env file missing, the Docker engine not answering) is reported
    in C(status.problems); the module fails only on bad options.
  - Secret keys match the patterns of I(secret_keys) or the defaults C(*_KEY), C(*_TOKEN),
    C(*PASSWORD*), C(*SECRET*); their values are returned as C(<secret sha256:1a2b3c4d>) (a
    short hash, so two hosts can be compared).
requirements:
  - the docker SDK for Python on the host (C(python3-docker)), for I(images) and I(project_dir)
extends_documentation_fragment:
  - rollback_ops.rollback.lock
  - rollback_ops.rollback.backupset
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
options:
  env_file:
    description: The app's env file; empty for none.
    type: path
    default: ""
  keys:
    description: The env keys whose values are returned (a key the file lacks is C(null)).
    type: list
    elements: str
    default: []
  secret_keys:
    description: Env key patterns (fnmatch) whose values are secret, beside the defaults.
    type: list
    elements: str
    default: []
  code_path:
    description:
      - The app's code directory (a git work tree, or the base of I(code_files)); empty for
        none.
    type: path
    default: ""
  code_method:
    description: How the code is deployed, as the code level reverts it.
    type: str
    choices: [git, files]
    default: git
  release_tags:
    description: git, the tags that mark releases (a C(git for-each-ref) pattern).
    type: str
    default: "*"
  code_files:
    description: files, paths relative to I(code_path) whose sha256 is returned.
    type: list
    elements: str
    default: []
  images:
    description: The tags of the app's images.
    type: list
    elements: str
    default: []
  project_dir:
    description:
      - The app's compose project directory; empty for none.
      - Its containers are found as C(compose ps) finds them, by the project's name
        (C($COMPOSE_PROJECT_NAME), else the one in the project's C(.env), else the
        directory's name) and their services' labels; no compose command is run.
    type: path
    default: ""
  services:
    description: The app's compose services; empty for all of the project's.
    type: list
    elements: str
    default: []
  units:
    description: The app's systemd units.
    type: list
    elements: str
    default: []
  maintenance_file:
    description: A file that exists while maintenance is on; empty for none.
    type: path
    default: ""
  maintenance_env:
    description: Env values (in I(env_file)) that mean maintenance is on.
    type: dict
    default: {}
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Read where the host stands
  rollback_ops.rollback.status_info:
    app: analyticbot
    env_file: /srv/analyticbot/.env.production
    keys: [ENABLE_ADVANCED_RECOMMENDATIONS, ENABLE_TIME_WEIGHTING, APP_MODE]
    code_path: /opt/analyticbot/app
    release_tags: "release-*"
    images: ["analyticbot-worker:prod"]
    project_dir: /opt/analyticbot/app/worker
    services: [worker]
    units: [analyticbot-api]
    maintenance_file: /srv/analyticbot/MAINTENANCE
  register: where
"""

RETURN = r"""
status:
  description: Where the host stands.
  type: dict
  returned: always
  contains:
    app:
      description: The app's name.
      type: str
    flags:
      description:
        - Each of I(keys) with its value in the env file (C(null) when absent), secret ones
          masked; empty when there is no env file, or it cannot be read (see C(problems)).
      type: dict
    code:
      description:
        - git, C(method), C(sha), C(branch) (empty when detached), C(describe), C(release) (the
          newest release tag whose tree is HEAD's, empty when none), C(dirty).
        - files, C(method) and C(files), the sha256 of each file (C(null) when missing).
        - Empty when no I(code_path).
      type: dict
    images:
      description: Each of I(images) with its image id (empty when the tag is missing).
      type: dict
    containers:
      description:
        - Per service, its containers' C(id), C(image), C(status), C(restarting),
          C(restart_count), C(started_at).
      type: dict
    units:
      description: Each unit's ActiveState (empty where systemd does not run).
      type: dict
    maintenance:
      description: Whether maintenance is on (C(null) when the app has no way to tell).
      type: bool
    lock:
      description:
        - The host's rollback lock (run id, operator, controller, since) and C(age_seconds);
          empty when free.
      type: dict
    backup:
      description:
        - The newest verified set that is not forensic, C(set_id), C(kind), C(created),
          C(age_seconds), C(describe); empty when none.
      type: dict
    backup_sets:
      description: How many complete sets the app has on the host.
      type: int
    problems:
      description: What could not be read, one line each.
      type: list
      elements: str
  sample:
    app: analyticbot
    flags: {ENABLE_TIME_WEIGHTING: "true", API_KEY: "<secret sha256:1a2b3c4d>"}
    code: {method: git, sha: 3f1c..., branch: "", describe: "1.4.0", release: "1.4.0", dirty: false}
    maintenance: false
    lock: {}
    problems: []
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    choose_set,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset.common import (
    now,
    parse_iso,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset.layout import (
    manifests,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.compose import (
    service_containers,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.envfile import (
    DEFAULT_SECRET_KEYS,
    decode,
    is_secret,
    mask,
    read_values,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.files import sha256
from ansible_collections.rollback_ops.rollback.plugins.module_utils.lock import (
    lock_age,
    read_lock,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
    lock_argument_spec,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.systemd import (
    SystemdError,
    show,
    systemd_running,
)

try:
    import docker

    HAS_DOCKER = True
except ImportError:  # reported as a problem when the app has images or containers
    HAS_DOCKER = False

NO_OPTIONAL_LOCKS = dict(GIT_OPTIONAL_LOCKS="0")  # git status must not rewrite the index


def env_values(params, problems):
    """The env file's effective values, or None when there is none to read."""
    path = params["env_file"]
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return read_values(decode(handle.read()))
    except (IOError, OSError) as exc:
        problems.append("env file %s cannot be read: %s" % (path, exc.strerror or exc))
        return None


def flags(params, values):
    """Each key's value (None: the file lacks it); {} when there is no env file to read."""
    if values is None:
        return {}
    patterns = DEFAULT_SECRET_KEYS + list(params["secret_keys"])
    found = {}
    for key in params["keys"]:
        value = values.get(key)
        found[key] = mask(value) if is_secret(key, patterns) else value
    return found


def git_code(module, path, release_tags, problems):
    git = [module.get_bin_path("git", required=True), "-c", "safe.directory=*", "-C", path]

    def run(*args, **kwargs):
        rc, out, _ = module.run_command(git + list(args), **kwargs)
        return out.strip() if rc == 0 else None

    head = run("rev-parse", "HEAD^{commit}", "HEAD^{tree}")
    if not head:
        problems.append("%s is not a git work tree with a commit" % path)
        return {}
    sha, tree = head.splitlines()
    tags = run(
        "for-each-ref",
        "--sort=-v:refname",
        "--format=%(refname:short) %(*tree)%(tree)",
        "refs/tags/" + release_tags,
    )
    # a tag's tree: %(*tree) for an annotated tag (its commit's), %(tree) for a light one
    # (the other is empty); the newest release first, as the code level orders them
    release = next(
        (line.split(" ")[0] for line in (tags or "").splitlines() if line.endswith(" " + tree)),
        "",
    )
    status = run("status", "--porcelain", "--untracked-files=no", environ_update=NO_OPTIONAL_LOCKS)
    return dict(
        method="git",
        sha=sha,
        branch=run("symbolic-ref", "-q", "--short", "HEAD") or "",
        describe=run("describe", "--tags", "--always", sha) or sha[:12],
        release=release,
        dirty=bool(status),
    )


def files_code(path, rels):
    found = {}
    for rel in rels:
        full = os.path.join(path, rel)
        found[rel] = sha256(full) if os.path.isfile(full) else None
    return dict(method="files", files=found)


def code(module, params, problems):
    path = params["code_path"]
    if not path:
        return {}
    if not os.path.isdir(path):
        problems.append("code directory %s not found" % path)
        return {}
    if params["code_method"] == "files":
        return files_code(path, params["code_files"])
    return git_code(module, path, params["release_tags"], problems)


def docker_state(module, params, problems):
    """(images, containers): tag -> image id, service -> containers."""
    if not params["images"] and not params["project_dir"]:
        return {}, {}
    if not HAS_DOCKER:
        problems.append("the docker SDK for Python is not installed on the host (python3-docker)")
        return {}, {}
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # any failure to reach the engine is reported the same way
        problems.append("the Docker engine does not answer: %s" % exc)
        return {}, {}
    images = {}
    for tag in params["images"]:
        try:
            images[tag] = client.images.get(tag).id
        except docker.errors.ImageNotFound:
            images[tag] = ""
    containers = {}
    if not params["project_dir"]:
        return images, containers
    if not os.path.isdir(params["project_dir"]):
        problems.append("compose project directory %s not found" % params["project_dir"])
        return images, containers
    try:
        containers = service_containers(client, params["project_dir"], params["services"])
    except docker.errors.APIError as exc:
        problems.append("the Docker engine could not list the containers: %s" % exc)
    return images, containers


def units(module, names, problems):
    if not names or not systemd_running():
        return {}
    try:
        props = show(module, names, ["ActiveState"])
    except SystemdError as exc:
        problems.append(str(exc))
        return {}
    return dict((unit, props.get(unit, {}).get("ActiveState", "")) for unit in names)


def maintenance(params, values):
    """On, off, or None when the app has neither a flag file nor env values to tell."""
    states = []
    if params["maintenance_file"]:
        states.append(os.path.exists(params["maintenance_file"]))
    if params["maintenance_env"] and values is not None:
        states.append(all(values.get(k) == str(v) for k, v in params["maintenance_env"].items()))
    return any(states) if states else None


def lock(path):
    held = read_lock(path)
    if not held:
        return {}
    age = lock_age(held)
    return dict(held, age_seconds=None if age == float("inf") else int(age))


def backup(params, problems):
    """(the newest verified set that is not forensic, or {}; how many complete sets)."""
    count = 0
    try:
        count = len(manifests(params["root"], params["app"]))
        if not count:
            return {}, 0
        _, manifest = choose_set(params["root"], params["app"])
    except BackupError as exc:
        if "no verified" not in str(exc):
            problems.append(str(exc))
        return {}, count
    created = manifest.get("created", "")
    try:
        age = int((now() - parse_iso(created)).total_seconds())
    except (TypeError, ValueError):
        age = None
    return (
        dict(
            set_id=manifest.get("set_id", ""),
            kind=manifest.get("kind", ""),
            created=created,
            age_seconds=age,
            describe=manifest.get("code", {}).get("describe", ""),
        ),
        count,
    )


def main():
    spec = dict(
        env_file=dict(type="path", default=""),
        keys=dict(type="list", elements="str", default=[], no_log=False),
        secret_keys=dict(type="list", elements="str", default=[], no_log=False),
        code_path=dict(type="path", default=""),
        code_method=dict(type="str", choices=["git", "files"], default="git"),
        release_tags=dict(type="str", default="*"),
        code_files=dict(type="list", elements="str", default=[]),
        images=dict(type="list", elements="str", default=[]),
        project_dir=dict(type="path", default=""),
        services=dict(type="list", elements="str", default=[]),
        units=dict(type="list", elements="str", default=[]),
        maintenance_file=dict(type="path", default=""),
        maintenance_env=dict(type="dict", default={}),
    )
    spec.update(lock_argument_spec())
    spec.update(backupset_argument_spec())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    problems = []
    values = env_values(params, problems)
    images, containers = docker_state(module, params, problems)
    newest, count = backup(params, problems)
    status = dict(
        app=params["app"],
        flags=flags(params, values),
        code=code(module, params, problems),
        images=images,
        containers=containers,
        units=units(module, params["units"], problems),
        maintenance=maintenance(params, values),
        lock=lock(params["lock_path"]),
        backup=newest,
        backup_sets=count,
        problems=problems,
    )
    module.exit_json(changed=False, status=status)


if __name__ == "__main__":
    main()
