"""The shell scripts that engine modules run on a host: each a constant, every
value reaching it as a quoted argument, never pasted into its text. (The job
folder's own scripts are in jobs.py, the project folder's helper in
project_helper.py.)"""

# $1 = the project folder, $2 = its venv or "": the first of the commands after them
# that the host has, with the venv first on PATH as the job will have it.
FIND_COMMAND = r"""
[ -n "$2" ] && PATH=$PWD/$1/$2/bin:$PATH
shift 2
for command do command -v "$command" >/dev/null 2>&1 && { echo "$command"; exit 0; }; done
exit 1
"""

# $1 = job dir, $2 = workdir (both as the launch gave them); the rest: listed outputs.
# Prints "size<TAB>absolute path" for each image the job listed or wrote into its
# workdir (two levels deep) between its start (pid file) and its end (exit file).
FIND_IMAGES = r"""
d=$1; w=$2; shift 2
case $d in /*) ;; *) d=$PWD/$d ;; esac
[ -f "$d/pid" ] || exit 0
cd "$w" 2>/dev/null || exit 0
images() {
    find . -maxdepth 2 -type f -newer "$d/pid" "$@" \( -iname '*.png' -o -iname '*.jpg' \
        -o -iname '*.jpeg' -o -iname '*.svg' \) -print 2>/dev/null | head -n 100
}
{
    for f do printf '%s\n' "$f"; done
    if [ -f "$d/exit" ]; then images ! -newer "$d/exit"; else images; fi
} | while IFS= read -r f; do
    [ -f "$f" ] || continue
    case $f in /*) p=$f ;; *) p=$PWD/${f#./} ;; esac
    printf '%s\t%s\n' "$(wc -c < "$f" | tr -d ' ')" "$p"
done
"""

# $1 = the outputs folder, then the paths: a tar stream of those that are regular files there.
TAR_FILES = r"""
cd "$1" || exit; shift
for p do [ -f "$p" ] && [ ! -L "$p" ] && printf '%s\0' "./$p"; done | tar -c -f - --null -T -
"""

UNTAR = 'mkdir -p "$1" && cd "$1" && exec tar -x -p --no-same-owner -f -'

# $1 = project folder, $2 = file name in data/, $3 = URL, $4 = "1" to show progress.
# The download goes to a hidden temporary name, renamed once complete: a failed
# or interrupted one leaves nothing behind.
DOWNLOAD = r"""
root=$1 name=$2 url=$3 progress=$4
mkdir -p "$root/data" && cd "$root/data" || exit
part=".$name.part.$$"
trap 'rm -f "$part"' EXIT
trap 'exit 130' INT TERM HUP
if command -v curl >/dev/null 2>&1; then
    if [ -n "$progress" ]; then curl -fL --progress-bar -o "$part" "$url"; else curl -fsSL -o "$part" "$url"; fi
elif command -v wget >/dev/null 2>&1; then
    if [ -n "$progress" ]; then wget -q --show-progress -O "$part" "$url"; else wget -q -O "$part" "$url"; fi
elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$url" "$part"
else
    echo "there is no curl, wget or python3 to download with" >&2; exit 127
fi || exit
mv -f "$part" "$name"
"""

# $1 = project folder, $2 = venv, $3 = stamp file, $4 = its content; then pip's arguments.
MAKE = r"""
root=$1 venv=$2 stamp=$3 want=$4; shift 4
cd "$root" || exit
rm -rf "$venv"
if command -v uv >/dev/null 2>&1; then
    uv venv --quiet "$venv" && uv pip install --python "$venv/bin/python" "$@"
else
    python3 -m venv "$venv" && "$venv/bin/python" -m pip install --disable-pip-version-check "$@"
fi || exit
echo "$want" > "$venv/$stamp"
"""
