"""Redaction of secrets, user names, home directories and host names before anything is shared.

Every report format (Markdown, JSON, HTML, chart text), saved baselines and `env` output pass through a
`Redactor`. It removes: Hugging Face / OpenAI / GitHub / AWS tokens, `Authorization` headers, values of
settings and environment variables whose name says secret (TOKEN, KEY, SECRET, PASSWORD, AUTH, CREDENTIAL),
passwords in URLs, home directories (`/home/<user>`, `/Users/<user>`, `C:\\Users\\<user>`, `/root` -> `~`),
host names in `file://host/` URLs and UNC paths, every `user@host` (ssh targets, pssh's `user@host: ` line
prefixes, e-mail addresses), fully qualified host names (`gpu-node-17.corp.example.com`, `*.local`, `*.lan`,
`*.internal`, `*.corp`), a pdsh-style `host: ` prefix repeated on most lines, and the current user's name and host
name wherever they appear as a word. User and host names seen in any of these are learned and removed everywhere.

Kept, because a report needs them and they identify nobody: public hub and documentation hosts (`PUBLIC_DOMAINS`:
huggingface.co, github.com, pytorch.org ...), `owner/name` model ids, `git@github.com`-style remotes of those hubs,
Python module and file names (`vllm.model_executor.models.minicpmv`, `config.json`), and `pkg@1.2.3` versions.
E-mail addresses are redacted even at public domains: a report never needs one, and a maintainer's public address
cannot be told from a private one by its shape.
"""

from __future__ import annotations

import getpass
import re
import socket
from dataclasses import dataclass, field

SECRET = "[REDACTED]"
USER = "[user]"
HOST = "[host]"

# Name segments (split on _ . - and camelCase) that mark a value as secret.
SECRET_WORDS = frozenset(
    {"token", "key", "secret", "secrets", "password", "passwords", "passwd", "auth", "authorization",
     "credential", "credentials", "apikey", "passphrase", "cookie"}
)
SECRET_SUFFIXES = ("token", "key", "secret", "password", "passwd", "credential", "credentials")
# Bare names that identify nobody: left alone as words (their home paths still become `~`).
GENERIC_NAMES = frozenset(
    {"root", "user", "users", "admin", "ubuntu", "runner", "nobody", "home", "localhost", "vm", "jovyan",
     "vscode", "default", "local", "host", "git", "www", "mail", "api", "cdn", "login", "proxy", "gateway"}
)
# Hosts whose names a report may keep (and their subdomains): public model hubs, code hosts, documentation.
PUBLIC_DOMAINS = (
    "huggingface.co", "hf.co", "github.com", "githubusercontent.com", "github.io", "pytorch.org", "python.org",
    "pypi.org", "pythonhosted.org", "vllm.ai", "readthedocs.io", "docs.nvidia.com", "developer.nvidia.com",
    "ngc.nvidia.com", "modelscope.cn", "gitlab.com", "anaconda.org", "conda-forge.org", "docker.io", "docker.com",
)
# Last labels that make a dotted name a host name: internal suffixes (any length), and the common public top-level
# domains (names of three labels or more only, so `vllm.ai`-like two-label names in prose stay).
INTERNAL_TLDS = frozenset({"local", "lan", "internal", "intranet", "corp", "home", "localdomain", "private", "intra"})
PUBLIC_TLDS = frozenset(
    {"com", "net", "org", "edu", "gov", "mil", "int", "io", "ai", "co", "info", "biz", "cloud", "dev", "app", "tech",
     "uk", "de", "fr", "cn", "jp", "kr", "ru", "nl", "ch", "se", "ca", "au", "us", "eu", "sg", "tw", "hk", "il"}
)
# Words a `name: ` line prefix is when it is not a pdsh host: log levels and exception names.
_NOT_PDSH_HOSTS = frozenset({"info", "warning", "warn", "error", "debug", "critical", "fatal", "notice", "trace", "note",
                              "traceback", "hint", "caused by", "stdout", "stderr"})

_TOKEN_PATTERNS = [
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),  # Hugging Face (hf_ + 34 characters; not vLLM's hf_overrides)
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),  # OpenAI-style (sk-..., sk-proj-...)
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{10,}"),  # GitHub
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{10,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key id
    re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),  # JWT
]
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)(?:(bearer|basic|token|digest|negotiate)\s+)?"
    r"([^\s\"',;}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=\-]{6,})")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s:@]+):([^/\s@]+)@")
# NAME=VALUE, NAME: VALUE, "NAME": "VALUE", 'NAME': 'VALUE', --NAME VALUE, --NAME=VALUE
_ASSIGNMENT = re.compile(
    r"(?P<pre>(?<![A-Za-z0-9_.\-])(?P<dash>--)?[\"']?(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)[\"']?)"
    r"(?P<sep>\s*[=:]\s*|(?(dash)\s+|(?!)))"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|(?![\[{])[^\s,;}\]\)]+)"
)
_HOME_PATTERNS = [
    re.compile(r"(?P<home>/home/(?P<user>[^/\s\"'<>:]+))(?=/|\b|$)"),
    re.compile(r"(?P<home>/Users/(?P<user>[^/\s\"'<>:]+))(?=/|\b|$)"),
    re.compile(r"(?P<home>[A-Za-z]:(?:\\\\|\\|/)Users(?:\\\\|\\|/)(?P<user>[^\\/\s\"'<>:]+))", re.IGNORECASE),
    re.compile(r"(?P<home>(?<![A-Za-z0-9_.\-])/root)(?=/|\s|$|[\"',;:)\]}])"),
]
# A user's directory outside a home: `/scratch/users/NAME/`, `/gpfs/u/NAME/` (HPC layouts; `/home/NAME`, wherever it
# stands, is _HOME_PATTERNS' own): the name is learned (then redacted everywhere); the path keeps its shape.
_USER_DIR = re.compile(r"/(?:users|u|people|homes)/(?P<user>[^/\s\"'<>:]+)/")
_FILE_URL_HOST = re.compile(r"(?i)\bfile://(?P<host>[^/\s\"'<>]+)/")
_UNC_HOST = re.compile(r"(?<![A-Za-z0-9:])\\\\(?P<host>[A-Za-z0-9][A-Za-z0-9.\-]*)\\")
_USER_AT_HOST = re.compile(r"\b(?P<user>[A-Za-z_][A-Za-z0-9_.+\-]{1,63})@(?P<host>[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9])\b")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_DOTTED = re.compile(r"(?<![A-Za-z0-9_.\-])(?P<host>" + _LABEL + r"(?:\." + _LABEL + r")+)(?![A-Za-z0-9_\-]|\.[A-Za-z0-9])")
_VERSION = re.compile(r"^\d+(?:\.\d+){0,2}$")
# `host: ` at the start of a line, as pdsh -S / pssh -P print it
_LINE_PREFIX = re.compile(r"(?m)^(?P<host>[A-Za-z0-9][A-Za-z0-9.\-]{0,252}[A-Za-z0-9]): ")


def _segments(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [s for s in re.split(r"[_.\-\s]+", spaced.lower()) if s]


def is_secret_name(name: str) -> bool:
    """`HF_TOKEN`, `api_key`, `dbPassword`, `--api-key` are secret; `max_num_batched_tokens`, `tokenizer`
    and `author` are not (plural `tokens`, and words that merely contain `token`/`auth`)."""
    for seg in _segments(name):
        if seg in SECRET_WORDS or (seg.endswith(SECRET_SUFFIXES) and len(seg) > 3):
            return True
    return False


def is_public_host(host: str) -> bool:
    """True for a public hub or documentation host (`PUBLIC_DOMAINS`) or one of its subdomains."""
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in PUBLIC_DOMAINS)


def is_host_name(name: str) -> bool:
    """Whether a dotted name reads as a host name a report must not carry: it ends in an internal suffix
    (`x.local`, `gpu3.lan`, `db.corp`), or has three labels or more ending in a common top-level domain
    (`gpu-node-17.corp.example.com`), and is not a public hub's (`cdn-lfs.huggingface.co` stays). Module paths
    (`torch.cuda.OutOfMemoryError`) and file names (`model.safetensors.index.json`) are not host names."""
    labels = name.lower().rstrip(".").split(".")
    if len(labels) < 2 or is_public_host(name):
        return False
    if labels[-1] in INTERNAL_TLDS:
        return True
    return len(labels) >= 3 and labels[-1] in PUBLIC_TLDS


def _word(name: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(name) + r"(?![A-Za-z0-9])", re.IGNORECASE)


@dataclass
class Redactor:
    """Removes secrets and identities from text and from JSON-like objects (dicts, lists, strings)."""

    users: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)

    @classmethod
    def for_this_machine(cls) -> Redactor:
        """A redactor that also knows the current user's name and this machine's host name."""
        users, hosts = set(), set()
        try:
            users.add(getpass.getuser())
        except Exception:
            pass
        try:
            host = socket.gethostname()
        except OSError:
            host = ""
        if host:
            hosts.add(host)
            hosts.add(host.split(".")[0])
        red = cls()
        for u in users:
            red.add_user(u)
        for h in hosts:
            red.add_host(h)
        return red

    def add_user(self, name: str) -> None:
        if name and len(name) >= 3 and name.lower() not in GENERIC_NAMES:
            self.users.add(name)

    def add_host(self, name: str) -> None:
        if name and len(name) >= 3 and name.lower() not in GENERIC_NAMES:
            self.hosts.add(name)

    # -- learning ---------------------------------------------------------------------------------------
    def learn(self, obj: object) -> None:
        """Collect user and host names seen in home paths, `user@host`, host names and the values of name keys
        (`hostname`, `host`, `node`, `user`, `username`: a results.jsonl's machine_info) anywhere in obj, so they go
        everywhere."""
        for key, value in _named_values(obj):
            if key in ("hostname", "host", "host_name", "node", "nodename", "node_name"):
                self._add_fqdn(value)
            elif key in ("user", "username", "user_name", "login"):
                self.add_user(value)
        for text in _strings(obj):
            for pattern in (*_HOME_PATTERNS[:3], _USER_DIR):
                for m in pattern.finditer(text):
                    self.add_user(m.group("user"))
            for m in _FILE_URL_HOST.finditer(text):
                self.add_host(m.group("host"))
            for m in _UNC_HOST.finditer(text):
                self.add_host(m.group("host"))
            for m in _USER_AT_HOST.finditer(text):
                if self._private_user_at_host(m):
                    self.add_user(m.group("user"))
                    self._add_fqdn(m.group("host"))
            for m in _DOTTED.finditer(text):
                if is_host_name(m.group("host")):
                    self._add_fqdn(m.group("host"))
            self._learn_line_prefixes(text)

    def _add_fqdn(self, host: str) -> None:
        """A host name and its first label (`gpu-node-17.corp.example.com` -> also `gpu-node-17`)."""
        if _VERSION.match(host) or is_public_host(host):
            return
        self.add_host(host)
        self.add_host(host.split(".")[0])

    def _learn_line_prefixes(self, text: str) -> None:
        """pdsh (and pssh -P) prefix every line of a node's output with `host: `. A host-shaped prefix repeated on
        at least three lines and half of the non-empty lines is taken as a host name; log levels and exception
        names (`INFO: `, `RuntimeError: `) are not."""
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 3:
            return
        counts: dict[str, int] = {}
        for line in lines:
            m = _LINE_PREFIX.match(line)
            if m:
                counts[m.group("host")] = counts.get(m.group("host"), 0) + 1
        for host, n in counts.items():
            low = host.lower()
            if n < 3 or 2 * n < len(lines) or low in _NOT_PDSH_HOSTS or low.endswith(("error", "exception", "warning")):
                continue
            self._add_fqdn(host)

    # -- text -------------------------------------------------------------------------------------------
    def text(self, text: str) -> str:
        if not text:
            return text
        self.learn(text)
        for pattern in _TOKEN_PATTERNS:
            text = pattern.sub(SECRET, text)
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + SECRET, text)
        text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + SECRET, text)
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + USER + ":" + SECRET + "@", text)
        text = self._assignments(text)
        for pattern in _HOME_PATTERNS:
            text = pattern.sub("~", text)
        text = _FILE_URL_HOST.sub("file://" + HOST + "/", text)
        text = _UNC_HOST.sub(lambda m: "\\\\" + HOST + "\\", text)
        text = _USER_AT_HOST.sub(self._user_at_host, text)
        text = _DOTTED.sub(lambda m: HOST if is_host_name(m.group("host")) else m.group(0), text)
        for name in sorted(self.users, key=len, reverse=True):
            text = _word(name).sub(USER, text)
        for name in sorted(self.hosts, key=len, reverse=True):
            text = _word(name).sub(HOST, text)
        return text

    def _assignments(self, text: str) -> str:
        """Replace the values of secret-named assignments; a non-secret name is skipped but its value is
        scanned again (so `env: HF_TOKEN=...` still finds HF_TOKEN)."""
        out, pos = [], 0
        while True:
            m = _ASSIGNMENT.search(text, pos)
            if m is None:
                out.append(text[pos:])
                return "".join(out)
            value = m.group("value")
            keep = (
                not is_secret_name(m.group("name"))
                or value.strip("'\"") in (SECRET, "")
                or value.startswith("--")
                or value.lower() in ("bearer", "basic", "token", "digest", "negotiate")
            )
            if keep:
                out.append(text[pos : m.start("value")])
                pos = m.start("value")
                if pos == m.start():  # cannot happen (a name precedes the value); guards the loop
                    out.append(text[pos])
                    pos += 1
                continue
            quote = value[0] if value[:1] in ("'", '"') else ""
            out.append(text[pos : m.start("value")] + quote + SECRET + quote)
            pos = m.end("value")

    @staticmethod
    def _private_user_at_host(m: re.Match[str]) -> bool:
        """`alice@gpu-node-17`, `alice@10.0.0.5`, `bob@gmail.com`: yes. `git@github.com` (a public hub's
        remote), `vllm@0.6.3` (a version): no."""
        user, host = m.group("user"), m.group("host")
        if _VERSION.match(host):
            return False
        return not (is_public_host(host) and user.lower() in GENERIC_NAMES)

    def _user_at_host(self, m: re.Match[str]) -> str:
        """Every `user@host` loses its user; the host goes too unless it is a public hub's."""
        if not self._private_user_at_host(m):
            return m.group(0)
        host = m.group("host")
        return USER + "@" + (host if is_public_host(host) else HOST)

    # -- objects ----------------------------------------------------------------------------------------
    def obj(self, obj: object) -> object:
        """Redact a JSON-like object: secret-named keys lose their values; every string is redacted."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            out: dict[object, object] = {}
            for k, v in obj.items():
                key = self.text(k) if isinstance(k, str) else k
                if isinstance(k, str) and is_secret_name(k) and v is not None and not isinstance(v, (dict, list, bool)):
                    out[key] = SECRET
                else:
                    out[key] = self.obj(v)
            return out
        if isinstance(obj, (list, tuple)):
            return [self.obj(v) for v in obj]
        return obj


def _named_values(obj: object):
    """(lower-case key, value) of every string value under a string key, at any depth."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and isinstance(v, str):
                yield k.lower(), v
            else:
                yield from _named_values(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _named_values(v)


def _strings(obj: object):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                yield k
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def redact_text(text: str, redactor: Redactor | None = None) -> str:
    """Redact one text with a redactor that knows this machine's user and host."""
    return (redactor or Redactor.for_this_machine()).text(text)


def redact(obj: object, redactor: Redactor | None = None) -> object:
    """Redact a JSON-like object with a redactor that knows this machine's user and host."""
    red = redactor or Redactor.for_this_machine()
    red.learn(obj)
    return red.obj(obj)
