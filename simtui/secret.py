"""Secrets kept out of what simtui writes: ``mask(text)``, the one function.

Every message, record event and log line simtui writes about a URL goes through
it: config errors, notification outcomes (``notify test``, ``notify list``, the
record's events, the server's notices and log). It replaces with ``***``:

- the password of a URL's userinfo, in any scheme (``ntfy://me:***@host``);
- in a service URL (any scheme but the web, file and database ones below: the
  apprise kind, where the URL itself is the credential) the whole userinfo when
  it has no password (``pover://***@***``), a "port" that is not a number
  (``tgram://123:***/chat``), and every host or path segment that looks like a
  token (8+ characters with letters and digits: ``discord://4174216298/***``);
- in a web URL, a path segment that looks like a token (24+ characters mixing
  upper case, lower case and digits) and a userinfo that looks like one
  (``https://***@github.com``);
- the value of every query or fragment parameter whose name says secret:
  ``token``, ``access_token``, ``apikey``, ``key``, ``secret``, ``password``,
  ``sig``, ``auth``, ``X-Amz-Credential`` ... (``?token=***``);
- outside URLs: ``NAME=value`` where NAME says token, secret, password or API
  key (``GITHUB_TOKEN=***``, ``--password=***``), ``Bearer <token>``, and tokens
  with a well-known prefix (GitHub ``ghp_``, GitLab ``glpat-``, Slack ``xoxb-``,
  AWS ``AKIA``).

Apprise shows a URL it can read with its own privacy mode (``t...n``); notify.py
passes that through ``mask`` too, and a URL apprise cannot read is shown only
through ``mask``. What is masked stays masked: ``mask(mask(t)) == mask(t)``. A
job's command and argv in its record are never rewritten (a rerun needs them as
they were); they are masked where they go into a notification.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# Schemes whose userinfo is a login name and whose path is a path: only a password,
# a token-looking name or segment, and secret parameters are masked there.
WEB_SCHEMES = frozenset({
    "http", "https", "ftp", "ftps", "sftp", "ssh", "scp", "git", "git+ssh", "ssh+git", "git+https",
    "git+http", "svn", "svn+ssh", "hg", "rsync", "ws", "wss", "file", "s3", "gs", "gcs", "az", "abfs",
    "abfss", "hdfs", "webdav", "dav", "davs", "smb", "nfs", "ldap", "ldaps",
    "postgres", "postgresql", "mysql", "mariadb", "redis", "rediss", "mongodb", "mongodb+srv",
    "amqp", "amqps", "sqlite", "mssql", "oracle", "jdbc", "sqlalchemy",
})

# scheme://rest: the rest ends at whitespace, a quote, a bracket of markup or a backslash.
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{0,30})://([^\s'\"<>`\\]*)")
# A parameter name that says its value is a secret.
_SECRET_NAME = re.compile(
    r"(?i)(?:^|[^a-z])(?:key|pass|pwd|sig|auth|code|session|sessionid|sid|credentials?)$"
    r"|token|secret|passw|passphrase|apikey|api[_-]?key|access[_-]?key|private[_-]?key|signature"
    r"|credential|auth[_-]?key|client[_-]?secret"
)
# NAME=value in free text, where NAME says secret (narrower than in a query: no bare "key").
_ASSIGNMENT = re.compile(
    r"(?i)(?<![\w.-])([\w.-]*(?:token|secret|passw(?:or)?d|passphrase|pwd|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|auth[_-]?key|credentials?)[\w.-]*)(\s*=\s*)(['\"]?)([^\s'\"&;,)]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/-]{8,}=*)")
_PREFIXED = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b"
)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_~+=%.-]+")
_HOSTNAME = re.compile(r"(?i)^(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+\.?|\[[0-9a-f:.]+\])$")
_APPRISE_SHORT = re.compile(r"^.\.\.\..$")  # apprise's privacy form of a token: first...last


def mask(text: str) -> str:
    """``text`` with every URL password or token in it replaced by ``***``."""
    if not text:
        return text
    out, last = [], 0
    for found in _URL.finditer(text):
        out.append(_mask_free(text[last:found.start()]))
        out.append(mask_url(found[1], found[2]))
        last = found.end()
    out.append(_mask_free(text[last:]))
    return "".join(out)


def mask_url(scheme: str, rest: str) -> str:
    """One URL (``scheme://rest``) with its secrets masked."""
    web = scheme.lower() in WEB_SCHEMES
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            userinfo = f"{MASK if _tokenish(user, 20) else user}:{MASK if password else ''}"
        elif not web or _tokenish(user, 20) or _PREFIXED.fullmatch(user):
            userinfo = MASK
    host, colon, port = _split_port(hostport)
    if colon and port and not port.isdigit():
        port = MASK
    if not web and not _HOSTNAME.match(host):
        host = _segment(host, web)
    path = "/".join(_segment(part, web) for part in path.split("/"))
    query = _mask_params(query)
    fragment = _mask_params(fragment) if "=" in fragment else fragment
    return f"{scheme}://{userinfo}{at}{host}{colon}{port}{path}{question}{query}{hash_}{fragment}"


def _split_port(hostport: str) -> tuple[str, str, str]:
    if hostport.startswith("["):  # [IPv6]:port
        close = hostport.find("]")
        if close >= 0:
            host, rest = hostport[: close + 1], hostport[close + 1 :]
            return (host, ":", rest[1:]) if rest.startswith(":") else (host + rest, "", "")
    return hostport.partition(":")


def _tokenish(part: str, length: int, mixed_case: bool = False) -> bool:
    """Does this piece of a URL look like a secret token: ``length`` characters or
    more of a token's alphabet, with letters and digits (and both cases)?"""
    if len(part) < length or _APPRISE_SHORT.match(part) or not _TOKEN_CHARS.fullmatch(part):
        return False
    if not (any(c.isdigit() for c in part) and any(c.isalpha() for c in part)):
        return False
    return not mixed_case or (any(c.islower() for c in part) and any(c.isupper() for c in part))


def _segment(part: str, web: bool) -> str:
    """A host or path segment: a web URL's only when it is a long mixed-case token."""
    if web:
        return MASK if _tokenish(part, 24, mixed_case=True) or _PREFIXED.fullmatch(part) else part
    return MASK if _tokenish(part, 8) else part


def _mask_params(params: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***``."""
    if not params:
        return params
    pieces = re.split(r"([&;])", params)
    for i, piece in enumerate(pieces):
        name, eq, value = piece.partition("=")
        if eq and value and value != MASK and _SECRET_NAME.search(name):
            pieces[i] = f"{name}={MASK}"
    return "".join(pieces)


def _mask_free(text: str) -> str:
    """Secrets in text outside any URL."""
    if not text:
        return text
    text = _ASSIGNMENT.sub(lambda m: m[1] + m[2] + m[3] + (m[4] if m[4] == MASK else MASK), text)
    text = _BEARER.sub(lambda m: m[1] + MASK, text)
    return _PREFIXED.sub(MASK, text)


class MaskingFormatter(logging.Formatter):
    """A log formatter whose every line (tracebacks too) has gone through ``mask``:
    for a handler that writes a log to keep, such as the server's."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))
