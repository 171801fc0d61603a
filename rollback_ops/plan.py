"""The plan of a rollback, read from the playbook itself: what will run on a host, in order.

The plan cannot drift from what the playbook does because it *is* the playbook, loaded by
ansible-core's own classes (``Playbook.load``, ``Play.compile``, role and include loading) on
the controller. No host is contacted, no module runs, no fact is gathered.

Interface (the contract the API builds on)::

    steps(playbook: Path, inventory: Inventory, host: str, extravars: dict,
          *, check_mode: bool = False) -> list[PlanStep]

- ``playbook``: a level playbook (``paths.playbook("flag")`` ...); ``inventory``: an
  :class:`~rollback_ops.inventory.Inventory` from :func:`rollback_ops.inventory.load` (its
  ansible-core ``InventoryManager`` is used); ``host``: one of its host names;
  ``extravars``: the extra variables the run will get, as given (their names are not
  interpreted here). They are data: marked unsafe (``wrap_var``), so a template a person
  typed into one is shown as text and never rendered. ``check_mode``: whether the run will
  be ``--check`` (``ansible_check_mode``).
- The result lists, in the order the play runs them, the tasks of every play that targets
  the host: block, rescue and always sections, ``import_*`` (static) and ``include_*``
  (dynamic: the included role or tasks file is loaded statically for the plan).
- :class:`PlanStep` gives the role (short name, as the live display shows it, "" outside a
  role), the file the task is written in (relative to the collection root where it can be),
  the task's name, its action (FQCN) and ``condition``: the ``when`` text left to decide at
  run time, or None.

What the plan decides before the run, and what it leaves:

- A ``when`` is evaluated (with ansible-core's templar and the host's variables: inventory,
  play vars and vars files, role defaults and vars, block and task vars, the extra vars)
  when every variable it uses, directly or through the templates of other variables, is
  known before the run. A task whose condition is false is left out (so is a task whose
  ``loop`` is known to be empty: it would do nothing). A condition that uses a value only
  the run produces (a ``register``-ed result, a ``set_fact``, the play's live host lists,
  a loop item, a failed task) is kept, as written, in ``condition``.
- Task names are templated the same way: an expression of known variables shows its value
  (``{{ ansible_host }}`` shows the address); one that needs a run-time value stays as
  written.
- Hidden, as the live display hides them (``events.HIDDEN_ACTIONS``) or because they are
  not steps: ``validate_argument_spec``, ``set_fact`` (a fact the next steps use),
  ``include_*``/``import_*`` wrappers (their tasks are listed instead), ``meta`` (Ansible's
  implicit role-end and handler-flush tasks), and the ``fail`` of a ``rescue`` (the roles'
  re-fail with the failed task's name: it only reports a failure). ``debug`` tasks are
  shown: in these playbooks each one says why a step is skipped ("Say why ..."), which is
  what a person reading the plan wants to know. Handlers are not listed (only run when
  notified).

Loading a playbook (~0.2 s) is done once per playbook and inventory in a process: the hosts
of one run share it (:func:`steps` for each host re-evaluates only the conditions).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rollback_ops import paths
from rollback_ops.exceptions import ConfigError
from rollback_ops.inventory import Inventory, load_collections
from rollback_ops.text import short

# actions that are not steps (matched on the last part of the FQCN)
HIDDEN = (
    "validate_argument_spec",
    "set_fact",
    "include_role",
    "include_tasks",
    "import_role",
    "import_tasks",
    "meta",
)
# variables that only exist while the play runs
RUNTIME_VARIABLES = frozenset(
    {
        "ansible_play_hosts",
        "ansible_play_hosts_all",
        "ansible_play_batch",
        "ansible_failed_task",
        "ansible_failed_result",
        "ansible_facts",
        "ansible_loop",
        "ansible_loop_var",
        "ansible_index_var",
        "item",
    }
)
RESCUE_CONDITION = "a step of its block failed"
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
_UNKNOWN = object()  # decided by the run


@dataclass(frozen=True)
class PlanStep:
    """One task the playbook will run on the host."""

    name: str  # the task's name, templated where it can be before the run
    action: str  # the module or action, by FQCN
    role: str = ""  # the role's short name as the live display shows it, "" outside a role
    file: str = ""  # where the task is written (relative to the collection root if under it)
    condition: str | None = None  # the `when` left to the run ("a and b"), None: always

    @property
    def label(self) -> str:
        """The step as the live display names it (events.step_name)."""
        return f"{self.role}: {self.name}" if self.role else self.name


@dataclass(frozen=True)
class _Entry:
    """A task of the expanded playbook with the conditions of the dynamic includes above it
    (ansible-core does not pass an include's `when` down to the included tasks)."""

    play: Any
    task: Any
    include_conditions: tuple[str, ...]
    rescue: bool


@dataclass
class _Loaded:
    manager: Any  # the inventory's InventoryManager this was loaded for (kept: identity check)
    stamp: tuple[int, ...]
    loader: Any
    variables: Any
    entries: list[_Entry]
    produced: frozenset[str]  # variables the play itself sets while running (register, set_fact)
    results: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # see _Scope


_CACHE: dict[str, _Loaded] = {}


def steps(
    playbook: Path,
    inventory: Inventory,
    host: str,
    extravars: Mapping[str, Any],
    *,
    check_mode: bool = False,
) -> list[PlanStep]:
    """The steps ``playbook`` will run on ``host``, in order (see the module docstring)."""
    if inventory._manager is None:
        raise ConfigError(f"inventory {inventory.name}: not loaded by ansible-core, no plan")
    if host not in inventory.hosts:
        raise ConfigError(f"host {short(host)} is not in inventory {inventory.name}")
    from ansible.errors import AnsibleError
    from ansible.utils.unsafe_proxy import wrap_var

    loaded = _load(Path(playbook), inventory._manager)
    target = inventory._manager.get_host(host)
    data = wrap_var(
        {**_controller_results(loaded, inventory, host), **extravars}
    )  # never templated
    out: list[PlanStep] = []
    plays_for_host: dict[int, bool] = {}
    for entry in loaded.entries:
        key = id(entry.play)
        if key not in plays_for_host:
            plays_for_host[key] = _targets(entry.play, host, loaded, data)
        if not plays_for_host[key] or _hidden(entry):
            continue
        try:
            step = _step(entry, target, loaded, data, check_mode)
        except AnsibleError as exc:
            raise ConfigError(f"{_where(entry.task)}: {_first_line(exc)}") from None
        if step is not None:
            out.append(step)
    return out


def _step(
    entry: _Entry, host: Any, loaded: _Loaded, data: dict[str, Any], check_mode: bool
) -> PlanStep | None:
    task = entry.task
    variables = loaded.variables.get_vars(play=entry.play, host=host, task=task)
    variables.update(data)  # extra vars win over everything, as in ansible-playbook
    variables["ansible_check_mode"] = check_mode
    unknown = (loaded.produced | RUNTIME_VARIABLES | _loop_vars(task)) - set(data)
    scope = _Scope(loaded.loader, variables, frozenset(unknown), frozenset(data), loaded.results)

    left: list[str] = []
    for condition in _conditions(entry):
        if isinstance(condition, bool):
            if not condition:
                return None
            continue
        text = str(condition).strip()
        decided = scope.evaluate(text, conditional=True)
        if decided is _UNKNOWN:
            left.append(text)
        elif not decided:
            return None
    if entry.rescue:
        left.insert(0, RESCUE_CONDITION)
    if scope.known_empty_loop(task):
        return None
    return PlanStep(
        name=scope.name(str(task.name or task.action)),
        action=_action(task),
        role=str(task._role._role_name) if task._role else "",
        file=_relative(_where(task).rsplit(":", 1)[0]),
        condition=" and ".join(_parenthesized(c, len(left)) for c in left) or None,
    )


class _Scope:
    """The host's variables for one task, and which of them the run has yet to produce.

    Results are shared (``results``) between the tasks and hosts of a plan: a template
    gives the same result wherever the raw values of every variable it uses are the same
    (compiling a template is most of the time a plan takes).
    """

    def __init__(
        self,
        loader: Any,
        variables: dict[str, Any],
        unknown: frozenset[str],
        data: frozenset[str],
        results: dict[tuple[Any, ...], Any],
    ) -> None:
        self.loader = loader
        self.variables = variables
        self.unknown = unknown
        self.data = data  # the extra vars: values, never templates
        self.results = results
        self._templar: Any = None

    def uses(self, text: str) -> frozenset[str] | None:
        """The variables a template or condition uses, directly or through the templates of
        other variables; None when one of them is a value the run produces."""
        pending, seen = [text], set[str]()
        while pending:
            names = _names(pending.pop())
            if names is None or names & self.unknown:
                return None
            for name in names - seen:
                seen.add(name)
                if name in self.variables and name not in self.data:
                    pending.extend(_templates(self.variables[name]))
        return frozenset(seen)

    def evaluate(self, text: str, conditional: bool) -> Any:
        """The template's value (or the condition's truth) before the run, or _UNKNOWN."""
        names = self.uses(text)
        if names is None:
            return _UNKNOWN
        key = (
            conditional,
            text,
            tuple(sorted((n, repr(self.variables.get(n, _UNKNOWN))) for n in names)),
        )
        if key not in self.results:
            if len(self.results) > 20_000:  # a long-lived process: keep it bounded
                self.results.clear()
            self.results[key] = self._evaluate(text, conditional)
        return self.results[key]

    def _evaluate(self, text: str, conditional: bool) -> Any:
        if self._templar is None:
            from ansible.template import Templar

            self._templar = Templar(loader=self.loader, variables=self.variables)
        try:
            if conditional:
                return bool(self._templar.evaluate_conditional(_trusted(text)))
            return self._templar.template(_trusted(text))
        except Exception:  # what fails here fails (or is decided) in the run
            return _UNKNOWN

    def name(self, raw: str) -> str:
        def render(match: re.Match[str]) -> str:
            value = self.evaluate(match.group(0), conditional=False)
            return match.group(0) if value is _UNKNOWN else str(value)

        return _EXPRESSION.sub(render, raw)

    def known_empty_loop(self, task: Any) -> bool:
        loop = task.loop
        if loop is None or task.loop_with:
            return False
        if isinstance(loop, str):
            loop = self.evaluate(loop, conditional=False)
        return isinstance(loop, list | tuple) and len(loop) == 0


def _conditions(entry: _Entry) -> list[Any]:
    own = list(entry.task.when or [])
    return own + [c for c in entry.include_conditions if c not in own]


def _parenthesized(condition: str, count: int) -> str:
    return f"({condition})" if count > 1 and " or " in condition else condition


def _hidden(entry: _Entry) -> bool:
    action = _action(entry.task).rsplit(".", 1)[-1]
    return action in HIDDEN or (entry.rescue and action == "fail")


def _action(task: Any) -> str:
    return str(getattr(task, "resolved_action", None) or task.action)


def _loop_vars(task: Any) -> set[str]:
    control = getattr(task, "loop_control", None)
    names = {"item"}
    for attribute in ("loop_var", "index_var"):
        value = getattr(control, attribute, None) if control else None
        if value:
            names.add(str(value))
    return names


def _targets(play: Any, host: str, loaded: _Loaded, data: dict[str, Any]) -> bool:
    """Whether the play's ``hosts`` pattern (templated with the extra vars) holds the host."""
    from ansible.template import Templar

    variables = {**loaded.variables.get_vars(play=play), **data}
    try:
        pattern = Templar(loader=loaded.loader, variables=variables).template(play.hosts)
        matched = loaded.manager.get_hosts(pattern)
    except Exception:  # decided by the run
        return True
    return host in {str(h.name) for h in matched}


# -- loading -------------------------------------------------------------------------------


def _load(playbook: Path, manager: Any) -> _Loaded:
    playbook = playbook.resolve()
    stamp = _stamp(playbook)
    cached = _CACHE.get(str(playbook))
    if cached is not None and cached.manager is manager and cached.stamp == stamp:
        return cached
    if not playbook.is_file():
        raise ConfigError(f"playbook {playbook}: no such file")
    load_collections()
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook import Playbook
    from ansible.vars.manager import VariableManager

    class _Loader(DataLoader):  # type: ignore[misc]
        """Reads each vars file once for all the tasks of the plan (ansible-playbook reads the
        play's vars files again for every task; they do not change while planning)."""

        def load_from_file(self, file_name: str, cache: str = "all", **kwargs: Any) -> Any:
            return super().load_from_file(file_name, cache="all", **kwargs)

    loader = _Loader()
    variables = VariableManager(loader=loader, inventory=manager)
    try:
        plays = Playbook.load(str(playbook), variable_manager=variables, loader=loader).get_plays()
        entries = [
            entry
            for play in plays
            for entry in _expand(play.compile(), play, loader, variables, (), False)
        ]
    except AnsibleError as exc:
        raise ConfigError(f"playbook {playbook}: {_first_line(exc)}") from None
    produced = frozenset(_produced(e.task for e in entries))
    loaded = _Loaded(manager, stamp, loader, variables, entries, produced)
    _CACHE[str(playbook)] = loaded
    return loaded


def _stamp(playbook: Path) -> tuple[int, ...]:
    """The playbook's and the content's modification times: a changed file is loaded again."""
    root = paths.ansible_root()
    files = [playbook, *sorted(root.glob("playbooks/**/*.yml")), *root.glob("roles/*/*/*.yml")]
    return tuple(p.stat().st_mtime_ns for p in files if p.exists())


def _expand(
    blocks: Iterable[Any],
    play: Any,
    loader: Any,
    variables: Any,
    conditions: tuple[str, ...],
    rescue: bool,
) -> Iterator[_Entry]:
    """Every task of the blocks in run order; dynamic includes loaded in place."""
    from ansible.playbook.block import Block
    from ansible.playbook.role_include import IncludeRole
    from ansible.playbook.task_include import TaskInclude

    for block in blocks:
        for section in ("block", "rescue", "always"):
            in_rescue = rescue or section == "rescue"
            for task in getattr(block, section) or []:
                if isinstance(task, Block):
                    yield from _expand([task], play, loader, variables, conditions, in_rescue)
                    continue
                yield _Entry(play, task, conditions, in_rescue)
                if not isinstance(task, TaskInclude) or task.statically_loaded:
                    continue
                below = conditions + tuple(str(c) for c in task.when or [] if c is not True)
                if isinstance(task, IncludeRole):
                    included, _handlers = task.get_block_list(
                        play=play, variable_manager=variables, loader=loader
                    )
                else:
                    included = _included_tasks(task, play, loader, variables)
                yield from _expand(included, play, loader, variables, below, in_rescue)


def _included_tasks(task: Any, play: Any, loader: Any, variables: Any) -> list[Any]:
    """The blocks of an ``include_tasks`` file, loaded as the strategy loads them."""
    from ansible.errors import AnsibleError
    from ansible.playbook.helpers import load_list_of_blocks

    raw = str(task.args.get("_raw_params") or task.args.get("file") or "")
    if "{{" in raw:
        raise AnsibleError(f"include_tasks {raw}: a templated file name cannot be planned")
    here = Path(_where(task).rsplit(":", 1)[0]).parent
    candidates = [here / raw]
    if task._role is not None:
        candidates.append(Path(task._role._role_path) / "tasks" / raw)
    candidates.append(Path(loader.get_basedir()) / raw)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise AnsibleError(f"include_tasks {raw}: no such file")
    data = loader.load_from_file(str(found), **_trusted_load())
    if not data:
        return []
    copy = task.copy(exclude_parent=False)
    return list(
        load_list_of_blocks(
            data,
            play=play,
            parent_block=copy.build_parent_block(),
            role=task._role,
            loader=loader,
            variable_manager=variables,
        )
    )


def _trusted_load() -> dict[str, Any]:
    import inspect

    from ansible.parsing.dataloader import DataLoader

    params = inspect.signature(DataLoader.load_from_file).parameters
    return {"trusted_as_template": True} if "trusted_as_template" in params else {}


# actions that run on the controller only, deterministically from the inventory: their
# registered results are computed here, as the run will (action -> the result's function)
CONTROLLER_ACTIONS = ("rollback_ops.rollback.app_spec",)


def _controller_results(loaded: _Loaded, inventory: Inventory, host: str) -> dict[str, Any]:
    """What the controller-side actions will register for this host: the app role's
    validated app (``__app_spec``), from the same validator the action plugin runs."""
    from rollback_ops import appspec

    out: dict[str, Any] = {}
    for entry in loaded.entries:
        task = entry.task
        if task.register and _action(task) in CONTROLLER_ACTIONS:
            app, problems = appspec.validator.validate_app(
                inventory.hosts[host].vars.get("rollback_app")
            )
            if problems:  # the run stops there; the plan's caller has refused already
                continue
            out[str(task.register)] = {
                "app": app,
                "secret_keys": appspec.validator.secret_keys(app),
                "declared_keys": appspec.validator.declared_keys(app),
                "changed": False,
                "failed": False,
            }
    return out


def _produced(tasks: Iterable[Any]) -> set[str]:
    """The variables tasks set while the play runs: registered results and facts (but what
    the controller-side actions register: known before the run, see _controller_results)."""
    names: set[str] = set()
    for task in tasks:
        if task.register and _action(task) not in CONTROLLER_ACTIONS:
            names.add(str(task.register))
        if _action(task).rsplit(".", 1)[-1] == "set_fact":
            names |= {str(k) for k in task.args if k != "cacheable"}
    return names


# -- templates ------------------------------------------------------------------------------


class _AnyName(dict[str, Any]):
    """Filters and tests for reading a template's variables: every name exists (Ansible's,
    the collections'), since only the variables matter here."""

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: str, default: Any = None) -> Any:
        return _no_op


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


@lru_cache(maxsize=1)
def _jinja() -> Any:
    import jinja2

    # only parsed, never rendered: autoescape is of no concern
    environment = jinja2.Environment(autoescape=False)  # noqa: S701
    environment.filters = _AnyName()
    environment.tests = _AnyName()
    return environment


@lru_cache(maxsize=4096)
def _names_cached(text: str) -> frozenset[str] | None:
    import jinja2
    from jinja2 import meta

    source = text if ("{{" in text or "{%" in text) else "{{ " + text + " }}"
    try:
        return frozenset(meta.find_undeclared_variables(_jinja().parse(source)))
    except jinja2.TemplateError:
        return None  # not readable here: assume it needs the run


def _names(text: str) -> frozenset[str] | None:
    return _names_cached(str(text))


def _templates(value: Any) -> Iterator[str]:
    """The template strings inside a variable's (raw) value."""
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            yield str(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _templates(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _templates(item)


def _trusted(text: str) -> str:
    """A template written in the playbook (not a value someone typed) marked as such."""
    try:
        from ansible.template import trust_as_template
    except ImportError:  # ansible-core before 2.19 templates every str
        return text
    trusted: str = trust_as_template(text)  # a tagged str: str() would drop the tag
    return trusted


# -- text ----------------------------------------------------------------------------------


def _where(task: Any) -> str:
    return str(task.get_path() or "")


def _relative(path: str) -> str:
    if not path:
        return ""
    resolved = Path(os.path.realpath(path))
    try:
        return str(resolved.relative_to(paths.ansible_root().resolve()))
    except ValueError:
        return str(resolved)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return short(text.splitlines()[0] if text else type(exc).__name__, 300)
