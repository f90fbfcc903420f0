"""Jobs in a container image: which engine a host has, and the image pinned.

``simtui run --image IMAGE`` runs the job wrapper on the host as for any job; the
wrapper runs the command inside the image (see CONTAINER in hosts.jobs): podman or
docker with the job's workdir and folder mounted at the same paths, the workdir
as working directory, the user's uid kept and the ``SIMTUI_*`` variables passed
in; apptainer with the same binds. GPUs go in when the job asks for them.

Before the launch the image is resolved once on the host (``resolve``): the engine
(the host's ``container`` setting, else the first of podman, docker, apptainer it
has), the image pulled if it is not there, and pinned: podman and docker run the
image's id (``sha256:...``), never the tag again, so the record's image is what
ran and a rerun runs the same; apptainer runs the ``.sif`` file, its sha256 kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simtui.hosts.base import Host
from simtui.hosts.jobs import LaunchRefused

ENGINES = ("podman", "docker", "apptainer")

# $1 = the engine asked for ("" for the first the host has), $2 = the image. Prints
# the engine, its version, the image's id (podman, docker: pinned by it) and its
# repository digest where it has one; apptainer: the file's sha256 for both.
RESOLVE = r"""
want=$1; image=$2
if [ -n "$want" ]; then engine=$want; command -v "$engine" >/dev/null 2>&1 || {
    echo "$engine is not installed here (the host's container setting)" >&2; exit 2; }
else
    engine=
    for e in podman docker apptainer; do command -v "$e" >/dev/null 2>&1 && { engine=$e; break; }; done
    [ -n "$engine" ] || { echo "no container engine here: install podman, docker or apptainer" >&2; exit 2; }
fi
version=$("$engine" --version 2>/dev/null | head -n 1)
case $engine in
apptainer)
    [ -f "$image" ] || { echo "no image file $image (apptainer runs a .sif file)" >&2; exit 2; }
    sum=$(sha256sum "$image" | cut -d' ' -f1)
    printf '%s\n%s\n%s\n%s\n' "$engine" "$version" "sha256:$sum" "sha256:$sum" ;;
*)
    if ! "$engine" image inspect "$image" >/dev/null 2>&1; then
        "$engine" pull -q "$image" >/dev/null 2>&1 || { echo "no image $image here, and $engine cannot pull it" >&2; exit 2; }
    fi
    id=$("$engine" image inspect --format '{{.Id}}' "$image") || exit 2
    digest=$("$engine" image inspect --format '{{.Digest}}' "$image" 2>/dev/null)
    case $id in sha256:*) ;; *) id=sha256:$id ;; esac
    printf '%s\n%s\n%s\n%s\n' "$engine" "$version" "$id" "$digest" ;;
esac
"""


@dataclass(frozen=True)
class Image:
    """An image resolved on a host: what the record keeps and the wrapper runs."""

    engine: str
    version: str
    asked: str  # as given (a tag, a name, a file)
    id: str  # what runs: the image id (podman, docker) or the file's sha256 (apptainer)
    digest: str | None  # the repository digest, where it came from a registry
    file: str | None = None  # apptainer: the .sif path

    @property
    def pinned(self) -> str:
        """What the wrapper runs, and a rerun asks for: never a tag."""
        return self.file if self.file else self.id

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "version": self.version, "image": self.asked, "id": self.id,
                "digest": self.digest, "pinned": self.pinned}

    def environment(self, gpus: int) -> list[str]:
        """The variables the wrapper runs it by (see CONTAINER in hosts.jobs)."""
        return [f"SIMTUI_CONTAINER={self.engine}", f"SIMTUI_IMAGE={self.pinned}",
                f"SIMTUI_GPUS={'all' if gpus else ''}"]


async def resolve(host: Host, image: str, engine: str | None = None) -> Image:
    """The engine and the image on ``host`` (pulled when missing), pinned; a missing
    engine or image is a LaunchRefused saying which (exit 2)."""
    if engine is not None and engine not in ENGINES:
        raise LaunchRefused(f"{host.name}: container {engine!r}: expected one of {', '.join(ENGINES)}")
    result = await host.run(["sh", "-c", RESOLVE, "sh", engine or "", image])
    if not result.ok:
        raise LaunchRefused(f"{host.name}: {result.why}")
    name, version, found, digest = (result.stdout.splitlines() + ["", "", "", ""])[:4]
    return Image(name, version, image, found, digest or None, image if name == "apptainer" else None)
