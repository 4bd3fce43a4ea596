"""The secret key (from the environment or its file) and the TLS certificate/key pair.

Both are read from outside gateway.toml: the key itself may never be written there. They are only
required by `gateway serve`; other commands still work while a certificate is being sorted out.
Each function returns its problems as lines naming the file and key, for the loader to report
with all the others.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

__all__ = ["MIN_SECRET_LENGTH", "SECRET_ENV", "read_secret_key", "tls_files"]

SECRET_ENV = "GATEWAY_SERVER_SECRET_KEY"
MIN_SECRET_LENGTH = 32


def read_secret_key(
    key_file: str | None, env: Mapping[str, str], base: Path, path: Path, required: bool
) -> tuple[str | None, list[str]]:
    """$GATEWAY_SERVER_SECRET_KEY, else server.secret_key_file (relative to ``base``)."""
    if env.get(SECRET_ENV):
        secret = env[SECRET_ENV].strip()
        where = f"environment: {SECRET_ENV}"
    elif key_file:
        file = base / key_file
        try:
            secret = file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if not required:
                return None, []
            return None, [
                f"{path}: server.secret_key_file: {file} not found; create it with "
                f"\"python3 -c 'import secrets; print(secrets.token_urlsafe(48))' > {file}\" and chmod 600"
            ]
        except (OSError, UnicodeDecodeError) as exc:
            return None, [f"{path}: server.secret_key_file: cannot read {file}: {exc}"]
        where = f"{file}"
    else:
        if not required:
            return None, []
        return None, [f"{path}: server.secret_key_file: not set and {SECRET_ENV} is empty; the gateway needs a secret key"]
    if len(secret) < MIN_SECRET_LENGTH:
        return None, [f"{where}: the secret key is too short (at least {MIN_SECRET_LENGTH} characters)"]
    return secret, []


def tls_files(
    certfile: str | None, keyfile: str | None, base: Path, path: Path, *, check: bool
) -> tuple[Path | None, Path | None, list[str]]:
    """Both or neither; with ``check`` (serve) the pair must also load, so a bad file is one clear
    line here rather than a traceback from inside the server's start-up."""
    if certfile is None and keyfile is None:
        return None, None, []
    if certfile is None or keyfile is None:
        given, missing = ("certfile", "keyfile") if keyfile is None else ("keyfile", "certfile")
        return None, None, [f"{path}: server.{missing}: needed with server.{given} (give both files, or neither)"]
    cert, key = base / certfile, base / keyfile
    problems: list[str] = []
    if check:
        for name, file in (("certfile", cert), ("keyfile", key)):
            try:
                with file.open("rb") as handle:
                    handle.read(1)
            except OSError as exc:
                problems.append(f"{path}: server.{name}: cannot read {file}: {exc.strerror}")
        if not problems:
            try:
                # An empty password makes an encrypted key fail here instead of prompting on a terminal.
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=b"")
            except (ssl.SSLError, OSError) as exc:
                problems.append(
                    f"{path}: server.certfile/keyfile: cannot load {cert} with {key} "
                    f"(PEM certificate chain and its unencrypted private key expected): {exc}"
                )
    return cert, key, problems
