"""`gateway init`: the files it writes into a new gateway folder, and how it writes them safely.

The config's text is rendered by gateway.config (config/template.py) from the one table of keys;
the example policy is here. The writer never overwrites anything: every file is created with
O_EXCL, and whatever one run created is removed again if the run fails, so a failed init can
simply be run again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import DEFAULT_CONFIG, SCHEMA, SECRET_FILE, InitOptions, config_text

__all__ = [
    "DEFAULT_ADMIN",
    "POLICY_FILE",
    "POLICY_FOLDER",
    "STORE_FILE",
    "STORE_FOLDER",
    "Writer",
    "config_file",
    "first_clash",
    "planned_files",
    "policy_text",
    "store_files",
    "write_files",
]

POLICY_FILE = "main.yaml"
# The folders init makes are the settings' own defaults: store.path and policy.dir.
POLICY_FOLDER = SCHEMA[("policy", "dir")].default
STORE_FOLDER, _, STORE_FILE = SCHEMA[("store", "path")].default.rpartition("/")
# SQLite's companions of the store file (any of them left over would be read as part of a store),
# and the store's change counter (store/feed.py).
STORE_SUFFIXES = ("", "-wal", "-shm", "-journal", "-changes")
DEFAULT_ADMIN = "admin"


def policy_text() -> str:
    return """\
# An example policy, written by `gateway init`. Every *.yaml file in this folder is read.
# The MOST SPECIFIC matching pattern decides, whatever the file or the order of the rules; a path
# no rule matches is denied. Check with `gateway policy check`; see how a request is decided with
# `gateway policy explain GET /admin/ --user admin`.
rules:
  - name: "static files: anyone, no sign-in"
    paths: ["/static/**", "/favicon.ico", "/robots.txt"]
    allow: anyone

  - name: "everything else: any signed-in user"
    paths: ["/**"]
    allow: authenticated

  - name: "administration: admins only"
    paths: ["/admin*/**"]      # admin* also takes /admin.json, /admin.csv...: apps serve /admin there too
    roles: [admin]
    # fresh: 15m               # optional: ask for the password again after 15 minutes

  # More kinds of rule:
  # - paths: ["/reports/**"]
  #   methods: [GET, HEAD]     # this rule covers only these methods; others are refused
  #   roles: [analyst, admin]
  # - paths: ["/internal/**"]
  #   deny: true               # nobody, whatever their roles
"""


def new_secret_key() -> str:
    return secrets.token_urlsafe(48)


def config_file(directory: Path) -> Path:
    return directory / DEFAULT_CONFIG


def store_files(store: Path) -> list[Path]:
    """The store and SQLite's companion files beside it."""
    return [store.with_name(store.name + suffix) for suffix in STORE_SUFFIXES]


def planned_files(directory: Path) -> list[Path]:
    return [
        config_file(directory),
        directory / SECRET_FILE,
        directory / POLICY_FOLDER / POLICY_FILE,
        *store_files(directory / STORE_FOLDER / STORE_FILE),
    ]


def first_clash(directory: Path) -> Path | None:
    """A file init would write that exists already, or a policy file it would be mixed with."""
    for path in planned_files(directory):
        if path.exists() or path.is_symlink():
            return path
    policies = directory / POLICY_FOLDER
    if policies.is_dir():
        return next(iter(sorted(policies.glob("*.yaml"))), None)
    return None


@dataclass
class Writer:
    """Creates files and folders, never over anything; ``undo`` removes exactly what it created."""

    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    def folder(self, path: Path, mode: int = 0o755) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for item in reversed(missing):
            item.mkdir(mode)
            self.folders.append(item)

    def file(self, path: Path, text: str, mode: int = 0o644) -> None:
        # O_EXCL: an existing file (or a symlink planted where the file goes) is an error, never
        # written through. The mode is given at creation, so the file is never briefly wider.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
        self.files.append(path)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # The umask may only narrow the mode; set it exactly (a 0600 key stays owner-readable).
            os.fchmod(handle.fileno(), mode)
            handle.write(text)

    def adopt(self, paths: list[Path]) -> None:
        """Files another component created (SQLite's) that ``undo`` must remove too."""
        self.files.extend(paths)

    def undo(self) -> None:
        for path in reversed(self.files):
            # Best effort, never raising: the error that made us undo is the one to report.
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in reversed(self.folders):
            with contextlib.suppress(OSError):  # not empty: something else is in it now, leave it
                folder.rmdir()
        self.files.clear()
        self.folders.clear()


def write_files(directory: Path, options: InitOptions, writer: Writer) -> None:
    """gateway.toml, the secret key (0600) and the example policy; the store's folder (0700)."""
    writer.folder(directory)
    writer.file(config_file(directory), config_text(options))
    writer.file(directory / SECRET_FILE, new_secret_key() + "\n", mode=0o600)
    writer.folder(directory / POLICY_FOLDER)
    writer.file(directory / POLICY_FOLDER / POLICY_FILE, policy_text())
    # The store holds password hashes: its folder is for the gateway's user alone.
    writer.folder(directory / STORE_FOLDER, mode=0o700)
