# -*- coding: utf-8 -*-
# The app schema (rollback_app, rollback_notify, rollback_thresholds), validated: the argument
# spec in roles/app/meta/argument_specs.yml run through ansible-core's ArgumentSpecValidator,
# level by level so that every problem is named by its key path
# (``rollback_app.databases[1].engine``), plus the cross-field rules the spec format cannot
# express, as small named functions. Controller side only, stdlib and ansible-core: the
# action plugin rollback_ops.rollback.app_spec imports it from the collection and
# rollback_ops/appspec.py loads this same file by path.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import fnmatch
import os
import re
import reprlib

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import (
    ArgumentTypeError,
    ArgumentValueError,
    RequiredError,
)

SPEC_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "roles",
    "app",
    "meta",
    "argument_specs.yml",
)
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: not before a final newline
# what shells, systemd and dotenv do not take inside a one-line value: control characters
# but TAB, and the characters Python's splitlines() (and some editors) break lines on
BAD_VALUE_CHARS = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# a key matching one of these is a secret: its values are shown masked everywhere
DEFAULT_SECRET_KEYS = ("*_KEY", "*_TOKEN", "*PASSWORD*", "*SECRET*")
DB_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
# a flag key of a command flag backend (rollback_app.flag_backend): an env key, or one that
# also names a tenant or a scope (acme:enable_harmonization, bot.agent/max_products)
FLAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*\Z")


def env_value_problem(value):
    """Why a value cannot be written to an env file as one line ("" when it can)."""
    bad = BAD_VALUE_CHARS.search(value)
    if bad:
        return (
            "holds the control character %r (at %d); only TAB is allowed in a one-line env value"
            % (bad.group(), bad.start())
        )
    return ""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4


def show(value):
    """A value in a message: its repr, bounded (a huge or recursive value included)."""
    if isinstance(value, str):
        value = str(value)  # Ansible's tagged strings show as plain ones
    try:
        return _REPR.repr(value)
    except Exception:  # a message must never fail
        return "<%s>" % kind(value)


def kind(value):
    """What a value is, in the words of the messages."""
    if value is None:
        return "null"
    for cls, word in ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string")):
        if isinstance(value, cls):
            return word
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


# ---------------------------------------------------------------------------------------
# the spec file


_SPECS = {}


def load_spec(path=SPEC_FILE):
    """The ``main`` entry point's options of the spec file: {variable: option spec}."""
    if path not in _SPECS:
        import yaml  # ansible-core's own dependency

        with open(path, "rb") as handle:
            data = yaml.safe_load(handle)
        _SPECS[path] = data["argument_specs"]["main"]["options"]
    return _SPECS[path]


# ---------------------------------------------------------------------------------------
# strict types: the controller takes what a person meant, not what Ansible can convert
# (5 is not "5", yes is not true, "a,b" is not a list, true is not the string "True")


def _strict(name, accepts, convert=None):
    def check(value):
        if isinstance(value, bool) and bool not in accepts:
            raise TypeError(name)
        if not isinstance(value, accepts):
            raise TypeError(name)
        return convert(value) if convert else value

    check.__name__ = name
    return check


STRICT = {
    "str": _strict("str", (str, int, float), str),
    "path": _strict("path", (str,), str),
    "int": _strict("int", (int,)),
    "float": _strict("float", (int, float), float),
    "bool": _strict("bool", (bool,)),
    "list": _strict("list", (list, tuple), list),
    "dict": _strict("dict", (dict,), dict),
    "raw": lambda value: value,
}
WANTED = {
    "str": "a string",
    "path": "an absolute path",
    "int": "a whole number >= 0",
    "float": "a number >= 0",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
    "raw": "a value",
}
_FLAT_KEYS = ("required", "default", "choices", "no_log")


def _flat(opt):
    """One option for the validator: its own checks, nested options and elements left to us."""
    out = dict((k, opt[k]) for k in _FLAT_KEYS if k in opt)
    out["type"] = STRICT[opt.get("type", "str")]
    return out


def _words(choices):
    names = [str(c) for c in choices]
    if len(names) == 2:
        return "%s or %s" % tuple(names)
    return "one of " + ", ".join(names)


def _message(error, opt, value):
    if isinstance(error, RequiredError):
        return "is required"
    if isinstance(error, ArgumentTypeError):
        wanted = WANTED[opt.get("type", "str")]
        if opt.get("type") == "list" and opt.get("elements") in ("str", "path"):
            wanted = "a list of strings"
        shown = (
            show(value) if kind(value) in ("string", "number", "boolean") else "a " + kind(value)
        )
        return "must be %s, not %s" % (wanted, shown)
    if isinstance(error, ArgumentValueError):
        return "must be %s, not %s" % (_words(opt.get("choices", [])), show(value))
    return str(error.msg)


_VALIDATORS = {}


class _Walker:
    """Validates a value against an option spec, level by level, with ArgumentSpecValidator,
    collecting (key path, message) problems and building the normalized value: what was set
    plus the spec's defaults (a mapping's default, {}, gets its options' defaults); an option
    without a default that is not set stays absent."""

    def __init__(self):
        self.problems = []

    def problem(self, path, message):
        self.problems.append((path, message))

    def _validator(self, key, spec, **constraints):
        """One validator per distinct check (key names it), reused across values."""
        key = (key, repr(sorted(constraints.items())))
        if key not in _VALIDATORS:
            _VALIDATORS[key] = ArgumentSpecValidator(spec, **constraints)
        return _VALIDATORS[key]

    def value(self, opt, value, path):
        """One option's value, already set (not None)."""
        flat = _flat(dict(opt, required=False))
        key = (opt.get("type", "str"), repr(opt.get("choices")))
        result = self._validator(key, {"value": flat}).validate({"value": value})
        if result.errors.errors:
            self.problem(path, _message(result.errors[0], opt, value))
            return None
        return self._nested(opt, result.validated_parameters["value"], path)

    def _nested(self, opt, value, path):
        kind_ = opt.get("type", "str")
        if kind_ == "path" and not _absolute(value):
            self.problem(path, "must be an absolute path, not %s" % show(value))
            return None
        if kind_ in ("int", "float") and value < 0:
            self.problem(path, "must be %s, not %s" % (WANTED[kind_], show(value)))
            return None
        if kind_ == "dict" and "options" in opt:
            return self.mapping(opt, value, path)
        if kind_ == "list" and "elements" in opt:
            element = dict(opt, type=opt["elements"])
            element.pop("elements")
            element.pop("default", None)
            items = []
            for i, item in enumerate(value):
                where = "%s[%d]" % (path, i)
                if item is None or (isinstance(item, str) and not item):
                    self.problem(where, "must not be empty")
                    continue
                if opt["elements"] == "str" and not isinstance(item, str):  # a name, not 1
                    self.problem(where, "must be a string, not %s" % show(item))
                    continue
                checked = self.value(element, item, where)
                if checked is not None:
                    items.append(checked)
            return items
        return value

    def mapping(self, container, params, path):
        """A mapping against ``container['options']`` and its constraints."""
        options = container["options"]
        if not isinstance(params, dict):
            self.problem(path, "must be a mapping, not %s" % show(params))
            return None
        given = dict((str(k), v) for k, v in params.items() if v is not None)
        for unknown in sorted(set(given) - set(options)):
            self.problem(
                "%s.%s" % (path, unknown),
                "unknown key (allowed: %s)" % ", ".join(sorted(options)),
            )
            del given[unknown]
        self._constraints(container, given, path)
        out = {}
        for name, opt in options.items():
            where = "%s.%s" % (path, name)
            if name in given:
                value = self.value(opt, given[name], where)
            elif opt.get("required"):
                self.problem(where, "is required")
                value = None
            else:
                value = None
            if value is None and "default" in opt:  # a mapping's default gets its own
                value = self._nested(opt, copy.deepcopy(opt["default"]), where)
            if value is not None:
                out[name] = value
        return out

    def _constraints(self, container, given, path):
        """mutually_exclusive, required_one_of, required_together and required_if of one
        level, each run as its own ArgumentSpecValidator check so its message names it."""
        spec = dict((name, {"type": "raw"}) for name in container["options"])
        exclusive = [tuple(g) for g in container.get("mutually_exclusive", [])]
        one_of = [tuple(g) for g in container.get("required_one_of", [])]
        for group in exclusive:
            if self._fails(spec, given, mutually_exclusive=[list(group)]):
                word = "needs exactly one of" if group in one_of else "give only one of"
                self.problem(path, "%s %s" % (word, " or ".join(group)))
        for group in one_of:
            if self._fails(spec, given, required_one_of=[list(group)]):
                word = "needs exactly one of" if group in exclusive else "needs one of"
                self.problem(path, "%s %s" % (word, " or ".join(group)))
        for group in container.get("required_together", []):
            if self._fails(spec, given, required_together=[group]):
                self.problem(path, "%s go together" % " and ".join(group))
        for rule in container.get("required_if", []):
            key, wanted, needed = rule[0], rule[1], rule[2]
            if self._fails(spec, given, required_if=[rule]):
                for name in needed:
                    if name not in given:
                        self.problem(
                            "%s.%s" % (path, name), "is required when %s is %s" % (key, wanted)
                        )

    def _fails(self, spec, given, **constraint):
        validator = self._validator(tuple(sorted(spec)), spec, **constraint)
        return bool(validator.validate(given).errors.errors)


def _absolute(value):
    return not value or value.startswith("/") or value.startswith("{{")


# ---------------------------------------------------------------------------------------
# cross-field rules: what the spec format cannot express. Each takes the normalized app
# (and the raw one, for what normalization hides) and yields (key path, message).


def env_keys(app, raw):
    """Keys written to the env file are env keys: letters, digits and _."""
    keys = []
    flag_keys = []
    if app.get("master_switch"):
        flag_keys.append(("master_switch", app["master_switch"]))
    flag_keys += [("flags[%d]" % i, key) for i, key in enumerate(app.get("flags", []))]
    if _get(app, "flag_backend.type") == "command":
        for path, key in flag_keys:
            if not isinstance(key, str) or not FLAG_KEY.match(key):
                yield path, "%s is not a valid flag key (letters, digits, _ . : / -)" % show(key)
    else:
        keys += flag_keys
    for section in ("emergency", "maintenance.env", "maintenance.env_off"):
        keys += [("%s.%s" % (section, key), key) for key in _get(app, section)]
    for path, key in keys:
        if not isinstance(key, str) or not ENV_KEY.match(key):
            yield path, "%s is not a valid env key (letters, digits, _)" % show(key)
    for i, db in enumerate(app.get("databases", [])):
        name = db.get("password_env", "")
        if name and not ENV_KEY.match(name):
            yield "databases[%d].password_env" % i, "%s is not an env variable name" % show(name)


def env_values(app, raw):
    """Values written to the env file: a string, number or boolean, on one line."""
    if isinstance(raw, dict) and "master_switch_off" in raw:
        problem = _env_value(raw["master_switch_off"])
        if problem:
            yield "master_switch_off", problem
    for section in ("emergency", "maintenance.env", "maintenance.env_off"):
        for key, value in _get(app, section).items():
            problem = _env_value(value)
            if problem:
                yield "%s.%s" % (section, key), problem


def _env_value(value):
    if value is None:
        return "has no value (null): write the value, quoted if need be"
    if not isinstance(value, (str, int, float)):
        return "must be a string, number or boolean, not a %s" % kind(value)
    return env_value_problem(_env_text(value))


def _env_text(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


def patterns_compile(app, raw):
    """The log patterns are regular expressions."""
    for path in ("log.error_pattern", "docker.log_error_pattern"):
        pattern = _get(app, path)
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                yield path, "not a valid regular expression: %s" % exc


def _inside_code(value):
    return not (value.startswith("/") or ".." in value.split("/"))


def code_sources(app, raw):
    """code.git paths and remove, and code.archive dir and to: inside code.path; remove_added
    needs paths."""
    code = app.get("code", {})
    git, archive = code.get("git"), code.get("archive")
    if git is not None:
        for key in ("paths", "remove"):
            for i, value in enumerate(git.get(key, [])):
                if not _inside_code(value):
                    yield (
                        "code.git.%s[%d]" % (key, i),
                        "%s must be relative to code.path, inside it" % show(value),
                    )
        if git.get("remove_added") and not git.get("paths"):
            yield "code.git.remove_added", "needs code.git.paths: the paths to remove under"
    if archive is not None:
        for key in ("dir", "to"):
            value = archive.get(key, "")
            if not value or not _inside_code(value):
                yield (
                    "code.archive.%s" % key,
                    "%s must be relative to code.path, inside it" % show(value),
                )


def code_files(app, raw):
    """code.files: paths inside code.path, and something to restore or remove."""
    files = app.get("code", {}).get("files")
    if files is None:
        return
    for key in ("restore", "remove"):
        for i, value in enumerate(files.get(key, [])):
            if value.startswith("/") or ".." in value.split("/"):
                yield (
                    "code.files.%s[%d]" % (key, i),
                    "%s must be relative to code.path, inside it" % show(value),
                )
    if not files.get("restore") and not files.get("remove"):
        yield "code.files", "lists nothing to restore or remove"


def maintenance_env(app, raw):
    """maintenance.env is set in env_file, and env_off turns the same keys back."""
    maintenance = app.get("maintenance", {})
    env, env_off = maintenance.get("env", {}), maintenance.get("env_off", {})
    if env and not app.get("env_file"):
        yield "maintenance.env", "needs rollback_app.env_file to set the values in"
    if set(env) != set(env_off):
        yield "maintenance.env_off", "must set the same keys as maintenance.env"


def config_files_backed_up(app, raw):
    """Each config file is in backup.files, so a backup set holds it."""
    backed_up = set(_get(app, "backup.files") or [])
    for i, path in enumerate(_get(app, "config.files") or []):
        if path not in backed_up:
            yield "config.files[%d]" % i, "%s is not in backup.files, so no set holds it" % path


CRON_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def crontabs(app, raw):
    """backup.crontabs: user names, and files directly under /etc/cron.d/ (cron reads no
    other; a name with a dot is ignored by cron)."""
    for i, user in enumerate(_get(app, "backup.crontabs.users") or []):
        if not CRON_USER.match(user):
            yield "backup.crontabs.users[%d]" % i, "%r is not a user name" % user
    for i, path in enumerate(_get(app, "backup.crontabs.files") or []):
        if os.path.dirname(path) != "/etc/cron.d" or not os.path.basename(path):
            yield (
                "backup.crontabs.files[%d]" % i,
                "%s is not a file directly under /etc/cron.d/" % path,
            )


def database_names(app, raw):
    """Databases have unique simple names (they name the dumps in a set)."""
    seen = set()
    for i, db in enumerate(app.get("databases", [])):
        name = db.get("name", "")
        if name and (not DB_NAME.match(name) or name in seen):
            yield "databases[%d].name" % i, "%s must be unique and a simple name" % show(name)
        seen.add(name)


EXTERNAL_FORMAT_ENGINES = {
    "sqlite": "sqlite",
    "postgresql_custom": "postgresql",
    "postgresql_plain": "postgresql",
    "mysqldump": "mysql",
}


def external_backups(app, raw):
    """An external backup's glob is absolute and its format restores the database's engine."""
    for i, db in enumerate(app.get("databases", [])):
        ext = db.get("external_backups") or {}
        if not ext:
            continue
        where = "databases[%d].external_backups" % i
        if not str(ext.get("glob", "")).startswith("/"):
            yield where + ".glob", "%s is not an absolute path" % show(ext.get("glob"))
        fmt = ext.get("format")
        if fmt and EXTERNAL_FORMAT_ENGINES.get(fmt) != db.get("engine"):
            yield (
                where + ".format",
                "a %s backup cannot restore a %s database"
                % (
                    fmt,
                    db.get("engine"),
                ),
            )


def flag_backend(app, raw):
    """A command flag backend: a get argv with {key}, a set argv with {key} and {value}, no
    secret flag (its value would be in argv); an env backend has no commands."""
    backend = app.get("flag_backend") or {}
    where = "flag_backend"
    if backend.get("type", "env") != "command":
        for key in ("get", "set"):
            if backend.get(key):
                yield "%s.%s" % (where, key), "is for type command (type is env)"
        return
    for key, needed in (("get", ("{key}",)), ("set", ("{key}", "{value}"))):
        argv = backend.get(key) or []
        if not argv or not str(argv[0]).strip():
            yield "%s.%s" % (where, key), "must be a non-empty argv list (the program first)"
            continue
        for placeholder in needed:
            if not any(placeholder in str(a) for a in argv):
                yield "%s.%s" % (where, key), "must hold %s where it goes" % placeholder
    if backend.get("timeout", 1) <= 0:
        yield where + ".timeout", "must be at least 1 second"
    patterns = secret_keys(app)
    keys = ([app["master_switch"]] if app.get("master_switch") else []) + list(app.get("flags", []))
    for key in keys:
        if isinstance(key, str) and any(fnmatch.fnmatchcase(key, p) for p in patterns):
            yield (
                where,
                "flag %s is secret: a command backend would put its value in argv" % show(key),
            )


def config_rows(app, raw):
    """Config rows: unique simple names, a dump argv, a load argv holding {file}."""
    seen = set()
    for i, row in enumerate(_get(app, "config.rows") or []):
        where = "config.rows[%d]" % i
        name = row.get("name", "")
        if not DB_NAME.match(name) or name in (".", "..") or name in seen:
            yield where + ".name", "%s must be unique and a simple file name" % show(name)
        seen.add(name)
        for key in ("dump", "load"):
            argv = row.get(key) or []
            if not argv or not str(argv[0]).strip():
                yield "%s.%s" % (where, key), "must be a non-empty argv list (the program first)"
        if row.get("load") and not any("{file}" in str(a) for a in row["load"]):
            yield where + ".load", "must hold {file} where the file's path goes"
        if row.get("timeout", 1) <= 0:
            yield where + ".timeout", "must be at least 1 second"


def cache_commands(app, raw):
    """A cache command is an argv with at least the program."""
    for i, cache in enumerate(_get(app, "config.caches") or []):
        if "command" in cache and not cache["command"]:
            yield "config.caches[%d].command" % i, "must be a non-empty argv list"


PROCEDURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# what a procedure may not replace: the app's identity, and the procedures themselves
NOT_IN_PROCEDURES = ("name", "procedures")


def procedure_app(raw, name):
    """The raw app a procedure runs with: the procedure's keys (but description) in place
    of the app's, top-level key by top-level key; no procedures."""
    procedure = raw["procedures"][name]
    merged = dict((k, v) for k, v in raw.items() if k != "procedures")
    merged.update((k, v) for k, v in procedure.items() if k != "description")
    return merged


def procedures(app, raw):
    """Each procedure: a simple name, a mapping of a description and app keys (but name and
    procedures), each valid as that key of the app (the same schema and rules), with the
    problems its keys bring named under procedures.NAME."""
    declared = app.get("procedures") or {}
    if not declared:
        return
    allowed = [k for k in load_spec()["rollback_app"]["options"] if k not in NOT_IN_PROCEDURES]
    base = dict((k, v) for k, v in raw.items() if k != "procedures")
    _, base_problems = validate_app(base)
    for name, procedure in declared.items():
        where = "procedures.%s" % name
        if not isinstance(name, str) or not PROCEDURE_NAME.match(name):
            yield "procedures", "%s is not a simple name (letters, digits, _ . -)" % show(name)
            continue
        if not isinstance(procedure, dict):
            yield where, "must be a mapping, not %s" % show(procedure)
            continue
        unknown = sorted(str(k) for k in procedure if k != "description" and k not in allowed)
        for key in unknown:
            yield (
                "%s.%s" % (where, key),
                "unknown key (allowed: description, %s)" % ", ".join(sorted(allowed)),
            )
        if not isinstance(procedure.get("description", ""), str):
            yield where + ".description", "must be a string"
        overrides = [k for k in procedure if k != "description" and k in allowed]
        if not overrides:
            yield where, "replaces no key of the app (give code, or another key)"
            continue
        if unknown:
            continue
        _, found = validate_app(procedure_app(raw, name))
        for path, message in found:
            if (path, message) in base_problems:
                continue
            rest = path[len("rollback_app.") :] if path.startswith("rollback_app.") else path
            if rest.split(".")[0].split("[")[0] in overrides:
                yield "%s.%s" % (where, rest), message
            else:
                yield where, "with it, %s: %s" % (rest, message)


def with_procedure(raw, name):
    """(the normalized app a procedure runs with, problems); an unknown name is a problem
    listing the declared ones. An empty name is the app itself."""
    app, problems = validate_app(raw)
    if app is None or problems or not name:
        return app, problems
    declared = sorted(app.get("procedures") or {})
    if name not in declared:
        return None, [
            (
                "rollback_app.procedures",
                "no procedure %s for app %s (declared: %s)"
                % (show(name), app["name"], ", ".join(declared) or "none"),
            )
        ]
    merged, problems = validate_app(procedure_app(raw, name))
    if merged is not None:
        merged["procedures"] = app["procedures"]
    return merged, problems


def _hooks_utils():
    """plugins/module_utils/hooks.py: by the collection's name, or beside this file when this
    file was itself loaded by path (rollback_ops/appspec.py)."""
    try:
        from ansible_collections.rollback_ops.rollback.plugins.module_utils import hooks
    except ImportError:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.py")
        spec = importlib.util.spec_from_file_location("rollback_ops_hooks_utils", path)
        hooks = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(hooks)
    return hooks


def hook_rules(app, raw):
    """Hooks: unique names, an argv, a known step, and levels that have that step."""
    for i, key, message in _hooks_utils().problems(app.get("hooks") or []):
        yield "hooks[%d].%s" % (i, key), message


RULES = (
    env_keys,
    env_values,
    patterns_compile,
    code_sources,
    code_files,
    maintenance_env,
    config_files_backed_up,
    crontabs,
    database_names,
    external_backups,
    flag_backend,
    config_rows,
    cache_commands,
    procedures,
    hook_rules,
)


# ---------------------------------------------------------------------------------------
# rollback_notify and rollback_thresholds: what their spec cannot express. A ``prepare``
# function reads the raw value as the spec's type; a rule takes the normalized value and the
# raw one and yields (key path under the variable, message); a rule's message replaces the
# spec's for the same key (email.password: the hint, not "unknown key").


def one_recipient(raw):
    """email.to may name one recipient as a string: the list of that one."""
    email = raw.get("email") if isinstance(raw, dict) else None
    if isinstance(email, dict) and isinstance(email.get("to"), str):
        return dict(raw, email=dict(email, to=[email["to"]]))
    return raw


_QUOTED_NUMBER = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*\Z")


def quoted_numbers(raw):
    """A threshold written quoted ("1024") is that number (not "nan", "inf" or "1e3")."""
    if not isinstance(raw, dict):
        return raw
    return dict(
        (key, float(value) if isinstance(value, str) and _QUOTED_NUMBER.match(value) else value)
        for key, value in raw.items()
    )


def webhook_url_http(notify, raw):
    """The webhook URL is POSTed to: http:// or https://, nothing else (file://, ftp://)."""
    url = _get(notify, "webhook.url")
    if url and not url.startswith(("http://", "https://")):
        yield "webhook.url", "must be http:// or https://"


def email_password(notify, raw):
    """No SMTP password in an inventory: it comes from the variable password_env names."""
    email = raw.get("email") if isinstance(raw, dict) else None
    if isinstance(email, dict) and "password" in email:
        yield (
            "email.password",
            "put the password in an environment variable and name it in password_env",
        )


_LOGIN = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\Z")


def approver_logins(approvers, raw):
    """Approvers are login names as the hosts see them (not root: it proves nobody)."""
    seen = set()
    for i, login in enumerate(approvers):
        if login == "root":
            yield "[%d]" % i, "root cannot approve: it proves nobody's identity"
        elif not _LOGIN.match(login):
            yield "[%d]" % i, "%r is not a login name" % login
        elif login in seen:
            yield "[%d]" % i, "%s is listed twice" % login
        seen.add(login)


def approval_hours(hours, raw):
    """How long a request and its approval stay valid: an hour to a week."""
    if not 1 <= hours <= 168:
        yield "", "must be 1 to 168 (hours)"


PREPARE = {"rollback_notify": one_recipient, "rollback_thresholds": quoted_numbers}
VARIABLE_RULES = {
    "rollback_notify": (webhook_url_http, email_password),
    "rollback_approvers": (approver_logins,),
    "rollback_approval_max_age": (approval_hours,),
}


def _get(app, dotted):
    value = app
    for part in dotted.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value


# ---------------------------------------------------------------------------------------
# the entry points


def validate(variable, value, spec=None):
    """One variable of the spec (rollback_app, rollback_notify, rollback_thresholds):
    (normalized value or None, [(key path, message)]); for rollback_notify and
    rollback_thresholds their rules too (rollback_app's: ``validate_app``)."""
    opt = (spec or load_spec())[variable]
    walker = _Walker()
    if value is None:
        if opt.get("required"):
            walker.problem(variable, "is not set")
        return None, walker.problems
    raw = value
    if variable in PREPARE:
        value = PREPARE[variable](value)
    normalized = walker.value(opt, value, variable)
    if normalized is None:
        return None, walker.problems
    ruled = [
        (variable + ("" if not path or path.startswith("[") else ".") + path, message)
        for rule in VARIABLE_RULES.get(variable, ())
        for path, message in rule(normalized, raw)
    ]
    replaced = set(path for path, _ in ruled)
    return normalized, [p for p in walker.problems if p[0] not in replaced] + ruled


def validate_app(raw, spec=None):
    """``rollback_app``: (the normalized app or None, [(key path, message)]), the spec's
    checks and every cross-field rule; env values normalized to the strings written."""
    app, problems = validate("rollback_app", raw, spec)
    if app is None:
        return None, problems
    for rule in RULES:
        problems += [("rollback_app." + path, message) for path, message in rule(app, raw)]
    app["master_switch_off"] = _env_text(app["master_switch_off"])
    for section in ("emergency", "maintenance.env", "maintenance.env_off"):
        values = _get(app, section)
        for key in list(values):
            values[key] = _env_text(values[key])
    return app, problems


def secret_keys(app):
    """The env key patterns whose values are secret: the defaults and the app's own."""
    return list(DEFAULT_SECRET_KEYS) + list(app.get("secret_keys", []))


def declared_keys(app):
    """The env keys the app declares: its master switch, flags and emergency keys."""
    keys = [app["master_switch"]] if app.get("master_switch") else []
    return keys + list(app.get("flags", [])) + list(app.get("emergency", {}))
