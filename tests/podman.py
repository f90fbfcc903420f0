"""Rootless podman for the sshd test hosts' Unix users (Debian 12, podman 4.3), as root.

``Podman.available()`` says why containers cannot run here (None when they can). As
root it first installs what is missing (``apt-get install podman runc uidmap
busybox-static``, as scripts/test and ../shared/recipes/podman-rootless.sh do) and
writes the engine settings (``Podman.configure()``), then runs a tiny container to
see that the runtime works.

``Podman.prepare(users)`` makes each user able to run ``podman`` rootless: engine
settings, a subordinate uid and gid range in /etc/subuid and /etc/subgid (65536 ids,
after every range already given there, so none overlap), and the image
``localhost/busybox:test`` in the user's own image store (rootless images are per
user; users that have it already are skipped). The build is reproducible
(``--timestamp 0``): every user's image has the same Id and Digest on one machine.

Why the settings (real machines need none of them): this sandbox mounts cgroups v1
and v2 side by side ("hybrid"), which crun refuses, and forbids raising
RLIMIT_NPROC: so the engine is runc with cgroupfs and no default ulimits; slirp4netns
has no /dev/net/tun, so the default network namespace is the host's (``--network
none`` works too). There is no image registry here: the test image is built FROM
scratch with the one static busybox binary (``/bin/busybox``; the image has no
``/bin/sh`` link: run ``/bin/busybox sh -c ...``, ``/bin/busybox echo ...``).

``run_as(user, *argv)`` runs a command as ``user`` in a login environment (like a
person who logged in: HOME, cwd = home, no XDG_RUNTIME_DIR, as over the labs' ssh,
so podman keeps its run state in /tmp/podman-run-UID in both cases).
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

import tomli_w

IMAGE = "localhost/busybox:test"
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
PACKAGES = ("podman", "runc", "uidmap", "busybox-static")
BUSYBOX = Path("/bin/busybox")
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
SUBID_COUNT = 65536
SUBID_MIN = 100000

# The engine settings this sandbox needs (see the module docstring), by TOML table.
SETTINGS = {
    "containers": {"default_ulimits": [], "netns": "host"},
    "engine": {"cgroup_manager": "cgroupfs", "runtime": "runc"},
}

# Bump when CONTAINERFILE or the build changes: prepare() rebuilds images without it.
IMAGE_LABEL = "org.simtui.test-image=2"
CONTAINERFILE = ('FROM scratch\nCOPY busybox /bin/busybox\n'
                 f'LABEL {IMAGE_LABEL}\nCMD ["/bin/busybox", "sh"]\n')


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def run_as(user: str, *argv: str, timeout: float = 120, check: bool = False,
           input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``user`` (root only) through a login shell: stdout and stderr as
    text. ``check`` raises RuntimeError with both when it fails."""
    done = subprocess.run(["runuser", "-l", user, "-c", shlex.join(argv)], capture_output=True,
                          text=True, timeout=timeout, input=input)
    if check and done.returncode:
        raise RuntimeError(f"as {user}: {shlex.join(argv)} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def _subid_ranges(path: Path) -> list[tuple[str, int, int]]:
    """(owner, start, count) for every line of /etc/subuid or /etc/subgid."""
    ranges = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            ranges.append((parts[0], int(parts[1]), int(parts[2])))
    return ranges


class Podman:
    """Rootless podman on this machine, for the test users. Class-level: one per machine."""

    image = IMAGE
    # Seconds the last install() / prepare() took (None: they did not run).
    install_seconds: float | None = None
    prepare_seconds: float | None = None

    # -- availability -------------------------------------------------------------

    @staticmethod
    def missing() -> list[str]:
        """The packages of PACKAGES whose program is not here."""
        found = {"podman": _which("podman"), "runc": _which("runc"),
                 "uidmap": _which("newuidmap") and _which("newgidmap"),
                 "busybox-static": BUSYBOX.is_file() and os.access(BUSYBOX, os.X_OK)}
        return [name for name in PACKAGES if not found[name]]

    @classmethod
    def install(cls) -> str | None:
        """apt-get install whatever of PACKAGES is missing (root only); None, or why not."""
        missing = cls.missing()
        if not missing:
            return None
        if os.geteuid() != 0 or _which("apt-get") is None:
            return (f"podman is not installed ({', '.join(missing)} missing) and apt-get cannot "
                    "install it here (apt-get install podman runc uidmap busybox-static, as scripts/test does)")
        start = time.monotonic()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "install", *PACKAGES]
        done = subprocess.run(apt, capture_output=True, text=True, env=env)
        if done.returncode:  # a stale package list: update it once and retry
            subprocess.run(["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", "update"],
                           capture_output=True, env=env)
            done = subprocess.run(apt, capture_output=True, text=True, env=env)
        cls.install_seconds = time.monotonic() - start
        if done.returncode or cls.missing():
            return (f"apt-get install {' '.join(PACKAGES)} failed ({done.returncode}): "
                    f"{(done.stderr or done.stdout).strip()[-1000:]}")
        return None

    @classmethod
    def available(cls) -> str | None:
        """None if rootless containers can run here, else why not: not root; podman
        missing and not installable; the engine or user namespaces refuse. Installs the
        packages and writes the engine settings (``configure()``) on the way."""
        if os.geteuid() != 0:
            return "the podman tests need root (they install podman and set up the test users' subuids)"
        reason = cls.install()
        if reason:
            return reason
        cls.configure()
        # The runtime, without an image: a rootfs of just busybox, run as root.
        with tempfile.TemporaryDirectory(prefix="simtui-podman-check-") as rootfs:
            (Path(rootfs) / "bin").mkdir()
            shutil.copy2(BUSYBOX, Path(rootfs) / "bin" / "busybox")
            done = subprocess.run([_which("podman"), "run", "--rm", "--network", "none", "--rootfs", rootfs,
                                   "/bin/busybox", "echo", "ok"], capture_output=True, text=True, timeout=120)
        if done.returncode or done.stdout.strip() != "ok":
            return f"podman cannot run a container here ({done.returncode}): {done.stderr.strip()[-1000:]}"
        # Rootless: an unprivileged user must be able to make a user namespace.
        done = subprocess.run(["runuser", "-u", "nobody", "--", "unshare", "--user", "--map-root-user", "true"],
                              capture_output=True, text=True, timeout=30)
        if done.returncode:
            return f"unprivileged users cannot create user namespaces here: {done.stderr.strip()}"
        return None

    # -- set-up -------------------------------------------------------------------

    @staticmethod
    def configure(path: Path = CONTAINERS_CONF) -> bool:
        """Put SETTINGS into /etc/containers/containers.conf; True if it changed.

        A missing file is written with just SETTINGS. An existing one is merged: its
        other settings are kept, the keys of SETTINGS take our values (its comments and
        layout are lost, as tomli_w rewrites it). One that is not valid TOML is replaced.
        Nothing is written when the file already has every setting."""
        try:
            current = tomllib.loads(path.read_text())
        except FileNotFoundError:
            current = {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            current = {}  # unreadable: replaced (documented above)
        merged = {**current}
        for table, keys in SETTINGS.items():
            merged[table] = {**merged.get(table, {}), **keys}
        if path.exists() and merged == current:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".simtui-tmp")
        tmp.write_text(tomli_w.dumps(merged))
        tmp.chmod(0o644)
        tmp.replace(path)
        return True

    @staticmethod
    def give_subids(user: str) -> bool:
        """Give ``user`` SUBID_COUNT subordinate uids and gids if /etc/subuid or
        /etc/subgid has none for them, after the highest range either file gives (so
        none overlap); True if anything was added."""
        have = [any(owner in (user, str(pwd.getpwnam(user).pw_uid)) for owner, _, _ in _subid_ranges(f))
                for f in SUBID_FILES]
        if all(have):
            return False
        ends = [start + count for f in SUBID_FILES for _, start, count in _subid_ranges(f)]
        start = max([SUBID_MIN, *ends])
        span = f"{start}-{start + SUBID_COUNT - 1}"
        args = []
        if not have[0]:
            args += ["--add-subuids", span]
        if not have[1]:
            args += ["--add-subgids", span]
        subprocess.run(["usermod", *args, user], check=True, capture_output=True)
        return True

    @staticmethod
    def has_image(user: str) -> bool:
        """Whether ``user`` has IMAGE as this module builds it now (with IMAGE_LABEL)."""
        key, value = IMAGE_LABEL.split("=")
        done = run_as(user, "podman", "image", "inspect", "--format", '{{index .Labels "%s"}}' % key, IMAGE,
                      timeout=60)
        return done.returncode == 0 and done.stdout.strip() == value

    @staticmethod
    def image_info(user: str, image: str = IMAGE) -> dict:
        """``podman image inspect`` of ``image`` in ``user``'s store: Id (64 hex, the
        config's sha256), Digest ("sha256:...", the manifest's), RepoDigests, ..."""
        return json.loads(run_as(user, "podman", "image", "inspect", image, check=True, timeout=60).stdout)[0]

    @classmethod
    def prepare(cls, users) -> None:
        """Engine settings, subuids/subgids and ``localhost/busybox:test`` for each of
        ``users`` (root only). Raises RuntimeError with podman's output if a build or the
        first container of a user fails."""
        start = time.monotonic()
        cls.configure()
        ctx = None
        try:
            for user in users:
                if cls.give_subids(user):
                    # podman keeps the id mapping of its first run: make it read the new one.
                    run_as(user, "podman", "system", "migrate", timeout=60)
                if cls.has_image(user):
                    continue
                if ctx is None:
                    ctx = Path(tempfile.mkdtemp(prefix="simtui-podman-image-"))
                    shutil.copy2(BUSYBOX, ctx / "busybox")
                    (ctx / "Containerfile").write_text(CONTAINERFILE)
                    for p in (ctx, ctx / "busybox", ctx / "Containerfile"):
                        p.chmod(0o755)
                # --timestamp 0: a reproducible build, so every user's image has the same
                # Id and Digest (for the same busybox-static); --layers=false: no
                # intermediate image is left behind.
                run_as(user, "podman", "build", "-q", "--timestamp", "0", "--layers=false", "-t", IMAGE,
                       str(ctx), timeout=300, check=True)
                run_as(user, "podman", "image", "prune", "-f", timeout=60)  # an older build, now untagged
                done = run_as(user, "podman", "run", "--rm", IMAGE, "/bin/busybox", "echo", "ok", check=True)
                if done.stdout.strip() != "ok":
                    raise RuntimeError(f"as {user}: the first container printed {done.stdout!r} {done.stderr!r}")
        finally:
            if ctx is not None:
                shutil.rmtree(ctx, ignore_errors=True)
        cls.prepare_seconds = time.monotonic() - start

    @staticmethod
    def clean(user: str, since: float | None = None) -> None:
        """Remove the containers of ``user`` (running ones killed), only those created at
        or after the Unix time ``since`` when given (another test session may be using
        the same user's podman at the same time); images stay."""
        if since is None:
            run_as(user, "podman", "rm", "--all", "--force", "--time", "0", timeout=120)
            return
        listed = run_as(user, "podman", "ps", "--all", "--format", "json", timeout=60)
        try:
            containers = json.loads(listed.stdout or "[]")
        except json.JSONDecodeError:
            return
        ids = [c["Id"] for c in containers if c.get("Created", 0) >= int(since)]
        if ids:
            run_as(user, "podman", "rm", "--force", "--time", "0", *ids, timeout=120)
